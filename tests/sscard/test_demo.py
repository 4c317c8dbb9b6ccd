"""The demo world is deterministic, complete in its states, and its PKI verifies across tools."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import pytest

from sscard import demo
from sscard.certs import CertificateExpired, verify_chain
from sscard.crypto import sm2_sign, sm2_verify

SEED = "test-seed"


def test_same_seed_same_world_other_seed_other_keys() -> None:
    assert demo.demo_card(SEED, 42) == demo.demo_card(SEED, 42)
    assert demo.demo_card_key(SEED, 42) == demo.demo_card_key(SEED, 42)
    assert demo.demo_card_key(SEED, 42) != demo.demo_card_key("other", 42)
    assert demo.legacy_master_key(SEED) != demo.legacy_master_key("other")
    assert len(demo.legacy_master_key(SEED)) == 16


def test_every_registry_state_occurs_in_bulk() -> None:
    cards = [demo.demo_card(SEED, m) for m in range(200)]
    counts = Counter((c.generation, c.state) for c in cards)
    expected = {
        (3, demo.ACTIVE), (3, demo.DELIVERED), (3, demo.LOST), (3, demo.EXPIRED),
        (3, demo.ABSENT), (2, demo.ACTIVE), (2, demo.SUPERSEDED), (2, demo.LOST),
    }  # fmt: skip
    assert set(counts) == expected
    assert counts[(3, demo.ACTIVE)] == 60


def test_superseded_legacy_card_points_at_the_new_card() -> None:
    legacy = demo.demo_card(SEED, 1)
    assert legacy.state == demo.SUPERSEDED
    assert legacy.superseded_by == demo.demo_card(SEED, 0).card_sn
    assert legacy.identity.citizen_id == demo.demo_card(SEED, 0).identity.citizen_id
    assert legacy.identity.generation == 2
    assert demo.demo_card(SEED, 0).identity.generation == 3


def test_citizen_ids_are_unique_and_reprs_are_masked() -> None:
    holders = [demo.demo_holder(SEED, h) for h in range(0, demo.DEMO_HOLDER_COUNT, 7)]
    assert len({h.citizen_id for h in holders}) == len(holders)
    card = demo.demo_card(SEED, 0)
    assert card.identity.citizen_id not in repr(card)
    assert card.holder.name not in repr(card.holder)


def test_find_demo_cards_returns_what_was_asked() -> None:
    found = demo.find_demo_cards(SEED, generation=2, state=demo.ACTIVE, count=5, start=100)
    assert len(found) == 5
    assert all(c.generation == 2 and c.state == demo.ACTIVE and c.number >= 100 for c in found)


def test_legacy_cards_have_no_sm2_key() -> None:
    with pytest.raises(ValueError, match="legacy"):
        demo.demo_card_key(SEED, 1)


@pytest.mark.parametrize("m", [-1, demo.DEMO_CARD_COUNT])
def test_out_of_range(m: int) -> None:
    with pytest.raises(ValueError, match="out of range"):
        demo.demo_card(SEED, m)


def test_pki_built_by_two_tools_interoperates() -> None:
    gateway_side, terminal_side = demo.demo_pki(SEED), demo.demo_pki(SEED)
    assert gateway_side.root.der != terminal_side.root.der  # fresh signatures each time
    cert = demo.demo_card_certificate(SEED, 0, terminal_side)
    at = dt.datetime(2026, 11, 27, tzinfo=dt.UTC)
    verified = verify_chain(cert, [gateway_side.issuing], gateway_side.root, at=at)
    assert verified.card_sn == demo.demo_card(SEED, 0).card_sn
    key = demo.demo_card_key(SEED, 0)
    assert verified.public_key == key.public_key
    sm2_verify(verified.public_key, b"m", sm2_sign(key, b"m"))


def test_expired_demo_card_certificate_is_expired() -> None:
    pki = demo.demo_pki(SEED)
    (expired,) = demo.find_demo_cards(SEED, generation=3, state=demo.EXPIRED)
    cert = demo.demo_card_certificate(SEED, expired.number, pki)
    with pytest.raises(CertificateExpired):
        verify_chain(cert, [pki.issuing], pki.root, at=dt.datetime(2026, 11, 27, tzinfo=dt.UTC))
