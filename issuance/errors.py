"""Errors raised by the issuance package.

::

    IssuanceError (Exception)            .code is stable; the gateway maps it to one HTTP answer
     └── CardNotUsable                   the registry refuses this card for authentication
          ├── CardUnknown        CARD_UNKNOWN       no such card_sn in the registry
          ├── CardLost           CARD_LOST          reported lost (挂失): blocked at once
          ├── CardSuperseded     CARD_SUPERSEDED    a newer card of the holder was activated
          ├── CardRevoked        CARD_REVOKED       replaced (补换) by a new card
          ├── CardExpired        CARD_EXPIRED       past its validity date
          ├── CardNotActivated   CARD_NOT_ACTIVATED produced or delivered, not yet activated (开通)
          └── LegacyPeriodOver   LEGACY_PERIOD_OVER second-generation cards are no longer accepted
"""

from __future__ import annotations


class IssuanceError(Exception):
    code = "ISSUANCE_ERROR"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class CardNotUsable(IssuanceError):
    code = "CARD_NOT_USABLE"


class CardUnknown(CardNotUsable):
    code = "CARD_UNKNOWN"


class CardLost(CardNotUsable):
    code = "CARD_LOST"


class CardSuperseded(CardNotUsable):
    code = "CARD_SUPERSEDED"


class CardRevoked(CardNotUsable):
    code = "CARD_REVOKED"


class CardExpired(CardNotUsable):
    code = "CARD_EXPIRED"


class CardNotActivated(CardNotUsable):
    code = "CARD_NOT_ACTIVATED"


class LegacyPeriodOver(CardNotUsable):
    code = "LEGACY_PERIOD_OVER"


# --- issuance services (applications, lifecycle, access) ---------------------------------------
#
#  IssuanceError
#   ├── IllegalTransition      ILLEGAL_TRANSITION       event not allowed in the current state
#   ├── ApplicationRefused     (base: the application cannot be accepted as sent)
#   │    ├── NotEligible        NOT_ELIGIBLE             neither Shanghai hukou nor insured here
#   │    ├── WindowClosed       COHORT_WINDOW_CLOSED     outside the cohort's change-over window
#   │    ├── ChannelNotAllowed  CHANNEL_NOT_ALLOWED      cohort does not apply through channel
#   │    ├── PhotoNotAllowed    PHOTO_SOURCE_NOT_ALLOWED
#   │    ├── BankChoiceInvalid  BANK_CHOICE_INVALID      the bank rule picks another bank
#   │    ├── ApplicationOpen    APPLICATION_OPEN         holder already has one in progress
#   │    └── HolderMismatch     HOLDER_MISMATCH          data differ from the registered holder
#   ├── ApplicationNotFound    APPLICATION_NOT_FOUND    (also: not visible to the caller)
#   ├── IssuedCardNotFound     ISSUANCE_CARD_NOT_FOUND  (also: not visible to the caller)
#   ├── BatchNotFound          BATCH_NOT_FOUND
#   ├── IssuanceForbidden      ISSUANCE_FORBIDDEN       the caller's role may not do this
#   ├── UploadInvalid          UPLOAD_INVALID           CSV header/size/row-count wrong as a whole
#   └── IssuingCaUnavailable   ISSUING_CA_UNAVAILABLE   no issuing CA key configured


class ServiceError(IssuanceError):
    """Base of the service errors: ``detail`` (shown to the integrator) is the message, which
    never carries personal data."""

    code = "ISSUANCE_SERVICE_ERROR"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.detail = message


class IllegalTransition(IssuanceError):
    code = "ILLEGAL_TRANSITION"

    def __init__(self, current: str, event: str, allowed: tuple[str, ...]) -> None:
        super().__init__(
            f"'{event}' is not allowed in state '{current}'; allowed: "
            + (", ".join(allowed) if allowed else "none (final state)")
        )
        self.current = current
        self.event = event
        self.allowed = allowed
        self.detail = self.message


class ApplicationRefused(ServiceError):
    code = "APPLICATION_REFUSED"


class NotEligible(ApplicationRefused):
    code = "NOT_ELIGIBLE"


class WindowClosed(ApplicationRefused):
    code = "COHORT_WINDOW_CLOSED"


class ChannelNotAllowed(ApplicationRefused):
    code = "CHANNEL_NOT_ALLOWED"


class PhotoNotAllowed(ApplicationRefused):
    code = "PHOTO_SOURCE_NOT_ALLOWED"


class BankChoiceInvalid(ApplicationRefused):
    code = "BANK_CHOICE_INVALID"


class ApplicationOpen(ApplicationRefused):
    code = "APPLICATION_OPEN"


class HolderMismatch(ApplicationRefused):
    code = "HOLDER_MISMATCH"


class ApplicationNotFound(ServiceError):
    code = "APPLICATION_NOT_FOUND"


class IssuedCardNotFound(ServiceError):
    code = "ISSUANCE_CARD_NOT_FOUND"


class BatchNotFound(ServiceError):
    code = "BATCH_NOT_FOUND"


class IssuanceForbidden(ServiceError):
    code = "ISSUANCE_FORBIDDEN"


class UploadInvalid(ServiceError):
    code = "UPLOAD_INVALID"


class IssuingCaUnavailable(ServiceError):
    code = "ISSUING_CA_UNAVAILABLE"
