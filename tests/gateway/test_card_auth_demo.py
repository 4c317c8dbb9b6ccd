"""The demo registry part, the trust anchors and the pure pieces of card authentication."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from card_auth_testkit import SEED, certificate_der, demo_pki
from gateway_testkit import counted_statements
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from gateway.card_auth import checks
from gateway.card_auth.demo_cards import DemoCards, demo_card_row, demo_holder_row, holder_id
from gateway.card_auth.keys import SoftwareKeyManager, cryptogram_matches, load_master_key_file
from gateway.card_auth.service import key_manager_from_settings, trust_anchors_from_settings
from gateway.card_auth.session import CardSession, issue_card_session, require_card_session
from gateway.card_auth.tables import ChallengeRecord, ConsumedChallenge
from gateway.card_auth.trust import TrustAnchors, VerifiedCertificateCache
from gateway.demo import DEMO_PARTS, load_demo_world
from gateway.errors import ERRORS, GatewayError
from gateway.settings import SettingsError, load_settings
from issuance.errors import CardNotUsable
from issuance.registry import CardRegistry
from issuance.store import Card, Cardholder, CardState
from sscard import demo as sd
from sscard.certs import CertificateError, load_der
from sscard.layout import CardSn
from sscard.softcard import diversify_card_key, legacy_cryptogram

# Every state of every generation (cards 0..39), then a spread over the whole range.
SAMPLE = [*range(40), *range(41, sd.DEMO_CARD_COUNT, 997), sd.DEMO_CARD_COUNT - 1]


@pytest.mark.parametrize("m", SAMPLE)
def test_registry_rows_match_the_demo_cards(m: int) -> None:
    card = sd.demo_card(SEED, m)
    row = demo_card_row(m)
    if card.state == sd.ABSENT:
        assert row is None
        return
    assert row is not None
    assert row["card_sn"] == card.card_sn
    assert row["card_no"] == card.identity.card_no
    assert row["generation"] == card.generation
    assert row["state"] == CardState(card.state)
    assert row["issued_on"] == card.identity.issue_date
    assert row["expires_on"] == card.identity.expiry_date
    assert row["superseded_by"] == card.superseded_by
    assert row["holder_id"] == holder_id(card.holder_index)


def test_holder_rows_match_the_demo_holders() -> None:
    for h in (0, 1, 7, 499, 500, 19_999):
        holder, row = sd.demo_holder(SEED, h), demo_holder_row(SEED, h)
        assert (row["citizen_id"], row["name"], row["birth_date"]) == (
            holder.citizen_id,
            holder.name,
            holder.birth_date,
        )
        assert (row["gender"], row["area_code"]) == (holder.gender.value, holder.area_code)


def test_whole_demo_registry_loads_batched_once(migrated_engine: Engine) -> None:
    parts = (DEMO_PARTS[0], DemoCards())
    # Its speed is the demo bench's (python -m loadtest.bench demo); here, that 61,600 rows go
    # in a handful of executemany batches (12 today), never one statement per row.
    with counted_statements(migrated_engine) as statements:
        loaded = load_demo_world(migrated_engine, SEED, parts)
    assert loaded == {"institutions_and_terminals": 3600, "cardholders_and_cards": 58_000}
    assert len(statements) <= 30, len(statements)
    assert load_demo_world(migrated_engine, SEED, parts)["cardholders_and_cards"] == 0
    with Session(migrated_engine) as session:
        assert session.execute(select(func.count()).select_from(Cardholder)).scalar_one() == (
            sd.DEMO_HOLDER_COUNT
        )
        assert session.execute(select(func.count()).select_from(Card)).scalar_one() == 38_000
        registry = CardRegistry(session)
        for card in sd.find_demo_cards(SEED, generation=2, state=sd.SUPERSEDED, count=2):
            record = registry.get(card.card_sn)
            assert record is not None
            assert record.state is CardState.SUPERSEDED
            assert record.superseded_by == card.superseded_by
        absent = sd.find_demo_cards(SEED, generation=3, state=sd.ABSENT)[0]
        assert registry.get(absent.card_sn) is None


def test_demo_cards_never_join_real_institutions(engine: Engine) -> None:
    # The `engine` fixture holds real (test) institutions and no demo institution.
    assert load_demo_world(engine, SEED)["cardholders_and_cards"] == 0


def test_demo_trust_anchors_verify_demo_cards_across_builds() -> None:
    # Another process builds the demo PKI with other signature nonces: still the same trust.
    trust = TrustAnchors.demo(SEED)
    assert trust.root.der != demo_pki().root.der
    verified = trust.verify(load_der(certificate_der(0)), dt.datetime(2027, 1, 1, tzinfo=dt.UTC))
    assert verified.card_sn == sd.demo_card(SEED, 0).card_sn


def test_trust_anchors_from_pem_files(tmp_path: Path) -> None:
    (tmp_path / "root.pem").write_bytes(demo_pki().root.to_pem())
    (tmp_path / "ca.pem").write_bytes(demo_pki().issuing.to_pem())
    trust = TrustAnchors.from_pem_files(tmp_path / "root.pem", (tmp_path / "ca.pem",))
    assert trust.verify(load_der(certificate_der(0)), dt.datetime(2027, 1, 1, tzinfo=dt.UTC))


def test_certificate_cache_is_a_bounded_lru_rechecked_against_the_clock() -> None:
    trust = TrustAnchors.demo(SEED)
    at = dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
    a, b, c = (trust.verify(load_der(certificate_der(m)), at) for m in (0, 2, 4))
    cache = VerifiedCertificateCache(max_entries=2)
    cache.put(a)
    cache.put(b)
    assert cache.get(a.fingerprint, at) is a  # a is now the most recent
    cache.put(c)
    assert cache.get(b.fingerprint, at) is None  # b was the least recently used
    assert len(cache) == 2
    assert cache.get(a.fingerprint, a.valid_until + dt.timedelta(seconds=1)) is None
    assert len(cache) == 1  # the stale entry is dropped, not kept


def test_software_key_manager_matches_the_card() -> None:
    keys = SoftwareKeyManager(sd.legacy_master_key(SEED))
    sn = CardSn.from_hex(sd.demo_card(SEED, 1).card_sn)
    assert keys.card_key(sn) == diversify_card_key(sd.legacy_master_key(SEED), sn)
    answer = legacy_cryptogram(keys.card_key(sn), bytes(8), sn)
    assert cryptogram_matches(keys, sn, bytes(8), answer)
    assert not cryptogram_matches(keys, sn, bytes(7) + b"\x01", answer)
    assert "hidden" in repr(keys)


def test_master_key_file(tmp_path: Path) -> None:
    path = tmp_path / "legacy.key"
    path.write_text("00112233445566778899aabbccddeeff\n")
    assert load_master_key_file(path) == bytes.fromhex("00112233445566778899aabbccddeeff")
    path.write_text("secret-but-wrong")
    with pytest.raises(ValueError, match="32 hex digits") as excinfo:
        load_master_key_file(path)
    assert "secret" not in str(excinfo.value)


def _challenge(**changes: object) -> ChallengeRecord:
    fields: dict[str, object] = {
        "challenge_id": "c" * 22,
        "terminal_id": "T1",
        "card_sn": "310000D15600000503000000000000A0",
        "generation": 3,
        "challenge": bytes(16),
        "expires_at_ms": 10_000,
    }
    fields.update(changes)
    return ChallengeRecord(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("found", "now_ms", "code"),
    [
        (ConsumedChallenge(None, consumed=False), 0, "CHALLENGE_UNKNOWN"),
        # Expiry is judged before reuse, and at the exact instant it is already expired.
        (ConsumedChallenge(_challenge(), consumed=False), 10_000, "CHALLENGE_EXPIRED"),
        (ConsumedChallenge(_challenge(), consumed=False), 9_999, "CHALLENGE_REUSED"),
        (ConsumedChallenge(_challenge(terminal_id="T2"), consumed=True), 0, "CHALLENGE_MISMATCH"),
        (ConsumedChallenge(_challenge(generation=2), consumed=True), 0, "CHALLENGE_MISMATCH"),
        (
            ConsumedChallenge(_challenge(card_sn="310000D15600000503000000000000A2"), True),
            0,
            "CHALLENGE_MISMATCH",
        ),
    ],
)
def test_challenge_check_order(found: ConsumedChallenge, now_ms: int, code: str) -> None:
    with pytest.raises(GatewayError) as excinfo:
        checks.check_challenge(
            found,
            terminal_id="T1",
            card_sn="310000D15600000503000000000000A0",
            generation=3,
            now_ms=now_ms,
        )
    assert excinfo.value.code == code


def test_session_token_round_trip_and_bounds() -> None:
    key = bytes(range(32))
    session = CardSession("T1", "310000D15600000503000000000000A0", 3, 42, 1_000)
    token = issue_card_session(key, session)
    assert require_card_session(key, token, "T1", 999.0) == session
    for bad in ("", "cs1.", "cs2." + token[4:], token + "A" * 400, "cs1.!!!!"):
        with pytest.raises(GatewayError) as excinfo:
            require_card_session(key, bad, "T1", 0)
        assert excinfo.value.code == "CARD_SESSION_INVALID"
    with pytest.raises(GatewayError) as other_key:
        require_card_session(bytes(32), token, "T1", 0)
    assert other_key.value.code == "CARD_SESSION_INVALID"


def test_every_domain_code_card_auth_can_raise_is_registered() -> None:
    def codes_below(cls: type[Exception]) -> set[str]:
        codes: set[str] = set()
        sub: type[Exception]
        for sub in cls.__subclasses__():
            codes |= {str(getattr(sub, "code")), *codes_below(sub)}  # noqa: B009
        return codes

    codes = codes_below(CardNotUsable) | codes_below(CertificateError)
    assert codes - set(ERRORS) == set()


def test_production_settings_load_pem_files_and_master_key(tmp_path: Path) -> None:
    (tmp_path / "root.pem").write_bytes(demo_pki().root.to_pem())
    (tmp_path / "ca.pem").write_bytes(demo_pki().issuing.to_pem())
    (tmp_path / "legacy.key").write_text("00" * 16)
    settings = load_settings(
        environ={
            "GATEWAY_CARD_TRUST_ROOT_PEM": str(tmp_path / "root.pem"),
            "GATEWAY_CARD_ISSUING_CA_PEMS": f"{tmp_path / 'ca.pem'}, {tmp_path / 'ca.pem'}",
            "GATEWAY_LEGACY_MASTER_KEY_FILE": str(tmp_path / "legacy.key"),
        },
        overrides={"data_dir": tmp_path, "db_url": "postgresql+psycopg://gw@db/gw"},
    )
    trust = trust_anchors_from_settings(settings)
    assert trust is not None
    assert trust.root == demo_pki().root
    assert len(trust.issuing_cas) == 2
    keys = key_manager_from_settings(settings)
    sn = CardSn.from_hex(sd.demo_card(SEED, 1).card_sn)
    assert keys is not None
    assert keys.card_key(sn) == diversify_card_key(bytes(16), sn)


def test_production_database_without_card_settings_has_no_trust(tmp_path: Path) -> None:
    settings = load_settings(
        environ={}, overrides={"data_dir": tmp_path, "db_url": "postgresql+psycopg://gw@db/gw"}
    )
    assert trust_anchors_from_settings(settings) is None
    assert key_manager_from_settings(settings) is None
    with pytest.raises(SettingsError, match="card_issuing_ca_pems"):
        load_settings(
            environ={},
            overrides={"data_dir": tmp_path, "card_trust_root_pem": str(tmp_path / "r.pem")},
        )


def test_new_cardholders_after_the_demo_load_get_fresh_ids(migrated_engine: Engine) -> None:
    # The demo rows carry explicit ids; on PostgreSQL the id sequence must be moved past them.
    with Session(migrated_engine) as session, session.begin():
        DemoCards(holders=30).load(session, SEED)
    with Session(migrated_engine) as session, session.begin():
        holder = Cardholder(
            citizen_id="310101199001011237",
            name="新人",
            birth_date=dt.date(1990, 1, 1),
            gender="1",
            area_code="310101",
        )
        session.add(holder)
        session.flush()
        assert holder.id > 30
