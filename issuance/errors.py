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
