"""Errors raised by the settlement package.

Every error carries a stable ``.code`` (the gateway maps each code to one HTTP status and one
message a pharmacy clerk can act on) and a readable ``.message``. Bad input raises before any
arithmetic, so a rejected claim changes nothing.

::

    SettlementError (Exception)          .code is stable; never rename a code
     ├── InvalidClaim                    INVALID_CLAIM          the claim cannot be settled as sent
     │    ├── InvalidAmount              INVALID_AMOUNT         amount or quantity not a positive
     │    │                                                     integer (fen), or above its bound
     │    ├── UnknownCatalogueCode       UNKNOWN_CATALOGUE_CODE item code not in the catalogue
     │    ├── TooManyLines               TOO_MANY_LINES         more claim lines than the bound
     │    ├── ClaimEmpty                 CLAIM_EMPTY            no lines, or every line priced 0:
     │    │                                                     nothing to settle
     │    ├── ClaimAboveCounterLimit     CLAIM_ABOVE_COUNTER_LIMIT the total is above what the
     │    │                                                     policy lets a counter settle for
     │    │                                                     this visit type: manual review
     │    ├── InvalidVisit               INVALID_VISIT          unknown visit type or hospital level
     │    ├── InvalidPerson              INVALID_PERSON         no age / birth date, born after
     │    │                                                     the visit, unsupported 险种
     │    ├── InvalidAccumulators        INVALID_ACCUMULATORS   negative year-to-date totals or
     │    │                                                     account balances
     │    ├── VisitTypeNotAllowed        VISIT_TYPE_NOT_ALLOWED this institution does not settle
     │    │                                                     this visit type (or no estimate
     │    │                                                     for a person insured elsewhere)
     │    ├── AdmissionNotFound          ADMISSION_NOT_FOUND    no such admission here
     │    ├── AdmissionClosed            ADMISSION_CLOSED       the stay was already settled
     │    └── AdmissionOtherPerson       ADMISSION_OTHER_PERSON the card's holder is not the
     │                                                          admission's patient
     ├── PolicyError                     POLICY_ERROR
     │    ├── PolicyNotFound             POLICY_NOT_FOUND       no policy file covers the date
     │    ├── PolicyNotApplicable        POLICY_NOT_APPLICABLE  the policy given does not cover
     │    │                                                     the visit date
     │    ├── PolicyInvalid              POLICY_INVALID         a policy file fails validation
     │    └── PolicyOverlap              POLICY_OVERLAP         two policy files cover one date
     ├── CatalogueInvalid                CATALOGUE_INVALID      a catalogue file fails validation
     ├── PersonNotFound                  PERSON_NOT_FOUND       no insured person (or no account)
     │                                                          with this psn_no
     ├── StatementInvalid                STATEMENT_INVALID      a reconciliation statement
     │    │                                                     that cannot be compared
     │    ├── StatementDateOutOfWindow   STATEMENT_DATE_OUT_OF_WINDOW in the future, or more
     │    │                                                     than a year back
     │    └── StatementFiguresInconsistent STATEMENT_FIGURES_INCONSISTENT total ≠ fund +
     │                                                          account + cash
     ├── SettlementNotFound              SETTLEMENT_NOT_FOUND   no settlement with this setl_id
     ├── SettlementAlreadyCancelled      SETTLEMENT_ALREADY_CANCELLED
     ├── IdempotencyError                IDEMPOTENCY_ERROR      (DOMAIN §7)
     │    ├── IdempotencyKeyInUse        IDEMPOTENCY_KEY_IN_USE the first request with this key
     │    │                                                     is still running (→ 409)
     │    └── IdempotencyKeyReused       IDEMPOTENCY_KEY_REUSED same key, different request
     │                                                          (→ 422)
     ├── LedgerUnbalanced                LEDGER_UNBALANCED      a ledger transaction does not sum
     │                                                          to zero (a bug, never user input)
     ├── RolloverNotDue                  ROLLOVER_NOT_DUE       a year-end roll-over asked for a
     │                                                          year that has not ended (Beijing)
     └── HubError                        HUB_ERROR              through the national hub (a missing
          │                                                     filing is crossprov.filings'
          │                                                     FilingRequired)
          ├── HubUnavailable             HUB_UNAVAILABLE        nothing reached the hub (retry;
          │                                                     .retry_after_s)
          ├── HubOutcomeUnknown          HUB_OUTCOME_UNKNOWN    not confirmed; being reversed
          └── HubRefused                 HUB_REFUSED            the insured place said no
"""

from __future__ import annotations


class SettlementError(Exception):
    code = "SETTLEMENT_ERROR"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidClaim(SettlementError):
    code = "INVALID_CLAIM"


class InvalidAmount(InvalidClaim):
    code = "INVALID_AMOUNT"


class UnknownCatalogueCode(InvalidClaim):
    code = "UNKNOWN_CATALOGUE_CODE"


class TooManyLines(InvalidClaim):
    code = "TOO_MANY_LINES"


class StatementInvalid(SettlementError):
    """A reconciliation statement (3201/3202) the gateway will not compare: nothing stored."""

    code = "STATEMENT_INVALID"


class StatementDateOutOfWindow(StatementInvalid):
    code = "STATEMENT_DATE_OUT_OF_WINDOW"


class StatementFiguresInconsistent(StatementInvalid):
    code = "STATEMENT_FIGURES_INCONSISTENT"


class ClaimEmpty(InvalidClaim):
    """Nothing to settle: no lines, or every line priced at 0. A settlement of 0 would post
    an empty ledger transaction and count a visit that cost nothing."""

    code = "CLAIM_EMPTY"


class ClaimAboveCounterLimit(InvalidClaim):
    """The claim's total is above the policy's counter limit for its visit type: it is not
    settled at the counter but sent to the insurance office's manual review (人工审核)."""

    code = "CLAIM_ABOVE_COUNTER_LIMIT"

    def __init__(self, message: str, *, total_fen: int, limit_fen: int) -> None:
        super().__init__(message)
        self.total_fen = total_fen
        self.limit_fen = limit_fen


class InvalidVisit(InvalidClaim):
    code = "INVALID_VISIT"


class InvalidPerson(InvalidClaim):
    code = "INVALID_PERSON"


class InvalidAccumulators(InvalidClaim):
    code = "INVALID_ACCUMULATORS"


class VisitTypeNotAllowed(InvalidClaim):
    code = "VISIT_TYPE_NOT_ALLOWED"


class AdmissionNotFound(InvalidClaim):
    code = "ADMISSION_NOT_FOUND"


class AdmissionClosed(InvalidClaim):
    code = "ADMISSION_CLOSED"


class AdmissionOtherPerson(InvalidClaim):
    code = "ADMISSION_OTHER_PERSON"


class PolicyError(SettlementError):
    code = "POLICY_ERROR"


class PolicyNotFound(PolicyError):
    code = "POLICY_NOT_FOUND"


class PolicyNotApplicable(PolicyError):
    code = "POLICY_NOT_APPLICABLE"


class PolicyInvalid(PolicyError):
    code = "POLICY_INVALID"


class PolicyOverlap(PolicyError):
    code = "POLICY_OVERLAP"


class CatalogueInvalid(SettlementError):
    code = "CATALOGUE_INVALID"


class LedgerUnbalanced(SettlementError):
    code = "LEDGER_UNBALANCED"


class RolloverNotDue(SettlementError):
    code = "ROLLOVER_NOT_DUE"


class PersonNotFound(SettlementError):
    code = "PERSON_NOT_FOUND"


class SettlementNotFound(SettlementError):
    code = "SETTLEMENT_NOT_FOUND"


class SettlementAlreadyCancelled(SettlementError):
    code = "SETTLEMENT_ALREADY_CANCELLED"


class IdempotencyError(SettlementError):
    code = "IDEMPOTENCY_ERROR"


class IdempotencyKeyInUse(IdempotencyError):
    code = "IDEMPOTENCY_KEY_IN_USE"


class IdempotencyKeyReused(IdempotencyError):
    code = "IDEMPOTENCY_KEY_REUSED"


class HubError(SettlementError):
    """The national hub's answer, or its absence. ``retry_after_s``: when the gateway should
    ask the terminal to retry (sent as Retry-After), None when a retry cannot help."""

    code = "HUB_ERROR"

    def __init__(self, message: str, *, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class HubUnavailable(HubError):
    code = "HUB_UNAVAILABLE"


class HubOutcomeUnknown(HubError):
    code = "HUB_OUTCOME_UNKNOWN"


class HubRefused(HubError):
    code = "HUB_REFUSED"
