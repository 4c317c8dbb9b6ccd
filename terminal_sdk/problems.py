"""What the gateway answered when it said no: typed exceptions for its problem+json codes.

The gateway answers every error as RFC 9457 ``application/problem+json`` with a stable
``code`` (gateway/errors.py holds its one table of codes, statuses and messages). The SDK
mirrors that table by *code string* (it never imports the gateway, DESIGN §3):
:data:`PROBLEM_CLASSES` maps each code to the exception class an integrator catches, and a
code this SDK version does not know yet becomes a plain :class:`GatewayProblem` (or, by its
status, :class:`GatewayBusy` / :class:`GatewayInternalError`) that still carries the
gateway's ``code``, ``status`` and clerk-facing messages.

The classes below :class:`GatewayProblem` are grouped by WHO can act on the error, so that a
HIS can handle each group in one place:

* ``retryable`` (:attr:`GatewayProblem.retryable`): nobody has to change anything; the same
  request, sent again later with the same Idempotency-Key, may succeed. The client already
  retried these as far as :class:`~terminal_sdk.client.RetryPolicy` allows (honouring
  Retry-After); one that reaches you ran out of attempts or asked for a longer wait than
  ``max_retry_after_s``. Wait ``retry_after_s`` when it is set.
* :class:`RequestRefused`: the gateway understood the request and refused it for a reason at
  the counter (the card, the claim, the application, the record asked for, what this
  institution may do). Show ``str(error)`` / ``message_zh``: it says what the clerk or the
  cardholder can do. Sent again unchanged, it gets the same answer.
* :class:`IntegrationError`: the terminal software or its setup is wrong (a malformed request,
  a route the gateway lacks, the terminal's id, secret or clock, a reused key). The clerk
  cannot fix it: log ``code``, ``detail`` and ``request_id`` and call IT support.
* :class:`GatewayInternalError`: the gateway's own fault; quote ``request_id`` to its operator.

Hierarchy (all are :class:`terminal_sdk.errors.TerminalError`)::

    GatewayProblem                 .code .status .message(_zh) .detail .request_id
     │                             .retryable .retry_after_s .field_errors .extensions
     ├── GatewayUnreachable        retryable: no HTTP answer (refused, DNS, timeout, cut)
     │    ├── OutcomeUnknown       retryable: a keyed operation may or may not have happened;
     │    │                        .pending, for GatewayClient.resume (same key)
     │    └── AnswerLost           NOT retryable: a request without a key may or may not
     │                             have happened; a repeat could do it twice
     ├── GatewayBusy               retryable: 429/503 with Retry-After (.retry_after_s)
     │    ├── HubUnavailable       HUB_UNAVAILABLE: the national hub is unreachable; nothing
     │    │                        was charged (the client retries after Retry-After)
     │    ├── HubOutcomeUnknown    HUB_OUTCOME_UNKNOWN: not confirmed, being reversed,
     │    │                        nothing charged; the client retries with the same key,
     │    │                        which settles afresh
     │    └── ServiceNotConfigured the gateway cannot do this until its operator configures
     │                             it (card authentication, card production); Retry-After 60
     ├── GatewayInternalError      500: the gateway's fault
     ├── IdempotencyConflict       an Idempotency-Key clash
     │    ├── IdempotencyKeyInUse  retryable: 409, the first request with this key still runs
     │    └── IdempotencyKeyReused 422: the key was used for another request (also an
     │                             IntegrationError: a bug in the terminal's key handling)
     ├── IntegrationError          the terminal software or its setup: call IT support
     │    ├── RequestInvalid       4xx the terminal software caused (a bug to report)
     │    ├── RouteUnavailable     404/405 on the route itself: the gateway lacks the feature
     │    ├── TerminalRejected     401: signature (also the answer for an unknown or
     │    │                        disabled terminal id whose signature did not verify),
     │    │                        disabled terminal, clock, replay, the ops token
     │    └── IdempotencyKeyReused
     └── RequestRefused            refused for a reason at the counter: show the message
          ├── CardAuthFailed       card authentication did not succeed
          │    ├── ChallengeFailed     the challenge's own state (unknown, expired, reused, ...)
          │    ├── CertificateUnknown  CERT_UNKNOWN: send the whole certificate (the client does)
          │    ├── CardNotGenuine      certificate, signature or cryptogram did not verify
          │    └── CardNotAccepted     genuine but may not be used (lost, expired, superseded, ...)
          ├── CardSessionInvalid   the card session is invalid, expired or of another terminal
          ├── SettlementRejected   the claim cannot be settled as sent (catalogue, amounts, ...)
          │    ├── FilingRequired  FILING_REQUIRED: insured in another province, no filing
          │    └── HubRefused      HUB_REFUSED: the insured place refused (reason in .detail)
          ├── SettlementNotFound
          ├── SettlementAlreadyCancelled
          ├── NotPermitted         403: this institution may not do this (its issuance role,
          │                        its kind of institution, the reconciliation of others)
          └── IssuanceRefused      the card services (申领、制卡、发放、开通、挂失、补换) refused
               ├── IllegalTransition       409: not possible in the card's current state;
               │                           .current_state .event .allowed_transitions
               ├── ApplicationRefused      422: eligibility, cohort window, channel, photo,
               │                           bank, holder data, an application already open
               ├── IssuanceRecordNotFound  404: no such application, card or batch visible
               │                           to this institution
               └── UploadInvalid           422: an employer's CSV unusable as a whole
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar, Final

from terminal_sdk.errors import TerminalError
from terminal_sdk.pending import PendingOperation

__all__ = [
    "PROBLEM_CLASSES",
    "AnswerLost",
    "ApplicationRefused",
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
    "IdempotencyKeyInUse",
    "IdempotencyKeyReused",
    "IllegalTransition",
    "IntegrationError",
    "IssuanceRecordNotFound",
    "IssuanceRefused",
    "NotPermitted",
    "OutcomeUnknown",
    "RequestInvalid",
    "RequestRefused",
    "RouteUnavailable",
    "ServiceNotConfigured",
    "SettlementAlreadyCancelled",
    "SettlementNotFound",
    "SettlementRejected",
    "TerminalRejected",
    "UploadInvalid",
    "problem_from_response",
]

# The members every problem body has (gateway.errors.problem_body); the others are the
# problem's extension members (RFC 9457 §3.2), such as ILLEGAL_TRANSITION's current_state.
_STANDARD_MEMBERS: Final = frozenset(
    {
        "type",
        "title",
        "status",
        "detail",
        "instance",
        "code",
        "message",
        "message_zh",
        "request_id",
        "errors",
    }
)
_BUSY_STATUSES: Final = frozenset({429, 503})


class GatewayProblem(TerminalError):
    """The gateway refused or failed a request. ``code`` is the gateway's stable code.

    ``message``/``message_zh`` are the gateway's clerk-facing texts when it sent them (they
    say what the person at the counter can do). ``detail`` is for the integrator's log;
    ``request_id`` is what the gateway operator asks for. ``status`` is None when no HTTP
    answer arrived at all. ``retry_after_s`` is the gateway's Retry-After, when it sent one.
    ``extensions`` holds the body's other members (e.g. ILLEGAL_TRANSITION's
    ``allowed_transitions``).
    """

    code = "GATEWAY_PROBLEM"
    default_message = "The settlement gateway refused the request."
    default_message_zh = "结算网关拒绝了该请求。"
    #: True when nobody has to change anything: the same request (with the same
    #: Idempotency-Key), sent again later, may succeed. Wait ``retry_after_s`` first when set.
    retryable: ClassVar[bool] = False

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
        extensions: Mapping[str, Any] | None = None,
    ) -> None:
        if code is not None:
            self.code = code
        self.status = status
        self.request_id = request_id
        self.retry_after_s = retry_after_s
        self.field_errors = field_errors
        self.extensions: Mapping[str, Any] = dict(extensions or {})
        super().__init__(message, message_zh=message_zh, detail=detail)

    def _extra(self) -> dict[str, object]:
        return {
            "code": self.code,
            "status": self.status,
            "request_id": self.request_id,
            "retry_after_s": self.retry_after_s,
            "field_errors": self.field_errors,
            "extensions": self.extensions,
        }

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={self.code!r}, status={self.status}, "
            f"request_id={self.request_id!r})"
        )


# -- retryable: nobody has to change anything ----------------------------------------------------


class GatewayUnreachable(GatewayProblem):
    code = "GATEWAY_UNREACHABLE"
    default_message = (
        "The settlement gateway cannot be reached. Check the network connection and try again."
    )
    default_message_zh = "无法连接结算网关，请检查网络连接后重试。"
    retryable = True


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


class AnswerLost(GatewayUnreachable):
    """The connection failed after a request WITHOUT an Idempotency-Key was sent (a POST
    that is not a mere query, e.g. the card's answer to a challenge): it may have taken
    effect, and sending it again could do it twice. Not retryable as it stands: find out what
    happened (or start the step over, e.g. read the card again), then act."""

    code = "ANSWER_LOST"
    default_message = (
        "The connection broke after the request was sent; it may have gone through. Check "
        "before doing it again."
    )
    default_message_zh = "请求发出后连接中断，请求可能已成功。请先核实，再决定是否重新办理。"
    retryable = False


class GatewayBusy(GatewayProblem):
    """429/503: the gateway did no work; try again after ``retry_after_s``."""

    code = "GATEWAY_BUSY"
    default_message = "The gateway is busy. Wait a few seconds and try again."
    default_message_zh = "网关繁忙。请稍候几秒再试。"
    retryable = True


class HubUnavailable(GatewayBusy):
    """The national cross-province hub cannot be reached; nothing was charged."""

    code = "HUB_UNAVAILABLE"


class HubOutcomeUnknown(GatewayBusy):
    """The hub did not confirm the settlement; the gateway is reversing it and nothing was
    charged. Retrying with the SAME Idempotency-Key is safe: the gateway released the key, so
    the retry settles afresh (the client does this by itself while Retry-After is short)."""

    code = "HUB_OUTCOME_UNKNOWN"


class ServiceNotConfigured(GatewayBusy):
    """The gateway cannot do this until its operator configures it (no card authentication
    keys, no issuing CA key). Retryable with a long Retry-After, which the client does not
    wait for by default: tell the clerk to call the gateway operator."""

    code = "SERVICE_NOT_CONFIGURED"


class GatewayInternalError(GatewayProblem):
    """500 (or a proxy's 502/504 after the retries): quote ``request_id`` to the operator."""

    code = "INTERNAL"


class IdempotencyConflict(GatewayProblem):
    """An Idempotency-Key clash: still running (retryable) or reused for another request."""

    code = "IDEMPOTENCY_ERROR"


class IdempotencyKeyInUse(IdempotencyConflict):
    """The first request with this key is still running: send it again unchanged shortly (the
    client does, after Retry-After); it will not be done twice."""

    code = "IDEMPOTENCY_KEY_IN_USE"
    retryable = True


# -- the terminal software or its setup: IT support ----------------------------------------------


class IntegrationError(GatewayProblem):
    """The terminal software or its setup is wrong; the clerk cannot fix it at the counter.
    Log ``code``, ``detail`` (and ``field_errors``) with ``request_id`` and call IT support."""

    code = "INTEGRATION_ERROR"


class RequestInvalid(IntegrationError):
    code = "REQUEST_INVALID"


class RouteUnavailable(IntegrationError):
    code = "ROUTE_UNAVAILABLE"
    default_message = "The settlement gateway does not offer this operation (yet)."
    default_message_zh = "结算网关暂不支持该操作。"


class TerminalRejected(IntegrationError):
    code = "TERMINAL_REJECTED"


class IdempotencyKeyReused(IdempotencyConflict, IntegrationError):
    """The key was already used for a different request: a bug in the terminal's key
    handling (one key per logical operation, kept across its retries only)."""

    code = "IDEMPOTENCY_KEY_REUSED"


# -- refused for a reason at the counter: show the message ---------------------------------------


class RequestRefused(GatewayProblem):
    """The gateway understood the request and refused it; its message says what the clerk or
    the cardholder can do. Sent again unchanged, it gets the same answer."""

    code = "REQUEST_REFUSED"


class CardAuthFailed(RequestRefused):
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


class CardSessionInvalid(RequestRefused):
    code = "CARD_SESSION_INVALID"
    default_message = "The card has to be read again before this step."
    default_message_zh = "此步骤前需重新读卡。"


class SettlementRejected(RequestRefused):
    code = "SETTLEMENT_REJECTED"


class FilingRequired(SettlementRejected):
    """A patient insured in another province has no valid filing (备案) for this visit."""

    code = "FILING_REQUIRED"


class HubRefused(SettlementRejected):
    """The insured place refused the settlement through the hub; ``detail`` says why."""

    code = "HUB_REFUSED"


class SettlementNotFound(RequestRefused):
    code = "SETTLEMENT_NOT_FOUND"


class SettlementAlreadyCancelled(RequestRefused):
    code = "SETTLEMENT_ALREADY_CANCELLED"


class NotPermitted(RequestRefused):
    """This terminal's institution may not do this (403): the message says who can."""

    code = "NOT_PERMITTED"


class IssuanceRefused(RequestRefused):
    """The card services (application, production, delivery, activation, loss, replacement)
    refused the request."""

    code = "ISSUANCE_REFUSED"


class IllegalTransition(IssuanceRefused):
    """Not possible in the card's (or application's) current state; the gateway says which
    state that is and which steps are possible now."""

    code = "ILLEGAL_TRANSITION"

    @property
    def current_state(self) -> str | None:
        value = self.extensions.get("current_state")
        return value if isinstance(value, str) else None

    @property
    def event(self) -> str | None:
        value = self.extensions.get("event")
        return value if isinstance(value, str) else None

    @property
    def allowed_transitions(self) -> tuple[str, ...]:
        value = self.extensions.get("allowed_transitions")
        if not isinstance(value, list):
            return ()
        return tuple(item for item in value if isinstance(item, str))


class ApplicationRefused(IssuanceRefused):
    """An application for a card refused: eligibility, the cohort's window, the channel, the
    photo source, the bank rule, the holder's data, or an application already open."""

    code = "APPLICATION_REFUSED"


class IssuanceRecordNotFound(IssuanceRefused):
    """No such application, card or production batch visible to this institution."""

    code = "ISSUANCE_RECORD_NOT_FOUND"


class UploadInvalid(IssuanceRefused):
    """An employer's uploaded list is unusable as a whole (header, size, encoding)."""

    code = "UPLOAD_INVALID"


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
#: tests/terminal_sdk/test_problem_table.py fails when the gateway has a code missing here.
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
            # the ops API's enrolment (an operator's tool, not a terminal's)
            "ENROLMENT_CONFLICT",
            "ENROLMENT_NOT_FOUND",
            "ENROLMENT_INVALID",
            "CRL_REFUSED",
            "KEK_WRONG",
            # The national-interface door (gateway.fsi): the HIS software or its setup.
            "FSI_ENVELOPE_INVALID",
            "FSI_INFNO_UNSUPPORTED",
            "FSI_INSTITUTION_UNKNOWN",
            "FSI_CAINFO_INVALID",
            "FSI_DECRYPT_FAILED",
            "FSI_INF_TIME_STALE",
            "FSI_FILE_NOT_FOUND",
            "FSI_FILE_INVALID",
        ),
        RouteUnavailable: ("NOT_FOUND", "METHOD_NOT_ALLOWED"),
        TerminalRejected: (
            "SIGNATURE_MISSING",
            "SIGNATURE_INVALID",
            "TERMINAL_UNKNOWN",
            "TERMINAL_DISABLED",
            "TIMESTAMP_SKEW",
            "REQUEST_REPLAYED",
            "OPS_UNAUTHORIZED",
            "SIGNATURE_VERSION_UNSUPPORTED",
            "METRICS_UNAUTHORIZED",
        ),
        # OPS_TOO_MANY_WRONG_TOKENS: the ops token's brute-force guard (429, Retry-After 60).
        GatewayBusy: ("RATE_LIMITED", "OVERLOADED", "DB_UNAVAILABLE", "OPS_TOO_MANY_WRONG_TOKENS"),
        ServiceNotConfigured: (
            "CARD_AUTH_UNAVAILABLE",
            "ISSUING_CA_UNAVAILABLE",
            "KEK_UNAVAILABLE",
        ),
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
            "CARD_CERT_REVOKED",
            "CARD_EXPIRED",
            "CARD_NOT_ACTIVATED",
            "LEGACY_PERIOD_OVER",
        ),
        CardSessionInvalid: (
            "CARD_SESSION_INVALID",
            "CARD_SESSION_EXPIRED",
            "CARD_SESSION_WRONG_TERMINAL",
            "FSI_CARD_NOT_PRESENT",
            "FSI_CARD_MISMATCH",
        ),
        # settlement.errors codes, as the Settlement API registers them with the gateway.
        SettlementRejected: (
            "SETTLEMENT_ERROR",
            "INVALID_CLAIM",
            "INVALID_AMOUNT",
            "UNKNOWN_CATALOGUE_CODE",
            "TOO_MANY_LINES",
            "CLAIM_EMPTY",
            "CLAIM_ABOVE_COUNTER_LIMIT",
            "STATEMENT_INVALID",
            "STATEMENT_DATE_OUT_OF_WINDOW",
            "STATEMENT_FIGURES_INCONSISTENT",
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
            "FILING_NOT_FOUND",
            "FSI_CERT_TYPE_UNSUPPORTED",
            "FSI_AMOUNT_MISMATCH",
        ),
        SettlementNotFound: ("SETTLEMENT_NOT_FOUND",),
        SettlementAlreadyCancelled: ("SETTLEMENT_ALREADY_CANCELLED",),
        IdempotencyConflict: ("IDEMPOTENCY_ERROR",),
        IdempotencyKeyInUse: ("IDEMPOTENCY_KEY_IN_USE",),
        IdempotencyKeyReused: ("IDEMPOTENCY_KEY_REUSED", "FSI_MSGID_REUSED"),
        NotPermitted: (
            "ISSUANCE_FORBIDDEN",
            "INSTITUTION_KIND_NOT_ALLOWED",
            "RECONCILIATION_FORBIDDEN",
            "METRICS_FORBIDDEN",
            "OPS_FORBIDDEN",  # an ops identity whose role may not do this
        ),
        # issuance.errors' service codes (gateway.issuance_api).
        IllegalTransition: ("ILLEGAL_TRANSITION",),
        ApplicationRefused: (
            "NOT_ELIGIBLE",
            "COHORT_WINDOW_CLOSED",
            "CHANNEL_NOT_ALLOWED",
            "PHOTO_SOURCE_NOT_ALLOWED",
            "BANK_CHOICE_INVALID",
            "APPLICATION_OPEN",
            "HOLDER_MISMATCH",
        ),
        IssuanceRecordNotFound: (
            "APPLICATION_NOT_FOUND",
            "ISSUANCE_CARD_NOT_FOUND",
            "BATCH_NOT_FOUND",
        ),
        UploadInvalid: ("UPLOAD_INVALID",),
        # The national-interface door's refusals the clerk acts on: sign in again (9001), wait
        # for or restart a transaction under its msgid, cancel instead of reversing. The gateway
        # sends no Retry-After for FSI_MSGID_IN_USE, so it is not ``retryable`` here.
        RequestRefused: (
            "FSI_OPERATOR_UNKNOWN",
            "FSI_SIGN_NO_INVALID",
            "FSI_MSGID_IN_USE",
            "FSI_MSGID_REVERSED",
            "FSI_REVERSAL_REFUSED",
        ),
    }
)


def _text(body: Mapping[str, Any], key: str) -> str | None:
    value = body.get(key)
    return value if isinstance(value, str) and value else None


def _by_status(status: int) -> type[GatewayProblem]:
    """The class of a code this SDK does not know (or of an answer without one)."""
    if status in _BUSY_STATUSES:
        return GatewayBusy
    if status >= 500:
        return GatewayInternalError
    return GatewayProblem


def problem_from_response(
    status: int, body: object, *, retry_after_s: float | None = None
) -> GatewayProblem:
    """The exception for an error answer: ``body`` is the decoded problem+json, or anything
    else a proxy in between may have sent (then the code is ``HTTP_<status>``). A code this SDK
    does not know is classed by its status: 429/503 are :class:`GatewayBusy`, other 5xx
    :class:`GatewayInternalError`, anything else a plain :class:`GatewayProblem`."""
    if not isinstance(body, Mapping) or not isinstance(body.get("code"), str):
        return _by_status(status)(
            code=f"HTTP_{status}",
            status=status,
            retry_after_s=retry_after_s,
            detail=f"HTTP {status} without a problem+json body",
        )
    code: str = body["code"]
    cls = PROBLEM_CLASSES.get(code) or _by_status(status)
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
        extensions={k: v for k, v in body.items() if k not in _STANDARD_MEMBERS},
    )
