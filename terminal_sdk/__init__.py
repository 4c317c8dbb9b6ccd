r"""terminal_sdk: what HIS and POS integrators install to use the social security card.

Read a card in a few lines::

    from terminal_sdk import PcscReader, SocialSecurityCard

    with PcscReader() as reader:
        reader.wait_for_card(timeout_s=30)
        card = SocialSecurityCard.connect(reader)
        info = card.read_basic_info(terminal_no="000000000001", device_no="POS-01")
        his_string = info.to_ireadcardbas()      # "310000|...|" as iReadCardBas gives it
        card.verify_pin(pin_from_pinpad)         # WrongPin(.tries_left) / PinBlocked
        certificate = card.read_certificate()    # third generation: EF 0018, DER
        signature = card.internal_authenticate(challenge, terminal_id)

Settle a visit with the gateway (async; :class:`SyncGatewayClient` has the same calls for
code that is not async)::

    async with GatewayClient(url, terminal_id, secret) as client:
        visit = await outpatient_visit(client, card, lines, pin=pin)   # auth → ... → settle
        print(visit.receipt.format(chinese=True))                      # yuan, Chinese labels

The client signs every request, retries only where that is safe, keeps one Idempotency-Key
per operation across retries, and raises :class:`GatewayProblem` subclasses named after the
gateway's codes (docs/integration-guide.md).

Everything raises :class:`TerminalError` subclasses, whose ``str()`` a clerk can act on
(``message_zh`` in Chinese); the gateway's refusals are GatewayProblem subclasses. The SDK
talks to the gateway over HTTP only (DESIGN §3): it imports nothing of ``gateway``,
``settlement`` or ``issuance``.
"""

from terminal_sdk.card import BasicInfo, CardGeneration, SocialSecurityCard
from terminal_sdk.card_auth import CardAuthProof, challenge_request, prove
from terminal_sdk.client import (
    CardSession,
    Challenge,
    Claim,
    Eligibility,
    FeeLine,
    GatewayClient,
    GatewayResponse,
    PendingOperation,
    RetryPolicy,
    new_idempotency_key,
)
from terminal_sdk.errors import (
    CardDataInvalid,
    CardError,
    CardLocked,
    CardRefused,
    CardRemoved,
    NoCard,
    NoReader,
    PinBlocked,
    ReaderBusy,
    ReaderError,
    TerminalError,
    TransmitFailed,
    UnsupportedCard,
    WrongPin,
)
from terminal_sdk.flows import (
    VisitOutcome,
    inpatient_admission,
    inpatient_discharge,
    outpatient_visit,
    pharmacy_purchase,
    recover_settlement,
)
from terminal_sdk.problems import (
    AnswerLost,
    ApplicationRefused,
    CardAuthFailed,
    CardNotAccepted,
    CardNotGenuine,
    CardSessionInvalid,
    CertificateUnknown,
    ChallengeFailed,
    FilingRequired,
    GatewayBusy,
    GatewayInternalError,
    GatewayProblem,
    GatewayUnreachable,
    HubOutcomeUnknown,
    HubRefused,
    HubUnavailable,
    IdempotencyConflict,
    IdempotencyKeyInUse,
    IdempotencyKeyReused,
    IllegalTransition,
    IntegrationError,
    IssuanceRecordNotFound,
    IssuanceRefused,
    NotPermitted,
    OutcomeUnknown,
    RequestInvalid,
    RequestRefused,
    RouteUnavailable,
    ServiceNotConfigured,
    SettlementAlreadyCancelled,
    SettlementNotFound,
    SettlementRejected,
    TerminalRejected,
    UploadInvalid,
)
from terminal_sdk.readers import (
    ApduTrace,
    ApduTransport,
    CardInfo,
    CardInterface,
    EventKind,
    EventStream,
    MemoryReader,
    PcscReader,
    Reader,
    ReaderEvent,
    ReaderInfo,
)
from terminal_sdk.receipt import FundPayment, Receipt, yuan
from terminal_sdk.sync_client import SyncGatewayClient

__all__ = [
    "AnswerLost",
    "ApduTrace",
    "ApduTransport",
    "ApplicationRefused",
    "BasicInfo",
    "CardAuthFailed",
    "CardAuthProof",
    "CardDataInvalid",
    "CardError",
    "CardGeneration",
    "CardInfo",
    "CardInterface",
    "CardLocked",
    "CardNotAccepted",
    "CardNotGenuine",
    "CardRefused",
    "CardRemoved",
    "CardSession",
    "CardSessionInvalid",
    "CertificateUnknown",
    "Challenge",
    "ChallengeFailed",
    "Claim",
    "Eligibility",
    "EventKind",
    "EventStream",
    "FeeLine",
    "FilingRequired",
    "FundPayment",
    "GatewayBusy",
    "GatewayClient",
    "GatewayInternalError",
    "GatewayProblem",
    "GatewayResponse",
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
    "MemoryReader",
    "NoCard",
    "NoReader",
    "NotPermitted",
    "OutcomeUnknown",
    "PcscReader",
    "PendingOperation",
    "PinBlocked",
    "Reader",
    "ReaderBusy",
    "ReaderError",
    "ReaderEvent",
    "ReaderInfo",
    "Receipt",
    "RequestInvalid",
    "RequestRefused",
    "RetryPolicy",
    "RouteUnavailable",
    "ServiceNotConfigured",
    "SettlementAlreadyCancelled",
    "SettlementNotFound",
    "SettlementRejected",
    "SocialSecurityCard",
    "SyncGatewayClient",
    "TerminalError",
    "TerminalRejected",
    "TransmitFailed",
    "UnsupportedCard",
    "UploadInvalid",
    "VisitOutcome",
    "WrongPin",
    "challenge_request",
    "inpatient_admission",
    "inpatient_discharge",
    "new_idempotency_key",
    "outpatient_visit",
    "pharmacy_purchase",
    "prove",
    "recover_settlement",
    "yuan",
]
