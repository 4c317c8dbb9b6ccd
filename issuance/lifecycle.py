"""The card lifecycle as an explicit state machine: ONE transition table, ONE function.

An application starts ``applied``; once its card is produced the same lifecycle continues on
the card (``cards.state`` holds the card stages, which are :class:`issuance.store.CardState`
by value). ``info_collected`` is the seed's 信息采集 (the first "collected"); ``collected`` is
the card picked up at the backup community centre or handed over at an instant-replacement
desk (the second).

::

    applied ─collect_info→ info_collected ─add_to_batch→ in_batch ─produce→ produced
    produced ─mail→ mailed ─deliver→ delivered ─activate→ active
                     mailed ─delivery_fail→ delivery_failed ─send_to_backup→ at_backup_centre
                                                     at_backup_centre ─pick_up→ collected
    produced ─hand_over→ collected (即到即补)            collected ─activate→ active
    delivered | collected | active ─report_loss→ lost
    lost | delivered | collected | active ─replace→ revoked
    active ─supersede→ superseded       (a newer card of the holder was activated)
    delivered | collected | active ─expire→ expired

``revoked``, ``superseded`` and ``expired`` are final.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import Final

from issuance.errors import IllegalTransition
from issuance.store import CardState

__all__ = ["CARD_STAGES", "TRANSITIONS", "Event", "Stage", "allowed_events", "transition"]


class Stage(StrEnum):
    APPLIED = "applied"
    INFO_COLLECTED = "info_collected"
    IN_BATCH = "in_batch"
    PRODUCED = "produced"
    MAILED = "mailed"
    DELIVERED = "delivered"
    DELIVERY_FAILED = "delivery_failed"
    AT_BACKUP_CENTRE = "at_backup_centre"
    COLLECTED = "collected"
    ACTIVE = "active"
    LOST = "lost"
    REVOKED = "revoked"
    SUPERSEDED = "superseded"
    EXPIRED = "expired"

    def card_state(self) -> CardState:
        """The registry state of a card in this stage (stages from ``produced`` on)."""
        return CardState(self.value)


class Event(StrEnum):
    COLLECT_INFO = "collect_info"
    ADD_TO_BATCH = "add_to_batch"
    PRODUCE = "produce"
    MAIL = "mail"
    HAND_OVER = "hand_over"
    DELIVER = "deliver"
    DELIVERY_FAIL = "delivery_fail"
    SEND_TO_BACKUP = "send_to_backup"
    PICK_UP = "pick_up"
    ACTIVATE = "activate"
    REPORT_LOSS = "report_loss"
    REPLACE = "replace"
    SUPERSEDE = "supersede"
    EXPIRE = "expire"


S, E = Stage, Event
_HELD = (S.DELIVERED, S.COLLECTED, S.ACTIVE)  # the holder has the card in hand

# THE table: (current stage, event) -> next stage. Anything not listed is illegal.
TRANSITIONS: Final[Mapping[tuple[Stage, Event], Stage]] = MappingProxyType(
    {
        (S.APPLIED, E.COLLECT_INFO): S.INFO_COLLECTED,
        (S.INFO_COLLECTED, E.ADD_TO_BATCH): S.IN_BATCH,
        (S.IN_BATCH, E.PRODUCE): S.PRODUCED,
        (S.PRODUCED, E.MAIL): S.MAILED,
        (S.PRODUCED, E.HAND_OVER): S.COLLECTED,
        (S.MAILED, E.DELIVER): S.DELIVERED,
        (S.MAILED, E.DELIVERY_FAIL): S.DELIVERY_FAILED,
        (S.DELIVERY_FAILED, E.SEND_TO_BACKUP): S.AT_BACKUP_CENTRE,
        (S.AT_BACKUP_CENTRE, E.PICK_UP): S.COLLECTED,
        (S.DELIVERED, E.ACTIVATE): S.ACTIVE,
        (S.COLLECTED, E.ACTIVATE): S.ACTIVE,
        **{(held, E.REPORT_LOSS): S.LOST for held in _HELD},
        **{(stage, E.REPLACE): S.REVOKED for stage in (S.LOST, *_HELD)},
        (S.ACTIVE, E.SUPERSEDE): S.SUPERSEDED,
        **{(held, E.EXPIRE): S.EXPIRED for held in _HELD},
    }
)

# Stages a card row can be in (the rest belong to the application before production).
CARD_STAGES: Final = frozenset(Stage) - {S.APPLIED, S.INFO_COLLECTED, S.IN_BATCH}


def allowed_events(current: Stage) -> tuple[Event, ...]:
    return tuple(event for (stage, event) in TRANSITIONS if stage is current)


def transition(current: Stage, event: Event) -> Stage:
    """The next stage, or raise IllegalTransition(current, allowed events)."""
    try:
        return TRANSITIONS[(current, event)]
    except KeyError:
        raise IllegalTransition(
            current.value, event.value, tuple(e.value for e in allowed_events(current))
        ) from None
