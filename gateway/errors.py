"""Error codes, their one HTTP status and their clerk-facing message, in one table.

Every error the gateway answers is an RFC 9457 ``application/problem+json`` body::

    {"type": "urn:ssc-gateway:problem:TERMINAL_DISABLED", "title": "Terminal disabled",
     "status": 401, "detail": "...", "code": "TERMINAL_DISABLED",
     "message": "This terminal has been disabled. ...", "message_zh": "本终端已停用。...",
     "request_id": "…", "instance": "urn:request:…"}

``code`` is stable: clients branch on it, never on ``message``. ``message``/``message_zh`` say
what the person at the counter can do about it. ``detail`` says what exactly was wrong, for the
integrator's log; it never carries personal data or the rejected input.

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
    "domain_error_code",
    "problem_body",
]

PROBLEM_CONTENT_TYPE: Final = "application/problem+json"
PROBLEM_TYPE_PREFIX: Final = "urn:ssc-gateway:problem:"
# Sent with every 401 (RFC 9110 §11.6.1 requires a challenge).
WWW_AUTHENTICATE: Final = 'HMAC-SM3 realm="ssc-gateway"'


class ErrorCode(StrEnum):
    # request shape
    BODY_TOO_LARGE = "BODY_TOO_LARGE"
    MALFORMED_JSON = "MALFORMED_JSON"
    VALIDATION_FAILED = "VALIDATION_FAILED"
    UNSUPPORTED_MEDIA_TYPE = "UNSUPPORTED_MEDIA_TYPE"
    BAD_REQUEST = "BAD_REQUEST"
    NOT_FOUND = "NOT_FOUND"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    # terminal authentication
    SIGNATURE_MISSING = "SIGNATURE_MISSING"
    SIGNATURE_INVALID = "SIGNATURE_INVALID"
    TERMINAL_UNKNOWN = "TERMINAL_UNKNOWN"
    TERMINAL_DISABLED = "TERMINAL_DISABLED"
    TIMESTAMP_SKEW = "TIMESTAMP_SKEW"
    REQUEST_REPLAYED = "REQUEST_REPLAYED"
    # capacity
    RATE_LIMITED = "RATE_LIMITED"
    OVERLOADED = "OVERLOADED"
    DB_UNAVAILABLE = "DB_UNAVAILABLE"
    # the gateway's fault
    INTERNAL = "INTERNAL"
    # card authentication (gateway.card_auth): the challenge
    CHALLENGE_UNKNOWN = "CHALLENGE_UNKNOWN"
    CHALLENGE_EXPIRED = "CHALLENGE_EXPIRED"
    CHALLENGE_REUSED = "CHALLENGE_REUSED"
    CHALLENGE_MISMATCH = "CHALLENGE_MISMATCH"
    TERMINAL_ID_TOO_LONG = "TERMINAL_ID_TOO_LONG"
    # the card certificate (codes of sscard.certs, plus the gateway's own)
    CERT_MALFORMED = "CERT_MALFORMED"
    CERT_INVALID = "CERT_INVALID"
    CERT_EXPIRED = "CERT_EXPIRED"
    CERT_NOT_YET_VALID = "CERT_NOT_YET_VALID"
    CERT_CHAIN_INVALID = "CERT_CHAIN_INVALID"
    CERT_SIGNATURE_INVALID = "CERT_SIGNATURE_INVALID"
    CERT_NOT_CA = "CERT_NOT_CA"
    CERT_PATH_LEN = "CERT_PATH_LEN"
    CERT_KEY_USAGE = "CERT_KEY_USAGE"
    CERT_CRITICAL_EXTENSION = "CERT_CRITICAL_EXTENSION"
    CERT_UNKNOWN = "CERT_UNKNOWN"
    CERT_CARD_MISMATCH = "CERT_CARD_MISMATCH"
    CERT_NOT_CURRENT = "CERT_NOT_CURRENT"
    # the registry (codes of issuance.errors)
    CARD_UNKNOWN = "CARD_UNKNOWN"
    CARD_LOST = "CARD_LOST"
    CARD_SUPERSEDED = "CARD_SUPERSEDED"
    CARD_REVOKED = "CARD_REVOKED"
    CARD_EXPIRED = "CARD_EXPIRED"
    CARD_NOT_ACTIVATED = "CARD_NOT_ACTIVATED"
    LEGACY_PERIOD_OVER = "LEGACY_PERIOD_OVER"
    CARD_GENERATION_MISMATCH = "CARD_GENERATION_MISMATCH"
    # the card's own proof
    CARD_SIGNATURE_INVALID = "CARD_SIGNATURE_INVALID"
    CRYPTOGRAM_INVALID = "CRYPTOGRAM_INVALID"
    # card sessions (used by the settlement routes)
    CARD_SESSION_INVALID = "CARD_SESSION_INVALID"
    CARD_SESSION_EXPIRED = "CARD_SESSION_EXPIRED"
    CARD_SESSION_WRONG_TERMINAL = "CARD_SESSION_WRONG_TERMINAL"
    CARD_AUTH_UNAVAILABLE = "CARD_AUTH_UNAVAILABLE"


@dataclass(frozen=True, slots=True)
class ErrorSpec:
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

# THE table. A code's status never changes once published; add codes, do not repurpose them.
ERRORS: Final[Mapping[str, ErrorSpec]] = MappingProxyType(
    {
        ErrorCode.BODY_TOO_LARGE: ErrorSpec(
            413,
            "Request body too large",
            f"The request is larger than the gateway accepts. {_CALL_IT}",
            f"请求数据过大。{_CALL_IT_ZH}",
        ),
        ErrorCode.MALFORMED_JSON: ErrorSpec(
            400,
            "Malformed JSON",
            f"The terminal sent a request the gateway could not read. {_CALL_IT}",
            f"终端发送的请求无法解析。{_CALL_IT_ZH}",
        ),
        ErrorCode.VALIDATION_FAILED: ErrorSpec(
            422,
            "Request validation failed",
            f"Some fields of the request are missing or wrong. {_CALL_IT}",
            f"请求中有字段缺失或不正确。{_CALL_IT_ZH}",
        ),
        ErrorCode.UNSUPPORTED_MEDIA_TYPE: ErrorSpec(
            415,
            "Unsupported media type",
            f"The request must be JSON (application/json, UTF-8). {_CALL_IT}",
            f"请求必须为 JSON 格式（application/json，UTF-8）。{_CALL_IT_ZH}",
        ),
        ErrorCode.BAD_REQUEST: ErrorSpec(
            400,
            "Bad request",
            f"The gateway could not understand the request. {_CALL_IT}",
            f"网关无法理解该请求。{_CALL_IT_ZH}",
        ),
        ErrorCode.NOT_FOUND: ErrorSpec(
            404,
            "Not found",
            f"The terminal called an address the gateway does not have. {_CALL_IT}",
            f"终端访问的地址不存在。{_CALL_IT_ZH}",
        ),
        ErrorCode.METHOD_NOT_ALLOWED: ErrorSpec(
            405,
            "Method not allowed",
            f"The terminal used the wrong kind of request for this address. {_CALL_IT}",
            f"终端对该地址使用了错误的请求方式。{_CALL_IT_ZH}",
        ),
        ErrorCode.SIGNATURE_MISSING: ErrorSpec(
            401,
            "Request not signed",
            "The request carries no terminal signature. Check that the terminal is set up "
            "with its terminal id and secret.",
            "请求未携带终端签名。请检查终端是否已配置终端编号和密钥。",
            headers=_AUTH_HEADERS,
        ),
        ErrorCode.SIGNATURE_INVALID: ErrorSpec(
            401,
            "Signature invalid",
            "The terminal's signature is wrong. Check that the terminal's secret matches the one "
            "registered with the gateway.",
            "终端签名错误。请检查终端密钥是否与网关登记的一致。",
            headers=_AUTH_HEADERS,
        ),
        ErrorCode.TERMINAL_UNKNOWN: ErrorSpec(
            401,
            "Terminal unknown",
            "This terminal is not registered with the gateway. Ask the healthcare security "
            "office to register its terminal id.",
            "本终端未在网关登记。请联系医保经办机构登记终端编号。",
            headers=_AUTH_HEADERS,
        ),
        ErrorCode.TERMINAL_DISABLED: ErrorSpec(
            401,
            "Terminal disabled",
            "This terminal has been disabled. Use another terminal, or ask the healthcare "
            "security office to enable it again.",
            "本终端已停用。请使用其他终端，或联系医保经办机构重新启用。",
            headers=_AUTH_HEADERS,
        ),
        ErrorCode.TIMESTAMP_SKEW: ErrorSpec(
            401,
            "Clock out of sync",
            "The terminal's clock is wrong. Set the computer's date and time (use network "
            "time), then try again.",
            "终端时钟不准。请校准电脑的日期和时间（建议开启网络对时）后重试。",
            headers=_AUTH_HEADERS,
        ),
        ErrorCode.REQUEST_REPLAYED: ErrorSpec(
            401,
            "Request replayed",
            "This request was already received once and was not processed again. Start the "
            "operation again from the terminal.",
            "该请求已收到过，未重复处理。请在终端上重新发起操作。",
            headers=_AUTH_HEADERS,
        ),
        ErrorCode.RATE_LIMITED: ErrorSpec(
            429,
            "Too many requests",
            "This terminal is sending requests too fast. Wait a moment and try again.",
            "本终端请求过于频繁。请稍候再试。",
            retry_after_s=1,
        ),
        ErrorCode.OVERLOADED: ErrorSpec(
            503,
            "Gateway busy",
            "The gateway is busy. Wait a few seconds and try again.",
            "网关繁忙。请稍候几秒再试。",
            retry_after_s=2,
        ),
        ErrorCode.DB_UNAVAILABLE: ErrorSpec(
            503,
            "Storage unavailable",
            "The gateway cannot reach its database. Wait a minute and try again; if it "
            "persists, call the gateway operator.",
            "网关暂时无法访问数据库。请稍候一分钟再试；如持续出现，请联系网关运维。",
            retry_after_s=5,
        ),
        ErrorCode.INTERNAL: ErrorSpec(
            500,
            "Internal error",
            "The gateway hit an unexpected error. Try again; if it persists, call the gateway "
            "operator and quote the request id.",
            "网关发生意外错误。请重试；如持续出现，请联系网关运维并提供请求编号。",
        ),
        ErrorCode.CHALLENGE_UNKNOWN: ErrorSpec(
            404,
            "Card challenge unknown",
            f"The gateway has no record of this card reading. {_READ_AGAIN}",
            f"网关没有本次读卡的记录。{_READ_AGAIN_ZH}",
        ),
        ErrorCode.CHALLENGE_EXPIRED: ErrorSpec(
            410,
            "Card challenge expired",
            f"The card took too long to answer. {_READ_AGAIN}",
            f"读卡超时。{_READ_AGAIN_ZH}",
        ),
        ErrorCode.CHALLENGE_REUSED: ErrorSpec(
            409,
            "Card challenge already used",
            f"This card reading was already used once. {_READ_AGAIN}",
            f"本次读卡结果已使用过。{_READ_AGAIN_ZH}",
        ),
        ErrorCode.CHALLENGE_MISMATCH: ErrorSpec(
            403,
            "Card challenge mismatch",
            f"The card answer does not belong to this terminal or this card. {_READ_AGAIN} "
            f"{_CALL_IT}",
            f"读卡结果与本终端或本卡不符。{_READ_AGAIN_ZH}{_CALL_IT_ZH}",
        ),
        ErrorCode.TERMINAL_ID_TOO_LONG: ErrorSpec(
            422,
            "Terminal id too long for card authentication",
            "This terminal's id is longer than 32 characters, which the card cannot sign. Ask "
            f"the healthcare security office for a shorter terminal id. {_CALL_IT}",
            "终端编号超过 32 个字符，社保卡无法签名。"
            f"请联系医保经办机构更换较短的终端编号。{_CALL_IT_ZH}",
        ),
        ErrorCode.CERT_MALFORMED: ErrorSpec(
            401,
            "Card certificate malformed",
            f"The card's certificate could not be read. {_NOT_GENUINE}",
            f"无法读取该卡的证书。{_NOT_GENUINE_ZH}",
            headers=_CARD_AUTH_HEADERS,
        ),
        ErrorCode.CERT_INVALID: ErrorSpec(
            401,
            "Card certificate invalid",
            _NOT_GENUINE,
            _NOT_GENUINE_ZH,
            headers=_CARD_AUTH_HEADERS,
        ),
        ErrorCode.CERT_EXPIRED: ErrorSpec(
            401,
            "Card certificate expired",
            "The card's certificate has expired: the card can no longer be used. The holder "
            "needs a new card (962222).",
            "该卡证书已过期，卡片不能再使用。请持卡人换领新卡（962222）。",
            headers=_CARD_AUTH_HEADERS,
        ),
        ErrorCode.CERT_NOT_YET_VALID: ErrorSpec(
            401,
            "Card certificate not yet valid",
            "The card's certificate is not valid yet. Check the terminal's date and time; if "
            "they are right, ask the holder to contact 962222.",
            "该卡证书尚未生效。请检查终端日期时间；如无误，请持卡人致电 962222。",
            headers=_CARD_AUTH_HEADERS,
        ),
        ErrorCode.CERT_CHAIN_INVALID: ErrorSpec(
            401,
            "Card certificate not from a trusted issuer",
            "The card's certificate was not issued by the Shanghai social security card "
            f"authority. {_NOT_GENUINE}",
            f"该卡证书不是上海社保卡发卡机构签发的。{_NOT_GENUINE_ZH}",
            headers=_CARD_AUTH_HEADERS,
        ),
        ErrorCode.CERT_SIGNATURE_INVALID: ErrorSpec(
            401,
            "Card certificate signature invalid",
            f"The card's certificate has been altered. {_NOT_GENUINE}",
            f"该卡证书已被篡改。{_NOT_GENUINE_ZH}",
            headers=_CARD_AUTH_HEADERS,
        ),
        ErrorCode.CERT_NOT_CA: ErrorSpec(
            401,
            "Card certificate chain invalid",
            _NOT_GENUINE,
            _NOT_GENUINE_ZH,
            headers=_CARD_AUTH_HEADERS,
        ),
        ErrorCode.CERT_PATH_LEN: ErrorSpec(
            401,
            "Card certificate chain invalid",
            _NOT_GENUINE,
            _NOT_GENUINE_ZH,
            headers=_CARD_AUTH_HEADERS,
        ),
        ErrorCode.CERT_KEY_USAGE: ErrorSpec(
            401,
            "Card certificate chain invalid",
            _NOT_GENUINE,
            _NOT_GENUINE_ZH,
            headers=_CARD_AUTH_HEADERS,
        ),
        ErrorCode.CERT_CRITICAL_EXTENSION: ErrorSpec(
            401,
            "Card certificate chain invalid",
            _NOT_GENUINE,
            _NOT_GENUINE_ZH,
            headers=_CARD_AUTH_HEADERS,
        ),
        ErrorCode.CERT_UNKNOWN: ErrorSpec(
            422,
            "Card certificate not known yet",
            "The gateway has not seen this card's certificate yet. The terminal should read the "
            "card again and send the whole certificate; if this keeps happening, ask your IT "
            "support to check the terminal software.",
            "网关尚未登记该卡证书。终端应重新读卡并上送完整证书；如反复出现，请联系信息科检查终端软件。",
        ),
        ErrorCode.CERT_CARD_MISMATCH: ErrorSpec(
            401,
            "Card certificate belongs to another card",
            f"The certificate the card presented belongs to a different card. {_NOT_GENUINE}",
            f"该卡出示的证书属于另一张卡。{_NOT_GENUINE_ZH}",
            headers=_CARD_AUTH_HEADERS,
        ),
        ErrorCode.CERT_NOT_CURRENT: ErrorSpec(
            403,
            "Card certificate replaced",
            "This card's certificate has been replaced; the card may have been reissued. Ask the "
            "holder for their current card.",
            "该卡证书已被更换，卡片可能已补换。请持卡人出示现用的社保卡。",
        ),
        ErrorCode.CARD_UNKNOWN: ErrorSpec(
            403,
            "Card not registered",
            "This card is not in the social security card registry. Ask the holder for their "
            "current social security card.",
            "社保卡管理系统中没有该卡。请持卡人出示现用的社保卡。",
        ),
        ErrorCode.CARD_LOST: ErrorSpec(
            403,
            "Card reported lost",
            "This card was reported lost and is blocked. Do not accept it. The holder can get a "
            "replacement at a community service centre or a service bank (962222).",
            "该卡已挂失，不能使用，请勿受理。持卡人可到社区事务受理服务中心或服务银行补卡（962222）。",
        ),
        ErrorCode.CARD_SUPERSEDED: ErrorSpec(
            403,
            "Old card replaced by a new card",
            "This old card was voided when the holder activated a new social security card. "
            "Please use the new card.",
            "持卡人已启用新社保卡，该旧卡已失效。请使用新卡。",
        ),
        ErrorCode.CARD_REVOKED: ErrorSpec(
            403,
            "Card replaced",
            "This card was replaced and is no longer valid. Please use the replacement card.",
            "该卡已补换，不再有效。请使用补换后的新卡。",
        ),
        ErrorCode.CARD_EXPIRED: ErrorSpec(
            403,
            "Card expired",
            "This card has expired. The holder needs a new card (962222).",
            "该卡已过有效期。请持卡人换领新卡（962222）。",
        ),
        ErrorCode.CARD_NOT_ACTIVATED: ErrorSpec(
            403,
            "Card not activated",
            "This new card has not been activated yet. The holder can activate it at a service "
            "bank, or use the old card for now.",
            "该新卡尚未启用。持卡人可到服务银行启用，或暂时使用旧卡。",
        ),
        ErrorCode.LEGACY_PERIOD_OVER: ErrorSpec(
            403,
            "Old cards no longer accepted",
            "Old (second-generation) cards are no longer accepted. The holder needs the new "
            "social security card.",
            "第二代社保卡已停止受理。请持卡人使用第三代社保卡。",
        ),
        ErrorCode.CARD_GENERATION_MISMATCH: ErrorSpec(
            422,
            "Card generation mismatch",
            f"The terminal treated a new card as an old one or the reverse. {_READ_AGAIN} "
            f"{_CALL_IT}",
            f"终端把新卡当成旧卡或把旧卡当成新卡处理。{_READ_AGAIN_ZH}{_CALL_IT_ZH}",
        ),
        ErrorCode.CARD_SIGNATURE_INVALID: ErrorSpec(
            401,
            "Card signature invalid",
            _NOT_GENUINE,
            _NOT_GENUINE_ZH,
            headers=_CARD_AUTH_HEADERS,
        ),
        ErrorCode.CRYPTOGRAM_INVALID: ErrorSpec(
            401,
            "Card cryptogram invalid",
            _NOT_GENUINE,
            _NOT_GENUINE_ZH,
            headers=_CARD_AUTH_HEADERS,
        ),
        ErrorCode.CARD_SESSION_INVALID: ErrorSpec(
            401,
            "Card session invalid",
            f"The card has to be read again before this step. {_READ_AGAIN}",
            f"此步骤前需重新读卡。{_READ_AGAIN_ZH}",
            headers=_CARD_AUTH_HEADERS,
        ),
        ErrorCode.CARD_SESSION_EXPIRED: ErrorSpec(
            401,
            "Card session expired",
            f"Too much time has passed since the card was read. {_READ_AGAIN}",
            f"距上次读卡时间过长。{_READ_AGAIN_ZH}",
            headers=_CARD_AUTH_HEADERS,
        ),
        ErrorCode.CARD_SESSION_WRONG_TERMINAL: ErrorSpec(
            403,
            "Card session of another terminal",
            "The card was read at a different terminal. Read the card at this terminal.",
            "该卡是在其他终端读取的。请在本终端重新读卡。",
        ),
        ErrorCode.CARD_AUTH_UNAVAILABLE: ErrorSpec(
            503,
            "Card authentication unavailable",
            "The gateway cannot check cards right now (it is not configured for it). Call the "
            "gateway operator.",
            "网关暂时无法验卡（未完成配置）。请联系网关运维。",
            retry_after_s=60,
        ),
    }
)


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
