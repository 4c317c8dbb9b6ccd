"""Error codes, their one HTTP status and their clerk-facing message, in one table.

Every error the gateway answers is an RFC 9457 ``application/problem+json`` body::

    {"type": "urn:ssc-gateway:problem:TERMINAL_DISABLED", "title": "Terminal disabled",
     "status": 401, "detail": "...", "code": "TERMINAL_DISABLED",
     "message": "This terminal has been disabled. ...", "message_zh": "本终端已停用。...",
     "request_id": "…", "instance": "urn:request:…"}

``code`` is stable: clients branch on it, never on ``message``. ``message``/``message_zh`` say
what the person at the counter can do about it. ``detail`` says what exactly was wrong, for the
integrator's log; it never carries personal data or the rejected input.

A new code is three edits: the error that raises it, its row in :class:`ErrorCode` (which IS
the table; ``ERRORS`` is derived from it), and its row in ``terminal_sdk.problems``. Routes
name the errors their use case raises, not each code: :func:`codes_of` a domain error class
(every registered code of it and its subclasses) and :func:`codes_named` a family of the
gateway's own codes; the OpenAPI document, docs/CONTRACTS.md's code table and the SDK's class
map are derived from this table or checked against it by tests (docs/architecture.md, "How to
add an error code").

Exceptions::

    GatewayError            raised by the gateway itself; ``.code`` is an ErrorCode
    (any Exception with a string ``.code`` that is in ERRORS)
                            raised by a domain package (settlement, issuance, sscard). Those
                            packages may not import gateway, so they are recognised by shape;
                            their codes must be registered in ERRORS, or they map to INTERNAL.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Final

__all__ = [
    "ERRORS",
    "PROBLEM_CONTENT_TYPE",
    "ErrorCode",
    "ErrorSpec",
    "GatewayError",
    "codes_named",
    "codes_of",
    "domain_error_code",
    "problem_body",
]

PROBLEM_CONTENT_TYPE: Final = "application/problem+json"
PROBLEM_TYPE_PREFIX: Final = "urn:ssc-gateway:problem:"
# Sent with every 401 (RFC 9110 §11.6.1 requires a challenge).
WWW_AUTHENTICATE: Final = 'HMAC-SM3 realm="ssc-gateway"'


@dataclass(frozen=True, slots=True)
class ErrorSpec:
    code: str
    status: int
    title: str
    message: str
    message_zh: str
    # Seconds a client should wait before retrying; None when a retry cannot help.
    retry_after_s: int | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


_AUTH_HEADERS: Final = {"WWW-Authenticate": WWW_AUTHENTICATE}
_CALL_IT: Final = "Ask your IT support to check the terminal software."
_CALL_IT_ZH: Final = "请联系信息科检查终端软件。"
# Card authentication. 401 = the card did not prove it is genuine; 403 = the card is genuine
# (or the terminal is known) but may not be used; 404/409/410 = the challenge's own state.
_CARD_AUTH_HEADERS: Final = {"WWW-Authenticate": 'SSC-Card realm="ssc-gateway"'}
_READ_AGAIN: Final = "Take the card out, insert it again and read it once more."
_READ_AGAIN_ZH: Final = "请取出社保卡重新插卡读卡。"
_NOT_GENUINE: Final = (
    "The card could not prove it is a genuine social security card. Read it again; if it "
    "fails again, do not accept it and ask the holder to contact 962222."
)
_NOT_GENUINE_ZH: Final = (
    "该卡未通过真伪验证。请重新读卡；如仍失败，请勿受理，并请持卡人致电 962222。"
)

_CHECK_CLAIM: Final = "Check the visit and its fee lines, then try again."
_CHECK_CLAIM_ZH: Final = "请核对就诊信息和费用明细后重试。"


# THE table: one row per code, its one status and its messages. A code's status never
# changes once published; add codes, do not repurpose them. ``ERRORS`` below is this table as
# a mapping; docs/CONTRACTS.md's code table is generated from it (python -m gateway.error_docs).
class ErrorCode(StrEnum):
    """Every code the gateway answers. Each member is ``NAME = ErrorSpec("NAME", ...)``: the
    code and its row in one place, so a new code is one edit here (docs/architecture.md, "How
    to add an error code"). A member IS its code string (``ErrorCode.CARD_LOST == "CARD_LOST"``)
    and carries its row as ``.spec``."""

    _value_: str
    spec: ErrorSpec

    # ``str`` only so that mypy accepts the lookup ``ErrorCode("CARD_LOST")``: once the class
    # is made, a call looks a member up by its value and never reaches this __new__.
    def __new__(cls, spec: ErrorSpec | str) -> ErrorCode:
        assert isinstance(spec, ErrorSpec), spec
        member = str.__new__(cls, spec.code)
        member._value_ = spec.code
        member.spec = spec
        return member

    # request shape
    BODY_TOO_LARGE = ErrorSpec(
        "BODY_TOO_LARGE",
        413,
        "Request body too large",
        f"The request is larger than the gateway accepts. {_CALL_IT}",
        f"请求数据过大。{_CALL_IT_ZH}",
    )
    MALFORMED_JSON = ErrorSpec(
        "MALFORMED_JSON",
        400,
        "Malformed JSON",
        f"The terminal sent a request the gateway could not read. {_CALL_IT}",
        f"终端发送的请求无法解析。{_CALL_IT_ZH}",
    )
    VALIDATION_FAILED = ErrorSpec(
        "VALIDATION_FAILED",
        422,
        "Request validation failed",
        f"Some fields of the request are missing or wrong. {_CALL_IT}",
        f"请求中有字段缺失或不正确。{_CALL_IT_ZH}",
    )
    UNSUPPORTED_MEDIA_TYPE = ErrorSpec(
        "UNSUPPORTED_MEDIA_TYPE",
        415,
        "Unsupported media type",
        f"The request must be JSON (application/json, UTF-8). {_CALL_IT}",
        f"请求必须为 JSON 格式（application/json，UTF-8）。{_CALL_IT_ZH}",
    )
    BAD_REQUEST = ErrorSpec(
        "BAD_REQUEST",
        400,
        "Bad request",
        f"The gateway could not understand the request. {_CALL_IT}",
        f"网关无法理解该请求。{_CALL_IT_ZH}",
    )
    NOT_FOUND = ErrorSpec(
        "NOT_FOUND",
        404,
        "Not found",
        f"The terminal called an address the gateway does not have. {_CALL_IT}",
        f"终端访问的地址不存在。{_CALL_IT_ZH}",
    )
    METHOD_NOT_ALLOWED = ErrorSpec(
        "METHOD_NOT_ALLOWED",
        405,
        "Method not allowed",
        f"The terminal used the wrong kind of request for this address. {_CALL_IT}",
        f"终端对该地址使用了错误的请求方式。{_CALL_IT_ZH}",
    )
    # terminal authentication
    SIGNATURE_MISSING = ErrorSpec(
        "SIGNATURE_MISSING",
        401,
        "Request not signed",
        "The request carries no terminal signature. Check that the terminal is set up "
        "with its terminal id and secret.",
        "请求未携带终端签名。请检查终端是否已配置终端编号和密钥。",
        headers=_AUTH_HEADERS,
    )
    SIGNATURE_INVALID = ErrorSpec(
        "SIGNATURE_INVALID",
        401,
        "Signature invalid",
        "The terminal's signature is wrong. Check that the terminal's secret matches the one "
        "registered with the gateway.",
        "终端签名错误。请检查终端密钥是否与网关登记的一致。",
        headers=_AUTH_HEADERS,
    )
    TERMINAL_UNKNOWN = ErrorSpec(
        "TERMINAL_UNKNOWN",
        401,
        "Terminal unknown",
        "This terminal is not registered with the gateway. Ask the healthcare security "
        "office to register its terminal id.",
        "本终端未在网关登记。请联系医保经办机构登记终端编号。",
        headers=_AUTH_HEADERS,
    )
    TERMINAL_DISABLED = ErrorSpec(
        "TERMINAL_DISABLED",
        401,
        "Terminal disabled",
        "This terminal has been disabled. Use another terminal, or ask the healthcare "
        "security office to enable it again.",
        "本终端已停用。请使用其他终端，或联系医保经办机构重新启用。",
        headers=_AUTH_HEADERS,
    )
    TIMESTAMP_SKEW = ErrorSpec(
        "TIMESTAMP_SKEW",
        401,
        "Clock out of sync",
        "The terminal's clock is wrong. Set the computer's date and time (use network "
        "time), then try again.",
        "终端时钟不准。请校准电脑的日期和时间（建议开启网络对时）后重试。",
        headers=_AUTH_HEADERS,
    )
    REQUEST_REPLAYED = ErrorSpec(
        "REQUEST_REPLAYED",
        401,
        "Request replayed",
        "This request was already received once and was not processed again. Start the "
        "operation again from the terminal.",
        "该请求已收到过，未重复处理。请在终端上重新发起操作。",
        headers=_AUTH_HEADERS,
    )
    # Request signature version 1 outside its transition window (gateway.routing).
    SIGNATURE_VERSION_UNSUPPORTED = ErrorSpec(
        "SIGNATURE_VERSION_UNSUPPORTED",
        401,
        "Signature version not accepted",
        "The terminal signs its requests in a form the gateway no longer accepts. Update "
        "the terminal software (request signature version 2).",
        "终端的请求签名方式已不被网关接受。请升级终端软件（请求签名第 2 版）。",
        headers=_AUTH_HEADERS,
    )
    # capacity
    RATE_LIMITED = ErrorSpec(
        "RATE_LIMITED",
        429,
        "Too many requests",
        "This terminal is sending requests too fast. Wait a moment and try again.",
        "本终端请求过于频繁。请稍候再试。",
        retry_after_s=1,
    )
    OVERLOADED = ErrorSpec(
        "OVERLOADED",
        503,
        "Gateway busy",
        "The gateway is busy. Wait a few seconds and try again.",
        "网关繁忙。请稍候几秒再试。",
        retry_after_s=2,
    )
    DB_UNAVAILABLE = ErrorSpec(
        "DB_UNAVAILABLE",
        503,
        "Storage unavailable",
        "The gateway cannot reach its database. Wait a minute and try again; if it "
        "persists, call the gateway operator.",
        "网关暂时无法访问数据库。请稍候一分钟再试；如持续出现，请联系网关运维。",
        retry_after_s=5,
    )
    # the gateway's fault
    INTERNAL = ErrorSpec(
        "INTERNAL",
        500,
        "Internal error",
        "The gateway hit an unexpected error. Try again; if it persists, call the gateway "
        "operator and quote the request id.",
        "网关发生意外错误。请重试；如持续出现，请联系网关运维并提供请求编号。",
    )
    # card authentication (gateway.card_auth): the challenge
    CHALLENGE_UNKNOWN = ErrorSpec(
        "CHALLENGE_UNKNOWN",
        404,
        "Card challenge unknown",
        f"The gateway has no record of this card reading. {_READ_AGAIN}",
        f"网关没有本次读卡的记录。{_READ_AGAIN_ZH}",
    )
    CHALLENGE_EXPIRED = ErrorSpec(
        "CHALLENGE_EXPIRED",
        410,
        "Card challenge expired",
        f"The card took too long to answer. {_READ_AGAIN}",
        f"读卡超时。{_READ_AGAIN_ZH}",
    )
    CHALLENGE_REUSED = ErrorSpec(
        "CHALLENGE_REUSED",
        409,
        "Card challenge already used",
        f"This card reading was already used once. {_READ_AGAIN}",
        f"本次读卡结果已使用过。{_READ_AGAIN_ZH}",
    )
    CHALLENGE_MISMATCH = ErrorSpec(
        "CHALLENGE_MISMATCH",
        403,
        "Card challenge mismatch",
        f"The card answer does not belong to this terminal or this card. {_READ_AGAIN} {_CALL_IT}",
        f"读卡结果与本终端或本卡不符。{_READ_AGAIN_ZH}{_CALL_IT_ZH}",
    )
    TERMINAL_ID_TOO_LONG = ErrorSpec(
        "TERMINAL_ID_TOO_LONG",
        422,
        "Terminal id too long for card authentication",
        "This terminal's id is longer than 32 characters, which the card cannot sign. Ask "
        f"the healthcare security office for a shorter terminal id. {_CALL_IT}",
        "终端编号超过 32 个字符，社保卡无法签名。"
        f"请联系医保经办机构更换较短的终端编号。{_CALL_IT_ZH}",
    )
    # the card certificate (codes of sscard.certs, plus the gateway's own)
    CERT_MALFORMED = ErrorSpec(
        "CERT_MALFORMED",
        401,
        "Card certificate malformed",
        f"The card's certificate could not be read. {_NOT_GENUINE}",
        f"无法读取该卡的证书。{_NOT_GENUINE_ZH}",
        headers=_CARD_AUTH_HEADERS,
    )
    CERT_INVALID = ErrorSpec(
        "CERT_INVALID",
        401,
        "Card certificate invalid",
        _NOT_GENUINE,
        _NOT_GENUINE_ZH,
        headers=_CARD_AUTH_HEADERS,
    )
    CERT_EXPIRED = ErrorSpec(
        "CERT_EXPIRED",
        401,
        "Card certificate expired",
        "The card's certificate has expired: the card can no longer be used. The holder "
        "needs a new card (962222).",
        "该卡证书已过期，卡片不能再使用。请持卡人换领新卡（962222）。",
        headers=_CARD_AUTH_HEADERS,
    )
    CERT_NOT_YET_VALID = ErrorSpec(
        "CERT_NOT_YET_VALID",
        401,
        "Card certificate not yet valid",
        "The card's certificate is not valid yet. Check the terminal's date and time; if "
        "they are right, ask the holder to contact 962222.",
        "该卡证书尚未生效。请检查终端日期时间；如无误，请持卡人致电 962222。",
        headers=_CARD_AUTH_HEADERS,
    )
    CERT_CHAIN_INVALID = ErrorSpec(
        "CERT_CHAIN_INVALID",
        401,
        "Card certificate not from a trusted issuer",
        "The card's certificate was not issued by the Shanghai social security card "
        f"authority. {_NOT_GENUINE}",
        f"该卡证书不是上海社保卡发卡机构签发的。{_NOT_GENUINE_ZH}",
        headers=_CARD_AUTH_HEADERS,
    )
    CERT_SIGNATURE_INVALID = ErrorSpec(
        "CERT_SIGNATURE_INVALID",
        401,
        "Card certificate signature invalid",
        f"The card's certificate has been altered. {_NOT_GENUINE}",
        f"该卡证书已被篡改。{_NOT_GENUINE_ZH}",
        headers=_CARD_AUTH_HEADERS,
    )
    CERT_NOT_CA = ErrorSpec(
        "CERT_NOT_CA",
        401,
        "Card certificate chain invalid",
        _NOT_GENUINE,
        _NOT_GENUINE_ZH,
        headers=_CARD_AUTH_HEADERS,
    )
    CERT_PATH_LEN = ErrorSpec(
        "CERT_PATH_LEN",
        401,
        "Card certificate chain invalid",
        _NOT_GENUINE,
        _NOT_GENUINE_ZH,
        headers=_CARD_AUTH_HEADERS,
    )
    CERT_KEY_USAGE = ErrorSpec(
        "CERT_KEY_USAGE",
        401,
        "Card certificate chain invalid",
        _NOT_GENUINE,
        _NOT_GENUINE_ZH,
        headers=_CARD_AUTH_HEADERS,
    )
    CERT_CRITICAL_EXTENSION = ErrorSpec(
        "CERT_CRITICAL_EXTENSION",
        401,
        "Card certificate chain invalid",
        _NOT_GENUINE,
        _NOT_GENUINE_ZH,
        headers=_CARD_AUTH_HEADERS,
    )
    CERT_UNKNOWN = ErrorSpec(
        "CERT_UNKNOWN",
        422,
        "Card certificate not known yet",
        "The gateway has not seen this card's certificate yet. The terminal should read the "
        "card again and send the whole certificate; if this keeps happening, ask your IT "
        "support to check the terminal software.",
        "网关尚未登记该卡证书。终端应重新读卡并上送完整证书；如反复出现，请联系信息科检查终端软件。",
    )
    CERT_CARD_MISMATCH = ErrorSpec(
        "CERT_CARD_MISMATCH",
        401,
        "Card certificate belongs to another card",
        f"The certificate the card presented belongs to a different card. {_NOT_GENUINE}",
        f"该卡出示的证书属于另一张卡。{_NOT_GENUINE_ZH}",
        headers=_CARD_AUTH_HEADERS,
    )
    CERT_NOT_CURRENT = ErrorSpec(
        "CERT_NOT_CURRENT",
        403,
        "Card certificate replaced",
        "This card's certificate has been replaced; the card may have been reissued. Ask the "
        "holder for their current card.",
        "该卡证书已被更换，卡片可能已补换。请持卡人出示现用的社保卡。",
    )
    # the registry (codes of issuance.errors)
    CARD_UNKNOWN = ErrorSpec(
        "CARD_UNKNOWN",
        403,
        "Card not registered",
        "This card is not in the social security card registry. Ask the holder for their "
        "current social security card.",
        "社保卡管理系统中没有该卡。请持卡人出示现用的社保卡。",
    )
    CARD_LOST = ErrorSpec(
        "CARD_LOST",
        403,
        "Card reported lost",
        "This card was reported lost and is blocked. Do not accept it. The holder can get a "
        "replacement at a community service centre or a service bank (962222).",
        "该卡已挂失，不能使用，请勿受理。持卡人可到社区事务受理服务中心或服务银行补卡（962222）。",
    )
    CARD_SUPERSEDED = ErrorSpec(
        "CARD_SUPERSEDED",
        403,
        "Old card replaced by a new card",
        "This old card was voided when the holder activated a new social security card. "
        "Please use the new card.",
        "持卡人已启用新社保卡，该旧卡已失效。请使用新卡。",
    )
    CARD_REVOKED = ErrorSpec(
        "CARD_REVOKED",
        403,
        "Card replaced",
        "This card was replaced and is no longer valid. Please use the replacement card.",
        "该卡已补换，不再有效。请使用补换后的新卡。",
    )
    CARD_EXPIRED = ErrorSpec(
        "CARD_EXPIRED",
        403,
        "Card expired",
        "This card has expired. The holder needs a new card (962222).",
        "该卡已过有效期。请持卡人换领新卡（962222）。",
    )
    CARD_NOT_ACTIVATED = ErrorSpec(
        "CARD_NOT_ACTIVATED",
        403,
        "Card not activated",
        "This new card has not been activated yet. The holder can activate it at a service "
        "bank, or use the old card for now.",
        "该新卡尚未启用。持卡人可到服务银行启用，或暂时使用旧卡。",
    )
    LEGACY_PERIOD_OVER = ErrorSpec(
        "LEGACY_PERIOD_OVER",
        403,
        "Old cards no longer accepted",
        "Old (second-generation) cards are no longer accepted. The holder needs the new "
        "social security card.",
        "第二代社保卡已停止受理。请持卡人使用第三代社保卡。",
    )
    CARD_GENERATION_MISMATCH = ErrorSpec(
        "CARD_GENERATION_MISMATCH",
        422,
        "Card generation mismatch",
        f"The terminal treated a new card as an old one or the reverse. {_READ_AGAIN} {_CALL_IT}",
        f"终端把新卡当成旧卡或把旧卡当成新卡处理。{_READ_AGAIN_ZH}{_CALL_IT_ZH}",
    )
    # The card PKI's CRL lists the certificate (gateway.card_auth.revocation): beside the
    # registry's CARD_LOST / CARD_SUPERSEDED, a card the issuer revoked by its certificate.
    CARD_CERT_REVOKED = ErrorSpec(
        "CARD_CERT_REVOKED",
        403,
        "Card certificate revoked",
        "The card issuer has revoked this card's certificate, so the card cannot be accepted. "
        "Do not accept it; the holder can ask about a replacement at a service bank or "
        "community service centre (962222).",
        "发卡机构已吊销该卡的证书，该卡不能受理，请勿受理。持卡人可到服务银行或社区事务受理服务"
        "中心咨询补换卡（962222）。",
    )
    # the card's own proof
    CARD_SIGNATURE_INVALID = ErrorSpec(
        "CARD_SIGNATURE_INVALID",
        401,
        "Card signature invalid",
        _NOT_GENUINE,
        _NOT_GENUINE_ZH,
        headers=_CARD_AUTH_HEADERS,
    )
    CRYPTOGRAM_INVALID = ErrorSpec(
        "CRYPTOGRAM_INVALID",
        401,
        "Card cryptogram invalid",
        _NOT_GENUINE,
        _NOT_GENUINE_ZH,
        headers=_CARD_AUTH_HEADERS,
    )
    # card sessions (used by the settlement routes)
    CARD_SESSION_INVALID = ErrorSpec(
        "CARD_SESSION_INVALID",
        401,
        "Card session invalid",
        f"The card has to be read again before this step. {_READ_AGAIN}",
        f"此步骤前需重新读卡。{_READ_AGAIN_ZH}",
        headers=_CARD_AUTH_HEADERS,
    )
    CARD_SESSION_EXPIRED = ErrorSpec(
        "CARD_SESSION_EXPIRED",
        401,
        "Card session expired",
        f"Too much time has passed since the card was read. {_READ_AGAIN}",
        f"距上次读卡时间过长。{_READ_AGAIN_ZH}",
        headers=_CARD_AUTH_HEADERS,
    )
    CARD_SESSION_WRONG_TERMINAL = ErrorSpec(
        "CARD_SESSION_WRONG_TERMINAL",
        403,
        "Card session of another terminal",
        "The card was read at a different terminal. Read the card at this terminal.",
        "该卡是在其他终端读取的。请在本终端重新读卡。",
    )
    CARD_AUTH_UNAVAILABLE = ErrorSpec(
        "CARD_AUTH_UNAVAILABLE",
        503,
        "Card authentication unavailable",
        "The gateway cannot check cards right now (it is not configured for it). Call the "
        "gateway operator.",
        "网关暂时无法验卡（未完成配置）。请联系网关运维。",
        retry_after_s=60,
    )
    # settlement (codes of settlement.errors, plus the settlement API's own)
    INVALID_CLAIM = ErrorSpec(
        "INVALID_CLAIM",
        422,
        "Claim cannot be settled",
        f"The claim cannot be settled as sent. {_CHECK_CLAIM}",
        f"该笔费用无法按所报内容结算。{_CHECK_CLAIM_ZH}",
    )
    INVALID_AMOUNT = ErrorSpec(
        "INVALID_AMOUNT",
        422,
        "Invalid amount or quantity",
        f"A quantity or price is not a whole positive number or is too large. {_CHECK_CLAIM}",
        f"数量或单价不是正整数或超出上限。{_CHECK_CLAIM_ZH}",
    )
    UNKNOWN_CATALOGUE_CODE = ErrorSpec(
        "UNKNOWN_CATALOGUE_CODE",
        422,
        "Item not in the catalogue",
        "An item code is not in the medical insurance catalogue. Check the item codes "
        f"in the terminal's catalogue. {_CALL_IT}",
        f"有项目编码不在医保目录中。请核对终端目录中的项目编码。{_CALL_IT_ZH}",
    )
    TOO_MANY_LINES = ErrorSpec(
        "TOO_MANY_LINES",
        422,
        "Too many fee lines",
        "The claim has too many (or no) fee lines. Split it into smaller claims.",
        "费用明细条数过多（或为空）。请分笔结算。",
    )
    INVALID_VISIT = ErrorSpec(
        "INVALID_VISIT",
        422,
        "Visit details invalid",
        f"The visit's type or date is not valid (a date in the future?). {_CHECK_CLAIM}",
        f"就诊类型或日期不正确（是否为未来日期？）。{_CHECK_CLAIM_ZH}",
    )
    INVALID_PERSON = ErrorSpec(
        "INVALID_PERSON",
        422,
        "Insured person not covered",
        "The cardholder's insurance does not cover this settlement. Settle in cash and ask "
        "the holder to call 962218.",
        "参保人的险种不适用本次结算。请按现金结算，并请参保人致电 962218。",
    )
    POLICY_NOT_FOUND = ErrorSpec(
        "POLICY_NOT_FOUND",
        422,
        "No benefit policy for this date",
        f"No benefit policy covers the visit date. Check the visit date. {_CALL_IT}",
        f"没有适用于该就诊日期的待遇政策。请核对就诊日期。{_CALL_IT_ZH}",
    )
    PERSON_NOT_FOUND = ErrorSpec(
        "PERSON_NOT_FOUND",
        404,
        "No insurance record",
        "The cardholder has no medical insurance record at the gateway. Settle in cash and "
        "ask the holder to call 962218.",
        "网关中没有该持卡人的医保参保信息。请按现金结算，并请参保人致电 962218。",
    )
    SETTLEMENT_NOT_FOUND = ErrorSpec(
        "SETTLEMENT_NOT_FOUND",
        404,
        "Settlement not found",
        "This institution has no settlement with that number. Check the settlement number.",
        "本机构没有该结算编号的结算记录。请核对结算编号。",
    )
    SETTLEMENT_ALREADY_CANCELLED = ErrorSpec(
        "SETTLEMENT_ALREADY_CANCELLED",
        409,
        "Settlement already cancelled",
        "This settlement was already cancelled; nothing was changed.",
        "该笔结算已撤销，本次未作任何变更。",
    )
    IDEMPOTENCY_KEY_MISSING = ErrorSpec(
        "IDEMPOTENCY_KEY_MISSING",
        400,
        "Idempotency-Key missing or malformed",
        f"The request needs an Idempotency-Key header (1 to 255 visible characters). {_CALL_IT}",
        f"请求缺少 Idempotency-Key 请求头（1 至 255 个可见字符）。{_CALL_IT_ZH}",
    )
    IDEMPOTENCY_KEY_IN_USE = ErrorSpec(
        "IDEMPOTENCY_KEY_IN_USE",
        409,
        "Request still running",
        "The same request is still being processed. Wait a few seconds, then send it "
        "again unchanged; it will not be charged twice.",
        "同一笔请求仍在处理中。请稍候几秒后原样重发，不会重复扣费。",
        retry_after_s=1,
    )
    IDEMPOTENCY_KEY_REUSED = ErrorSpec(
        "IDEMPOTENCY_KEY_REUSED",
        422,
        "Idempotency-Key reused",
        f"The terminal reused a request number for a different request. {_CALL_IT}",
        f"终端对不同的请求使用了相同的请求编号。{_CALL_IT_ZH}",
    )
    VISIT_TYPE_NOT_ALLOWED = ErrorSpec(
        "VISIT_TYPE_NOT_ALLOWED",
        422,
        "Visit type not allowed here",
        "This kind of visit cannot be settled at this institution or through this step "
        "(pharmacy purchases at pharmacies; inpatient stays through admission and "
        "discharge).",
        "本机构或本环节不能办理该类就诊结算（药店购药在药店办理；住院须经入院登记和出院结算）。",
    )
    ADMISSION_NOT_FOUND = ErrorSpec(
        "ADMISSION_NOT_FOUND",
        404,
        "Admission not found",
        "This hospital has no inpatient admission with that number. Check the number.",
        "本院没有该住院登记号。请核对登记号。",
    )
    ADMISSION_CLOSED = ErrorSpec(
        "ADMISSION_CLOSED",
        409,
        "Admission already settled",
        "This stay was already settled at discharge; no more fees can be added to it.",
        "该次住院已出院结算，不能再上传费用。",
    )
    ADMISSION_OTHER_PERSON = ErrorSpec(
        "ADMISSION_OTHER_PERSON",
        403,
        "Card of another patient",
        "The card read belongs to a different patient than this admission. Read the "
        "patient's own card.",
        "所读社保卡与该住院登记的患者不符。请读取患者本人的社保卡。",
    )
    RECONCILIATION_FORBIDDEN = ErrorSpec(
        "RECONCILIATION_FORBIDDEN",
        403,
        "Not allowed to view reconciliation",
        "Only the healthcare security office's operations terminals may list every "
        "institution's reconciliation mismatches.",
        "只有医保经办机构的运维终端可以查看所有机构的对账差异。",
    )
    STATEMENT_INVALID = ErrorSpec(
        "STATEMENT_INVALID",
        422,
        "Reconciliation statement invalid",
        "The reconciliation statement cannot be compared. Check it, then send it again.",
        "对账数据有误，无法对账。请核对后重新发送。",
    )
    STATEMENT_DATE_OUT_OF_WINDOW = ErrorSpec(
        "STATEMENT_DATE_OUT_OF_WINDOW",
        422,
        "Statement day out of the window",
        "The statement day is in the future or more than a year back. Reconcile a day from the "
        "past year, today included.",
        "对账日期晚于今天或早于一年前。请对近一年内（含今天）的日期对账。",
    )
    STATEMENT_FIGURES_INCONSISTENT = ErrorSpec(
        "STATEMENT_FIGURES_INCONSISTENT",
        422,
        "Statement figures do not add up",
        "In the reconciliation statement, a total is not fund + account + cash. Check the "
        "institution's figures (the detail names the row), then send it again.",
        "对账数据中医疗费总额不等于基金支付、个人账户支付与现金支付之和。请核对后重新发送。",
    )
    CLAIM_EMPTY = ErrorSpec(
        "CLAIM_EMPTY",
        422,
        "Nothing to settle",
        "The claim has no fee lines, or every line is priced 0: there is nothing to settle. "
        "Add the visit's fee lines, then try again.",
        "费用明细为空或金额均为 0，无需结算。请录入本次就诊的费用明细后重试。",
    )
    CLAIM_ABOVE_COUNTER_LIMIT = ErrorSpec(
        "CLAIM_ABOVE_COUNTER_LIMIT",
        422,
        "Claim above the counter limit",
        "The claim's total is above what the counter may settle for this visit type. Do not "
        "settle it here: send it to the insurance office for manual review.",
        "本次费用总额超过柜台可结算的上限。请勿在此结算，请提交医保经办机构人工审核。",
    )
    # cross-province settlement through the national hub (gateway.crossprov)
    FILING_REQUIRED = ErrorSpec(
        "FILING_REQUIRED",
        422,
        "Cross-province filing required",
        "This patient is insured in another province and has no valid filing (备案) for "
        "settling here: a resettled-retiree or long-term-resident filing, or a referral to "
        "this institution. Ask the patient to file with their insured place, or settle in "
        "cash; emergencies count as filed.",
        "该患者为外省参保人员，尚无有效的异地就医备案（异地安置退休、异地长期居住，或转诊至本机构）。"
        "请患者向参保地办理备案，或按现金结算；急诊抢救视同已备案。",
    )
    HUB_UNAVAILABLE = ErrorSpec(
        "HUB_UNAVAILABLE",
        503,
        "National hub unavailable",
        "The national cross-province platform cannot be reached right now; nothing was "
        "charged. Try again in a moment, or settle in cash.",
        "暂时无法连接国家异地就医结算平台，未发生任何扣费。请稍后重试，或按现金结算。",
        retry_after_s=10,
    )
    HUB_OUTCOME_UNKNOWN = ErrorSpec(
        "HUB_OUTCOME_UNKNOWN",
        503,
        "Settlement not confirmed",
        "The settlement was not confirmed by the national platform; it is being reversed "
        "and nothing was charged. Settle again.",
        "国家平台未确认该笔结算，系统正在自动冲正，未发生扣费。请重新结算。",
        retry_after_s=1,
    )
    HUB_REFUSED = ErrorSpec(
        "HUB_REFUSED",
        422,
        "Refused by the insured place",
        "The national platform refused this settlement; the reason from the insured place "
        "is in the detail. Nothing was charged.",
        "国家平台（参保地）拒绝了该笔结算，原因见详细信息。未发生扣费。",
    )
    FILING_NOT_FOUND = ErrorSpec(
        "FILING_NOT_FOUND",
        404,
        "Filing not found",
        "This institution registered no filing (备案) with that number for this person. "
        "Check the number (trt_dcla_detl_sn).",
        "本机构没有为该人员登记该编号的备案。请核对备案流水号（trt_dcla_detl_sn）。",
    )
    # issuance (codes of issuance.errors' service errors; gateway.issuance_api)
    ILLEGAL_TRANSITION = ErrorSpec(
        "ILLEGAL_TRANSITION",
        409,
        "Not possible in the card's current state",
        "This step is not possible for the card or application in its current state. The "
        "answer lists the current state and the steps that are possible now.",
        "该卡（申请）当前状态下不能办理此项业务。返回信息中列明了当前状态和可办理的业务。",
    )
    NOT_ELIGIBLE = ErrorSpec(
        "NOT_ELIGIBLE",
        422,
        "Not eligible for the new card",
        "Only people with Shanghai household registration, or insured in Shanghai, can "
        "apply for the Shanghai social security card.",
        "只有本市户籍人员或在本市参加社会保险的人员可以申领上海社保卡。",
    )
    COHORT_WINDOW_CLOSED = ErrorSpec(
        "COHORT_WINDOW_CLOSED",
        422,
        "Outside the application period",
        "This group's application period is not open on this date. First cards and "
        "replacements are taken at community service centres all year.",
        "该类人员不在换发时间段内。新办和补换可随时到社区事务受理服务中心办理。",
    )
    CHANNEL_NOT_ALLOWED = ErrorSpec(
        "CHANNEL_NOT_ALLOWED",
        422,
        "Wrong channel for this applicant",
        "This applicant cannot apply through this channel (bank branch, employer batch, "
        "online or community centre). Direct them to the channel for their group.",
        "该申请人不能通过此渠道申领（银行网点、单位批量、网上或社区）。请引导至对应渠道办理。",
    )
    PHOTO_SOURCE_NOT_ALLOWED = ErrorSpec(
        "PHOTO_SOURCE_NOT_ALLOWED",
        422,
        "Photo source not available",
        "This photo source cannot be used here. Take the photo on site or use the ID-card photo.",
        "此照片来源在此不可用。请现场拍照或使用身份证照片。",
    )
    BANK_CHOICE_INVALID = ErrorSpec(
        "BANK_CHOICE_INVALID",
        422,
        "Bank choice not allowed",
        "The bank for the new card follows the pension or salary bank when it is one of the "
        "11 service banks; otherwise choose one of the 11.",
        "新版社保卡开户银行：养老金或工资代发银行为11家服务银行之一的，使用该银行；否则从11家服务银行中选择1家。",
    )
    APPLICATION_OPEN = ErrorSpec(
        "APPLICATION_OPEN",
        409,
        "Application already in progress",
        "This person already has a card application in progress. Check its status instead "
        "of applying again.",
        "此人已有正在办理的申领。请查询办理进度，无需重复申请。",
    )
    HOLDER_MISMATCH = ErrorSpec(
        "HOLDER_MISMATCH",
        422,
        "Personal data differ from the registry",
        "The name or date of birth differs from the registered cardholder. Check the ID card.",
        "姓名或出生日期与登记信息不符。请核对身份证件。",
    )
    APPLICATION_NOT_FOUND = ErrorSpec(
        "APPLICATION_NOT_FOUND",
        404,
        "Application not found",
        "No such application is visible to this institution. Check the number, or ask the "
        "holder to call 962222.",
        "本机构查不到该申领记录。请核对编号，或请持卡人致电 962222。",
    )
    ISSUANCE_CARD_NOT_FOUND = ErrorSpec(
        "ISSUANCE_CARD_NOT_FOUND",
        404,
        "Card not found",
        "No such card is visible to this institution. Check the card, or ask the holder to "
        "call 962222.",
        "本机构查不到该卡。请核对卡片，或请持卡人致电 962222。",
    )
    BATCH_NOT_FOUND = ErrorSpec(
        "BATCH_NOT_FOUND",
        404,
        "Production batch not found",
        "There is no such production batch.",
        "不存在该制卡批次。",
    )
    ISSUANCE_FORBIDDEN = ErrorSpec(
        "ISSUANCE_FORBIDDEN",
        403,
        "Not allowed for this institution",
        "This institution may not do this card service. Ask the card centre (962222) "
        "which institutions can.",
        "本机构无权办理此项社保卡业务。请向社保卡服务中心（962222）咨询办理机构。",
    )
    INSTITUTION_KIND_NOT_ALLOWED = ErrorSpec(
        "INSTITUTION_KIND_NOT_ALLOWED",
        403,
        "Not for this kind of institution",
        "This terminal's institution cannot use this service: medical settlement is for "
        "hospitals and pharmacies only, card services for banks, employers and centres. "
        "Use a terminal of the right institution.",
        "本机构类型不能使用此项业务：医疗结算仅限定点医院和药店，社保卡业务由银行、单位和服务中心办理。"
        "请使用相应机构的终端。",
    )
    UPLOAD_INVALID = ErrorSpec(
        "UPLOAD_INVALID",
        422,
        "Upload file unusable",
        "The uploaded list could not be used as a whole (header, size or encoding). Fix the "
        "file and upload it again.",
        "上传的名单整体无法使用（表头、大小或编码有误）。请修改后重新上传。",
    )
    ISSUING_CA_UNAVAILABLE = ErrorSpec(
        "ISSUING_CA_UNAVAILABLE",
        503,
        "Card production unavailable",
        "Cards cannot be made right now (no issuing key configured). Call the gateway operator.",
        "暂时无法制卡（未配置签发密钥）。请联系网关运维。",
        retry_after_s=60,
    )
    # operations dashboard (gateway.ops)
    OPS_UNAUTHORIZED = ErrorSpec(
        "OPS_UNAUTHORIZED",
        401,
        "Ops token missing or wrong",
        "The operations dashboard needs the gateway's ops token. Enter the token from the "
        "gateway's ops_token setting (demo: the ops-token file in the data directory, "
        "named at start-up).",
        "运维看板需要网关的运维令牌。请输入网关 ops_token 配置中的令牌（演示环境：数据目录中的 "
        "ops-token 文件，启动时已给出其路径）。",
        headers={"WWW-Authenticate": 'Bearer realm="ssc-ops"'},
    )
    # Not RATE_LIMITED: that one tells a clerk their terminal sends too fast. This one is
    # the brute-force guard of gateway.ops.guard; the token is not even compared.
    OPS_TOO_MANY_WRONG_TOKENS = ErrorSpec(
        "OPS_TOO_MANY_WRONG_TOKENS",
        429,
        "Too many wrong ops tokens",
        "Too many wrong ops tokens were sent from this address, so the gateway is not "
        "checking tokens from it for a while. Wait until the time given, then enter the "
        "token from the gateway's ops_token setting.",
        "该地址发送的错误运维令牌过多，网关暂时不再校验来自该地址的令牌。请等待提示的时间后，"
        "再输入网关 ops_token 配置中的令牌。",
        retry_after_s=60,
    )
    # /metrics behind a setting (gateway.metrics_access)
    METRICS_UNAUTHORIZED = ErrorSpec(
        "METRICS_UNAUTHORIZED",
        401,
        "Metrics token missing or wrong",
        "The metrics need the gateway's metrics token (setting metrics_token) as a bearer "
        "token. Check the monitoring system's configuration.",
        "读取监控指标需要网关的指标令牌（metrics_token 配置）。请检查监控系统的配置。",
        headers={"WWW-Authenticate": 'Bearer realm="ssc-metrics"'},
    )
    METRICS_FORBIDDEN = ErrorSpec(
        "METRICS_FORBIDDEN",
        403,
        "Metrics only from this host",
        "This gateway shows its metrics only to programs on its own host. To scrape them "
        "from elsewhere, set a metrics_token and send it as a bearer token.",
        "本网关仅向本机程序提供监控指标。如需从其他主机采集，请配置 metrics_token 并以 Bearer "
        "令牌方式发送。",
    )
    # --- the national-interface door (gateway.fsi, docs/national-interface.md) -------------
    # Answered inside an HTTP 200 envelope (infcode -1, or -2 for a msgid conflict); the
    # status below is what the code would mean on /v1 and is not sent by the /fsi door.
    FSI_ENVELOPE_INVALID = ErrorSpec(
        "FSI_ENVELOPE_INVALID",
        422,
        "Envelope invalid",
        f"The HIS sent an envelope with missing or wrong fields. {_CALL_IT}",
        f"HIS 发送的报文有字段缺失或格式不正确。{_CALL_IT_ZH}",
    )
    FSI_INFNO_UNSUPPORTED = ErrorSpec(
        "FSI_INFNO_UNSUPPORTED",
        422,
        "Transaction not supported",
        "The gateway does not offer this transaction (infno). Do it at the insurance "
        f"office's window, or {_CALL_IT[0].lower()}{_CALL_IT[1:]}",
        f"网关不支持该交易（infno）。请到医保窗口办理，或{_CALL_IT_ZH}",
    )
    FSI_INSTITUTION_UNKNOWN = ErrorSpec(
        "FSI_INSTITUTION_UNKNOWN",
        403,
        "Institution unknown",
        "This institution code is not enrolled with the gateway. Ask your IT support to "
        "check fixmedins_code.",
        "该定点医药机构编号未在网关登记。请联系信息科核对 fixmedins_code。",
    )
    FSI_OPERATOR_UNKNOWN = ErrorSpec(
        "FSI_OPERATOR_UNKNOWN",
        403,
        "Operator unknown",
        "This operator is not registered for this institution. Sign in with your own "
        "operator number, or ask the insurance office to register it.",
        "该操作员未在本机构登记。请使用本人操作员编号签到，或联系医保办登记。",
    )
    FSI_SIGN_NO_INVALID = ErrorSpec(
        "FSI_SIGN_NO_INVALID",
        403,
        "Not signed in",
        "This operator is not signed in at this device (sign_no unknown, signed out or "
        "expired). Sign in again (9001), then repeat the transaction.",
        "本操作员未在本设备签到（签到编号无效、已签退或已过期）。请重新签到（9001）后再办理。",
    )
    FSI_MSGID_REUSED = ErrorSpec(
        "FSI_MSGID_REUSED",
        422,
        "msgid reused",
        f"The HIS reused a message number (msgid) for a different request. {_CALL_IT}",
        f"HIS 对不同的请求使用了相同的报文编号（msgid）。{_CALL_IT_ZH}",
    )
    FSI_MSGID_IN_USE = ErrorSpec(
        "FSI_MSGID_IN_USE",
        409,
        "msgid still running",
        "The first request with this message number is still running. Wait a moment "
        "and send it again unchanged.",
        "相同报文编号的请求仍在处理中。请稍候原样重发。",
    )
    FSI_MSGID_REVERSED = ErrorSpec(
        "FSI_MSGID_REVERSED",
        409,
        "msgid reversed",
        "This transaction was reversed (2601): nothing stands under this message number. "
        "Start it again with a new message number if it is still wanted.",
        "该交易已被冲正（2601），此报文编号下的交易不成立。如仍需办理，请用新的报文编号重新发起。",
    )
    FSI_CARD_NOT_PRESENT = ErrorSpec(
        "FSI_CARD_NOT_PRESENT",
        403,
        "Card not read here",
        "The card was not read and authenticated at this device within the last minutes. "
        f"{_READ_AGAIN}",
        f"该卡近期未在本设备读卡认证。{_READ_AGAIN_ZH}",
    )
    FSI_CARD_MISMATCH = ErrorSpec(
        "FSI_CARD_MISMATCH",
        422,
        "Card does not match",
        "The card number or person number sent does not belong to the card that was "
        f"read. {_READ_AGAIN}",
        f"报文中的卡号或人员编号与所读社保卡不符。{_READ_AGAIN_ZH}",
    )
    FSI_CERT_TYPE_UNSUPPORTED = ErrorSpec(
        "FSI_CERT_TYPE_UNSUPPORTED",
        422,
        "Certificate type not supported",
        "The gateway settles with the social security card only (mdtrt_cert_type 03). "
        "Ask the patient for their card.",
        "网关仅支持社保卡就医（mdtrt_cert_type 03）。请患者出示社保卡。",
    )
    FSI_AMOUNT_MISMATCH = ErrorSpec(
        "FSI_AMOUNT_MISMATCH",
        422,
        "Total does not match the lines",
        f"The total sent (medfee_sumamt) is not the sum of the fee lines. {_CHECK_CLAIM}",
        f"费用总额（medfee_sumamt）与明细合计不符。{_CHECK_CLAIM_ZH}",
    )
    FSI_REVERSAL_REFUSED = ErrorSpec(
        "FSI_REVERSAL_REFUSED",
        422,
        "Reversal refused",
        "This transaction cannot be reversed (2601) here. Cancel it with its own cancel "
        "transaction instead.",
        "该交易不能冲正（2601）。请使用对应的撤销交易办理。",
    )
    FSI_CAINFO_INVALID = ErrorSpec(
        "FSI_CAINFO_INVALID",
        403,
        "Envelope signature invalid",
        f"The envelope's signature (cainfo) does not verify. {_CALL_IT}",
        f"报文签名（cainfo）验证失败。{_CALL_IT_ZH}",
    )
    FSI_DECRYPT_FAILED = ErrorSpec(
        "FSI_DECRYPT_FAILED",
        422,
        "Input could not be decrypted",
        f"The encrypted input could not be decrypted with this institution's key. {_CALL_IT}",
        f"加密的交易输入无法用本机构密钥解密。{_CALL_IT_ZH}",
    )
    FSI_INF_TIME_STALE = ErrorSpec(
        "FSI_INF_TIME_STALE",
        403,
        "Envelope time out of range",
        "The envelope's time (inf_time) is too far from the gateway's clock. Check the "
        "computer's clock, then send a new request.",
        "报文时间（inf_time）与网关时间相差过大。请校准电脑时间后重新发起。",
    )
    FSI_FILE_NOT_FOUND = ErrorSpec(
        "FSI_FILE_NOT_FOUND",
        404,
        "File not found",
        f"No uploaded file has this file number (file_qury_no). {_CALL_IT}",
        f"没有与该文件查询号（file_qury_no）对应的上传文件。{_CALL_IT_ZH}",
    )
    FSI_FILE_INVALID = ErrorSpec(
        "FSI_FILE_INVALID",
        422,
        "File refused",
        "The file cannot be used: too large, too many rows, not in the documented form, or "
        "its rows do not add up to the totals sent. Export the file again and send it again.",
        "文件无法使用：过大、行数过多、格式不符，或明细合计与所报总额不一致。请重新导出文件后再发送。",
    )
    # --- enrolment and keys at rest (gateway.enrolment, gateway.sealing; issue 14) ----------
    # Answered to operators (gateway admin, the ops API), except KEK_UNAVAILABLE, which a
    # terminal gets when its stored secret cannot be opened.
    OPS_FORBIDDEN = ErrorSpec(
        "OPS_FORBIDDEN",
        403,
        "Ops role may not do this",
        "Your ops identity's role does not allow this. Ask a gateway administrator.",
        "您的运维身份角色无权执行此操作。请联系网关管理员。",
    )
    ENROLMENT_CONFLICT = ErrorSpec(
        "ENROLMENT_CONFLICT",
        409,
        "Already enrolled",
        "Something with this id is enrolled already; nothing was changed. Choose another id, "
        "or change the existing one.",
        "该编号已登记，未作任何更改。请使用其他编号，或修改已有登记。",
    )
    ENROLMENT_NOT_FOUND = ErrorSpec(
        "ENROLMENT_NOT_FOUND",
        404,
        "Not enrolled",
        "No institution, terminal or ops identity has this id; nothing was changed.",
        "没有该编号的机构、终端或运维身份，未作任何更改。",
    )
    ENROLMENT_INVALID = ErrorSpec(
        "ENROLMENT_INVALID",
        422,
        "Enrolment refused",
        "The enrolment was refused as given (see the detail); nothing was changed.",
        "登记请求不符合要求（见详情），未作任何更改。",
    )
    # A card CRL refused by POST /v1/ops/crls (gateway.ops.crl_routes); the detail starts
    # with the reason's own code (CRL_STALE, CRL_SIGNATURE_INVALID …), as `admin crl` prints.
    CRL_REFUSED = ErrorSpec(
        "CRL_REFUSED",
        422,
        "CRL refused",
        "The revocation list was refused (the detail says why: not the card CA's, expired, "
        "older than the list in force …); nothing was changed.",
        "吊销列表未被接受（原因见详情：非发卡 CA 签发、已过期、旧于现行列表等），未作任何更改。",
    )
    KEK_UNAVAILABLE = ErrorSpec(
        "KEK_UNAVAILABLE",
        503,
        "Secrets cannot be opened",
        "The gateway cannot open this terminal's stored secret (no key-encryption key, or not "
        "the one it was sealed with). Call the gateway operator.",
        "网关无法解开本终端的存储密钥（未配置密钥加密密钥，或不是加密时所用的密钥）。"
        "请联系网关运维。",
        retry_after_s=60,
    )
    KEK_WRONG = ErrorSpec(
        "KEK_WRONG",
        409,
        "Wrong key-encryption key",
        "Some stored secrets were sealed under a key-encryption key this gateway does not hold; "
        "nothing was changed. Configure that key (kek_previous_files) and try again.",
        "部分存储密钥由本网关未持有的密钥加密密钥加密，未作任何更改。请配置该密钥"
        "（kek_previous_files）后重试。",
    )


ERRORS: Final[Mapping[str, ErrorSpec]] = MappingProxyType({code: code.spec for code in ErrorCode})
# A row whose name and code string differ would answer one code under another's name.
assert all(code.name == code.value for code in ErrorCode)


class GatewayError(Exception):
    """An error the gateway answers with its code's status and message.

    ``detail`` is for the integrator (what exactly was wrong); ``errors`` lists field errors
    for VALIDATION_FAILED. Neither may contain personal data or echo the rejected input.
    """

    def __init__(
        self,
        code: ErrorCode,
        detail: str | None = None,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        assert code in ERRORS
        super().__init__(f"{code}: {detail}" if detail else str(code))
        self.code = code
        self.detail = detail
        self.errors = errors
        self.headers = dict(headers or {})


def codes_of(*errors: type[BaseException]) -> tuple[ErrorCode, ...]:
    """The registered codes of ``errors`` and of every subclass of them (imported so far), in
    the order the classes were defined: what a route answers when its use case raises these.

    A route names the domain errors its handler raises (``codes_of(InvalidClaim)``), so a new
    subclass with a registered code reaches each route that can answer it with no edit of the
    route. A class whose code is not registered (a base such as ``HUB_ERROR``) adds nothing.
    """
    found: list[ErrorCode] = []
    for error in errors:
        for cls in (error, *_subclasses(error)):
            code = cls.__dict__.get("code")
            if isinstance(code, str) and code in ERRORS:
                found.append(ErrorCode(code))
    return tuple(dict.fromkeys(found))


def _subclasses(cls: type[BaseException]) -> list[type[BaseException]]:
    return [
        descendant for child in cls.__subclasses__() for descendant in (child, *_subclasses(child))
    ]


def codes_named(prefix: str) -> tuple[ErrorCode, ...]:
    """The gateway's own codes of one family, named by their common prefix (``CARD_SESSION_``,
    ``CHALLENGE_``, ``OPS_``): a route that answers the family answers a new member too."""
    found = tuple(code for code in ErrorCode if code.startswith(prefix))
    assert found, prefix
    return found


def domain_error_code(exc: BaseException) -> str | None:
    """The registered code of a domain error (any exception with a ``.code`` in ERRORS).

    Library exceptions that happen to have a ``code`` attribute (SQLAlchemy's are short
    strings like "gkpj") are not in the table, so they stay unexpected errors.
    """
    code = getattr(exc, "code", None)
    if isinstance(code, str) and code in ERRORS:
        return code
    return None


def problem_body(
    code: str,
    *,
    request_id: str,
    detail: str | None = None,
    errors: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The RFC 9457 body for ``code``; ``code`` must be in ERRORS."""
    spec = ERRORS[code]
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_PREFIX + code,
        "title": spec.title,
        "status": spec.status,
        "detail": detail or spec.title,
        "instance": f"urn:request:{request_id}",
        "code": code,
        "message": spec.message,
        "message_zh": spec.message_zh,
        "request_id": request_id,
    }
    if errors is not None:
        body["errors"] = errors
    return body
