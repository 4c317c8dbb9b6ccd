"""What the gateway answered when it said no: typed exceptions for its problem+json codes.

The gateway answers every error as RFC 9457 ``application/problem+json`` with a stable
``code`` (gateway/errors.py holds its one table of codes, statuses and messages). The SDK
mirrors that table by *code string* (it never imports the gateway, DESIGN §3):
:data:`PROBLEM_CLASSES` maps each code to the exception class an integrator catches, and a
code this SDK version does not know yet becomes a plain :class:`GatewayProblem` that still
carries the gateway's ``code``, ``status`` and clerk-facing messages.

Hierarchy (all are :class:`terminal_sdk.errors.TerminalError`)::

    GatewayProblem                 .code .status .message(_zh) .detail .request_id
     ├── GatewayUnreachable        no HTTP answer (refused, DNS, timeout, connection cut)
     │    └── OutcomeUnknown       a keyed operation may or may not have happened; .pending
     ├── TerminalRejected          401: signature, unknown/disabled terminal, clock, replay
     ├── RequestInvalid            4xx the terminal software caused (a bug to report)
     ├── RouteUnavailable          404/405 on the route itself: the gateway lacks the feature
     ├── GatewayBusy               429/503 with Retry-After (.retry_after_s)
     │    ├── HubUnavailable       HUB_UNAVAILABLE: the national hub is unreachable; nothing
     │    │                        was charged (the client retries after Retry-After)
     │    └── HubOutcomeUnknown    HUB_OUTCOME_UNKNOWN: not confirmed, being reversed,
     │                             nothing charged; the client retries with the same key,
     │                             which settles afresh
     ├── GatewayInternalError      500
     ├── CardAuthFailed            card authentication did not succeed
     │    ├── ChallengeFailed      the challenge's own state (unknown, expired, reused, ...)
     │    ├── CertificateUnknown   CERT_UNKNOWN: send the whole certificate (the client does)
     │    ├── CardNotGenuine       certificate, signature or cryptogram did not verify
     │    └── CardNotAccepted      genuine but may not be used (lost, expired, superseded, ...)
     ├── CardSessionInvalid        the card session is invalid, expired or of another terminal
     ├── SettlementRejected        the claim cannot be settled as sent (catalogue, amounts, ...)
     │    ├── FilingRequired       FILING_REQUIRED: insured in another province, no filing
     │    └── HubRefused           HUB_REFUSED: the insured place refused (reason in .detail)
     ├── SettlementNotFound
     ├── SettlementAlreadyCancelled
     └── IdempotencyConflict       same key still running (409) or used for another body (422)
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

from terminal_sdk.errors import TerminalError

if TYPE_CHECKING:
    from terminal_sdk.client import PendingOperation

__all__ = [
    "PROBLEM_CLASSES",
    "CardAuthFailed",
    "CardNotAccepted",
    "CardNotGenuine",
    "CardSessionInvalid",
    "CertificateUnknown",
    "ChallengeFailed",
    "FilingRequired",
    "GatewayBusy",
    "GatewayInternalError",
    "GatewayProblem",
    "GatewayUnreachable",
    "HubOutcomeUnknown",
    "HubRefused",
    "HubUnavailable",
    "IdempotencyConflict",
    "OutcomeUnknown",
    "RequestInvalid",
    "RouteUnavailable",
    "SettlementAlreadyCancelled",
    "SettlementNotFound",
    "SettlementRejected",
    "TerminalRejected",
    "problem_from_response",
]


class GatewayProblem(TerminalError):
    """The gateway refused or failed a request. ``code`` is the gateway's stable code.

    ``message``/``message_zh`` are the gateway's clerk-facing texts when it sent them (they
    say what the person at the counter can do). ``detail`` is for the integrator's log;
    ``request_id`` is what the gateway operator asks for. ``status`` is None when no HTTP
    answer arrived at all.
    """

    code = "GATEWAY_PROBLEM"
    default_message = "The settlement gateway refused the request."
    default_message_zh = "结算网关拒绝了该请求。"

    def __init__(
        self,
        message: str | None = None,
        *,
        message_zh: str | None = None,
        detail: str | None = None,
        code: str | None = None,
        status: int | None = None,
        request_id: str | None = None,
        retry_after_s: float | None = None,
        field_errors: tuple[Mapping[str, Any], ...] = (),
    ) -> None:
        if code is not None:
            self.code = code
        self.status = status
        self.request_id = request_id
        self.retry_after_s = retry_after_s
        self.field_errors = field_errors
        super().__init__(message, message_zh=message_zh, detail=detail)

    def _extra(self) -> dict[str, object]:
        return {
            "code": self.code,
            "status": self.status,
            "request_id": self.request_id,
            "retry_after_s": self.retry_after_s,
            "field_errors": self.field_errors,
        }

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={self.code!r}, status={self.status}, "
            f"request_id={self.request_id!r})"
        )


class GatewayUnreachable(GatewayProblem):
    code = "GATEWAY_UNREACHABLE"
    default_message = (
        "The settlement gateway cannot be reached. Check the network connection and try again."
    )
    default_message_zh = "无法连接结算网关，请检查网络连接后重试。"


class OutcomeUnknown(GatewayUnreachable):
    """The connection failed after a keyed operation (a settlement, a cancel) was sent: it may
    have happened. Never start it again as new; :meth:`GatewayClient.resume` sends the same
    body with the same Idempotency-Key and gets the first outcome (or does it once)."""

    code = "OUTCOME_UNKNOWN"
    default_message = (
        "The connection broke while the request was being sent; it may have gone through. Do "
        "not start it again as new: retry it (the terminal resends it with the same key)."
    )
    default_message_zh = (
        "发送请求时连接中断，请求可能已成功。"
        "请勿重新发起新交易，请重试（终端将以相同编号重新发送）。"
    )

    pending: PendingOperation | None = None

    def _extra(self) -> dict[str, object]:
        return super()._extra() | {"pending": self.pending}


class TerminalRejected(GatewayProblem):
    code = "TERMINAL_REJECTED"


class RequestInvalid(GatewayProblem):
    code = "REQUEST_INVALID"


class RouteUnavailable(GatewayProblem):
    code = "ROUTE_UNAVAILABLE"
    default_message = "The settlement gateway does not offer this operation (yet)."
    default_message_zh = "结算网关暂不支持该操作。"


class GatewayBusy(GatewayProblem):
    code = "GATEWAY_BUSY"
    default_message = "The gateway is busy. Wait a few seconds and try again."
    default_message_zh = "网关繁忙。请稍候几秒再试。"


class HubUnavailable(GatewayBusy):
    """The national cross-province hub cannot be reached; nothing was charged."""

    code = "HUB_UNAVAILABLE"


class HubOutcomeUnknown(GatewayBusy):
    """The hub did not confirm the settlement; the gateway is reversing it and nothing was
    charged. Retrying with the SAME Idempotency-Key is safe: the gateway released the key, so
    the retry settles afresh (the client does this by itself while Retry-After is short)."""

    code = "HUB_OUTCOME_UNKNOWN"


class GatewayInternalError(GatewayProblem):
    code = "INTERNAL"


class CardAuthFailed(GatewayProblem):
    code = "CARD_AUTH_FAILED"
    default_message = "The card could not be authenticated. Read the card again."
    default_message_zh = "卡片认证未通过，请重新读卡。"


class ChallengeFailed(CardAuthFailed):
    code = "CHALLENGE_FAILED"


class CertificateUnknown(CardAuthFailed):
    code = "CERT_UNKNOWN"


class CardNotGenuine(CardAuthFailed):
    code = "CARD_NOT_GENUINE"


class CardNotAccepted(CardAuthFailed):
    code = "CARD_NOT_ACCEPTED"


class CardSessionInvalid(GatewayProblem):
    code = "CARD_SESSION_INVALID"
    default_message = "The card has to be read again before this step."
    default_message_zh = "此步骤前需重新读卡。"


class SettlementRejected(GatewayProblem):
    code = "SETTLEMENT_REJECTED"


class FilingRequired(SettlementRejected):
    """A patient insured in another province has no valid filing (备案) for this visit."""

    code = "FILING_REQUIRED"


class HubRefused(SettlementRejected):
    """The insured place refused the settlement through the hub; ``detail`` says why."""

    code = "HUB_REFUSED"


class SettlementNotFound(GatewayProblem):
    code = "SETTLEMENT_NOT_FOUND"


class SettlementAlreadyCancelled(GatewayProblem):
    code = "SETTLEMENT_ALREADY_CANCELLED"


class IdempotencyConflict(GatewayProblem):
    code = "IDEMPOTENCY_ERROR"


def _table(
    groups: Mapping[type[GatewayProblem], tuple[str, ...]],
) -> Mapping[str, type[GatewayProblem]]:
    table: dict[str, type[GatewayProblem]] = {}
    for cls, codes in groups.items():
        for code in codes:
            assert code not in table, code
            table[code] = cls
    return MappingProxyType(table)


#: The gateway's codes (gateway/errors.py, and the settlement codes it registers) → the class
#: raised. Grouped by what the caller does about it, not by where the gateway raised it.
PROBLEM_CLASSES: Final[Mapping[str, type[GatewayProblem]]] = _table(
    {
        RequestInvalid: (
            "BODY_TOO_LARGE",
            "MALFORMED_JSON",
            "VALIDATION_FAILED",
            "UNSUPPORTED_MEDIA_TYPE",
            "BAD_REQUEST",
            "TERMINAL_ID_TOO_LONG",
            "CARD_GENERATION_MISMATCH",
            "IDEMPOTENCY_KEY_MISSING",
        ),
        RouteUnavailable: ("NOT_FOUND", "METHOD_NOT_ALLOWED"),
        TerminalRejected: (
            "SIGNATURE_MISSING",
            "SIGNATURE_INVALID",
            "TERMINAL_UNKNOWN",
            "TERMINAL_DISABLED",
            "TIMESTAMP_SKEW",
            "REQUEST_REPLAYED",
        ),
        GatewayBusy: ("RATE_LIMITED", "OVERLOADED", "DB_UNAVAILABLE", "CARD_AUTH_UNAVAILABLE"),
        HubUnavailable: ("HUB_UNAVAILABLE",),
        HubOutcomeUnknown: ("HUB_OUTCOME_UNKNOWN",),
        FilingRequired: ("FILING_REQUIRED",),
        HubRefused: ("HUB_REFUSED",),
        GatewayInternalError: ("INTERNAL",),
        ChallengeFailed: (
            "CHALLENGE_UNKNOWN",
            "CHALLENGE_EXPIRED",
            "CHALLENGE_REUSED",
            "CHALLENGE_MISMATCH",
        ),
        CertificateUnknown: ("CERT_UNKNOWN",),
        CardNotGenuine: (
            "CERT_MALFORMED",
            "CERT_INVALID",
            "CERT_EXPIRED",
            "CERT_NOT_YET_VALID",
            "CERT_CHAIN_INVALID",
            "CERT_SIGNATURE_INVALID",
            "CERT_NOT_CA",
            "CERT_PATH_LEN",
            "CERT_KEY_USAGE",
            "CERT_CRITICAL_EXTENSION",
            "CERT_CARD_MISMATCH",
            "CARD_SIGNATURE_INVALID",
            "CRYPTOGRAM_INVALID",
        ),
        CardNotAccepted: (
            "CERT_NOT_CURRENT",
            "CARD_UNKNOWN",
            "CARD_LOST",
            "CARD_SUPERSEDED",
            "CARD_REVOKED",
            "CARD_EXPIRED",
            "CARD_NOT_ACTIVATED",
            "LEGACY_PERIOD_OVER",
        ),
        CardSessionInvalid: (
            "CARD_SESSION_INVALID",
            "CARD_SESSION_EXPIRED",
            "CARD_SESSION_WRONG_TERMINAL",
        ),
        # settlement.errors codes, as the Settlement API registers them with the gateway.
        SettlementRejected: (
            "SETTLEMENT_ERROR",
            "INVALID_CLAIM",
            "INVALID_AMOUNT",
            "UNKNOWN_CATALOGUE_CODE",
            "TOO_MANY_LINES",
            "INVALID_VISIT",
            "INVALID_PERSON",
            "INVALID_ACCUMULATORS",
            "POLICY_ERROR",
            "POLICY_NOT_FOUND",
            "POLICY_NOT_APPLICABLE",
            "PERSON_NOT_FOUND",
            "VISIT_TYPE_NOT_ALLOWED",
            "ADMISSION_NOT_FOUND",
            "ADMISSION_CLOSED",
            "ADMISSION_OTHER_PERSON",
        ),
        SettlementNotFound: ("SETTLEMENT_NOT_FOUND",),
        SettlementAlreadyCancelled: ("SETTLEMENT_ALREADY_CANCELLED",),
        IdempotencyConflict: (
            "IDEMPOTENCY_ERROR",
            "IDEMPOTENCY_KEY_IN_USE",
            "IDEMPOTENCY_KEY_REUSED",
        ),
    }
)


def _text(body: Mapping[str, Any], key: str) -> str | None:
    value = body.get(key)
    return value if isinstance(value, str) and value else None


def problem_from_response(
    status: int, body: object, *, retry_after_s: float | None = None
) -> GatewayProblem:
    """The exception for an error answer: ``body`` is the decoded problem+json, or anything
    else a proxy in between may have sent (then the code is ``HTTP_<status>``)."""
    if not isinstance(body, Mapping) or not isinstance(body.get("code"), str):
        cls: type[GatewayProblem] = GatewayBusy if status in (429, 503) else GatewayProblem
        if status >= 500 and cls is GatewayProblem:
            cls = GatewayInternalError
        return cls(
            code=f"HTTP_{status}",
            status=status,
            retry_after_s=retry_after_s,
            detail=f"HTTP {status} without a problem+json body",
        )
    code: str = body["code"]
    cls = PROBLEM_CLASSES.get(code, GatewayProblem)
    errors = body.get("errors")
    field_errors = (
        tuple(e for e in errors if isinstance(e, Mapping)) if isinstance(errors, list) else ()
    )
    return cls(
        _text(body, "message"),
        message_zh=_text(body, "message_zh"),
        detail=_text(body, "detail"),
        code=code,
        status=status,
        request_id=_text(body, "request_id"),
        retry_after_s=retry_after_s,
        field_errors=field_errors,
    )
