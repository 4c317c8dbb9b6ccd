"""The suite's demo identities follow the very rules the gateway loads its demo world by
(loadtest may not import gateway; this test may, and holds the two together), and its cards
answer challenges as the software cards of sscard do, which the gateway's checks accept."""

from __future__ import annotations

import datetime as dt
import random

import pytest
from locust_testkit import SEED

from gateway.card_auth.keys import SoftwareKeyManager, cryptogram_matches
from gateway.crossprov import demo as crossprov_demo
from gateway.demo import demo_institutions
from loadtest.locust import _world as world
from loadtest.locust._cards import Wallet
from settlement.crossprov.filings import Filing, FilingRequired, filing_for_visit
from settlement.crossprov.store import FilingType
from sscard import apdu
from sscard import demo as sd
from sscard import terminal_auth as ta
from sscard.crypto import sm2_verify
from sscard.layout import SSSE_AID, card_auth_message
from sscard.softcard import make_legacy_card

PATIENTS = world.Patients()


def test_hospital_levels_are_the_gateways() -> None:
    levels = {row["code"]: row["level"] for row in demo_institutions()}
    for index in range(ta.DEMO_HOSPITAL_COUNT):
        assert world.hospital_level(index) == levels[ta.demo_institution_code(index)]
    assert {lv: len(world.hospitals_of_level(lv)) for lv in (1, 2, 3)} == {1: 240, 2: 120, 3: 40}


def test_institution_codes_read_back_to_their_index() -> None:
    for index in (0, 1, 399, 400, 1199):
        assert world.institution_index(ta.demo_institution_code(index)) == index
    for bad in ("H31000000000", "P31000000801", "X31000000001", "H32000000001", "H3100000001"):
        with pytest.raises(ValueError, match="not a demo institution code"):
            world.institution_index(bad)


def test_a_terminal_is_the_demo_worlds_with_its_secret() -> None:
    terminal = world.institution_terminal(SEED, 400, 1)
    assert (terminal.terminal_id, terminal.secret) == ta.demo_terminal(SEED, 801)
    assert terminal.kind == "pharmacy"
    assert terminal.level is None
    assert terminal.institution_code == "P31000000001"
    assert "secret" not in repr(terminal)
    assert terminal.secret.hex() not in repr(terminal)


def test_terminals_are_drawn_by_kind_level_and_the_institutions_allowed() -> None:
    rng = random.Random(5)
    for _ in range(200):
        hospital = world.pick_terminal(SEED, "hospital", 3, rng)
        assert hospital.kind == "hospital"
        assert hospital.level == 3
        pharmacy = world.pick_terminal(SEED, "pharmacy", None, rng, pharmacies=3)
        assert 400 <= pharmacy.institution_index < 403
        few = world.pick_terminal(SEED, "hospital", 3, rng, hospitals=5)  # no level 3 there
        assert few.institution_index < 5
    with pytest.raises(ValueError, match="needs a level"):
        world.pick_terminal(SEED, "hospital", None, rng)
    with pytest.raises(ValueError, match="pharmacies 1-800"):
        world.pick_terminal(SEED, "pharmacy", None, rng, pharmacies=801)


def test_remote_persons_are_the_gateways() -> None:
    assert world.REMOTE_HOLDERS == crossprov_demo.REMOTE_HOLDERS
    assert world.PROVINCES == crossprov_demo.PROVINCES
    for h in crossprov_demo.REMOTE_HOLDERS:
        assert world.remote_province(h) == crossprov_demo.demo_remote_province(h)
        filing = crossprov_demo.demo_remote_filing(h)
        assert world.remote_filing(h) == (None if filing is None else filing.value)
    assert sorted(p.holder for p in PATIENTS.remote) == crossprov_demo.demo_remote_holders()


@pytest.mark.parametrize(
    ("institution", "visit_type"),
    [(0, "outpatient"), (7, "outpatient"), (7, "emergency"), (450, "pharmacy")],
)
def test_remote_patients_offered_have_a_filing_the_gateway_accepts_there(
    institution: int, visit_type: str
) -> None:
    terminal = world.institution_terminal(SEED, institution)
    offered = {p.holder for p in PATIENTS.remote_for(terminal, visit_type)}
    on = dt.date.today()
    for patient in PATIENTS.remote:
        filings = []
        if patient.filing is not None:
            referral = patient.filing == "referral"
            filings.append(
                Filing(
                    FilingType(patient.filing),
                    on - dt.timedelta(days=30),
                    on + dt.timedelta(days=330) if referral else None,
                    crossprov_demo.referral_target() if referral else None,
                )
            )
        try:
            filing_for_visit(
                filings,
                visit_type=visit_type,
                visit_date=on,
                fixmedins_code=terminal.institution_code,
            )
            accepted = True
        except FilingRequired:
            accepted = False
        assert (patient.holder in offered) == accepted, patient


@pytest.mark.parametrize(
    ("cards", "generation", "state"),
    [
        (PATIENTS.third_gen, 3, sd.ACTIVE),
        (PATIENTS.legacy, 2, sd.ACTIVE),
        (PATIENTS.refused[(3, "lost")], 3, sd.LOST),
        (PATIENTS.refused[(2, "superseded")], 2, sd.SUPERSEDED),
        (PATIENTS.refused[(2, "lost")], 2, sd.LOST),
    ],
)
def test_patients_cards_are_in_the_registry_state_their_visit_needs(
    cards: list[int], generation: int, state: str
) -> None:
    assert len(cards) > 1_000
    for m in cards[::97]:
        card = sd.demo_card(SEED, m)
        assert (card.generation, card.state) == (generation, state)
        assert card.holder_index not in world.REMOTE_HOLDERS


# -- the cards' answers --------------------------------------------------------------------------


def test_a_third_generation_card_signs_the_challenge_with_its_key() -> None:
    wallet = Wallet(SEED)
    card = wallet.card(PATIENTS.third_gen[3])
    challenge = bytes(range(16))
    body = wallet.answer(card, challenge.hex(), "ch-1", "H31000000001-01")
    assert body["challenge_id"] == "ch-1"
    assert body["card_sn"] == card.card_sn
    message = card_auth_message(challenge, card.raw_sn, "H31000000001-01")
    key = sd.demo_card_key(SEED, card.number)
    sm2_verify(key.public_key, message, bytes.fromhex(body["signature"]))  # raises if wrong
    # The certificate the first time, its SM3 once the gateway accepted it.
    assert "certificate" in body
    assert "certificate_sm3" not in body
    wallet.accepted(card)
    again = wallet.answer(card, challenge.hex(), "ch-2", "H31000000001-01")
    assert again["certificate_sm3"] == card.certificate_sm3_hex
    assert "certificate" not in again
    assert again["signature"] != body["signature"]  # a fresh nonce each time


def test_a_legacy_card_answers_as_the_software_card_and_the_gateway_agrees() -> None:
    wallet = Wallet(SEED)
    card = wallet.card(PATIENTS.legacy[0])
    challenge = bytes.fromhex("0102030405060708")
    ours = bytes.fromhex(wallet.answer(card, challenge.hex(), "c", "T")["cryptogram"])
    soft = make_legacy_card(
        sd.demo_card(SEED, card.number).identity, sd.legacy_master_key(SEED), sd.DEMO_PIN
    )
    assert soft.transmit(apdu.select_aid(SSSE_AID).to_bytes())[-2:] == b"\x90\x00"
    answer = soft.transmit(apdu.internal_authenticate(challenge).to_bytes())
    assert answer[-2:] == b"\x90\x00"
    assert ours == answer[:-2]
    assert cryptogram_matches(
        SoftwareKeyManager(sd.legacy_master_key(SEED)), card.raw_sn, challenge, ours
    )
    assert repr(card) == f"Card({card.number}, generation=2, state='active')"
