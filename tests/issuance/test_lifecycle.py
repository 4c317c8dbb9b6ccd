"""The card lifecycle state machine: every legal and every illegal transition, from the table."""

from __future__ import annotations

import itertools

import pytest

from issuance.errors import IllegalTransition
from issuance.lifecycle import (
    CARD_STAGES,
    TRANSITIONS,
    Event,
    Stage,
    allowed_events,
    transition,
)
from issuance.store import CardState

ILLEGAL = [
    (stage, event)
    for stage, event in itertools.product(Stage, Event)
    if (stage, event) not in TRANSITIONS
]


@pytest.mark.parametrize(("stage", "event"), list(TRANSITIONS), ids=str)
def test_every_legal_transition(stage: Stage, event: Event) -> None:
    assert transition(stage, event) is TRANSITIONS[(stage, event)]


@pytest.mark.parametrize(("stage", "event"), ILLEGAL, ids=str)
def test_every_illegal_transition_names_current_and_allowed(stage: Stage, event: Event) -> None:
    with pytest.raises(IllegalTransition) as caught:
        transition(stage, event)
    assert caught.value.code == "ILLEGAL_TRANSITION"
    assert caught.value.current == stage.value
    assert caught.value.event == event.value
    assert caught.value.allowed == tuple(e.value for e in allowed_events(stage))
    assert event.value not in caught.value.allowed


def test_the_table_is_most_of_the_product_illegal() -> None:
    assert len(ILLEGAL) + len(TRANSITIONS) == len(Stage) * len(Event)
    assert len(ILLEGAL) > 150


def test_final_stages_allow_nothing() -> None:
    for final in (Stage.REVOKED, Stage.SUPERSEDED, Stage.EXPIRED):
        assert allowed_events(final) == ()


def test_every_stage_is_reachable_from_applied() -> None:
    reached, frontier = {Stage.APPLIED}, [Stage.APPLIED]
    while frontier:
        stage = frontier.pop()
        for event in allowed_events(stage):
            new = transition(stage, event)
            if new not in reached:
                reached.add(new)
                frontier.append(new)
    assert reached == set(Stage)


def test_only_active_cards_authenticate_and_card_stages_are_registry_states() -> None:
    assert {s.card_state() for s in CARD_STAGES} == set(CardState)
    assert Stage.ACTIVE.card_state() is CardState.ACTIVE


def test_the_seed_path() -> None:
    path = [
        (Event.COLLECT_INFO, Stage.INFO_COLLECTED),
        (Event.ADD_TO_BATCH, Stage.IN_BATCH),
        (Event.PRODUCE, Stage.PRODUCED),
        (Event.MAIL, Stage.MAILED),
        (Event.DELIVERY_FAIL, Stage.DELIVERY_FAILED),
        (Event.SEND_TO_BACKUP, Stage.AT_BACKUP_CENTRE),
        (Event.PICK_UP, Stage.COLLECTED),
        (Event.ACTIVATE, Stage.ACTIVE),
        (Event.REPORT_LOSS, Stage.LOST),
        (Event.REPLACE, Stage.REVOKED),
    ]
    stage = Stage.APPLIED
    for event, expected in path:
        stage = transition(stage, event)
        assert stage is expected


def test_a_citizen_id_is_ascii_digits_and_its_check_character() -> None:
    # "¹" and "٣" pass str.isdigit; the check-digit arithmetic then raised or read them as
    # digits. Only ASCII digits (and the check character) make a citizen id.
    from issuance.applications import valid_citizen_id
    from sscard.layout import citizen_id_check_digit

    first17 = "31010419500101001"
    assert valid_citizen_id(first17 + citizen_id_check_digit(first17))
    for odd in ("¹", "٣"):
        assert not valid_citizen_id(odd + first17[1:] + citizen_id_check_digit(first17))
