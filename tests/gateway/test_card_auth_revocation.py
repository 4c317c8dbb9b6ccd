"""Card certificate revocation: a CRL of the pinned card PKI, imported, refuses a revoked card
at challenge-response (CARD_CERT_REVOKED); a bad CRL is refused and changes nothing.

Runs on SQLite and (mark ``postgres``) PostgreSQL through the shared ``db_url`` fixture.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from card_auth_testkit import (
    LEGACY_LOST,
    NEW_ACTIVE,
    NEW_LOST,
    SEED,
    CardTerminal,
    demo_pki,
    load_registry,
)
from gateway_testkit import Client, FakeClock, Signer, assert_problem
from prometheus_client import REGISTRY
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from gateway import cli
from gateway.app import create_app
from gateway.audit import list_audit
from gateway.card_auth.revocation import (
    CardCrl,
    CardRevokedSerial,
    CrlImportRefused,
    RevokedSerials,
    _IssuerList,
    import_crl,
    imported_crls,
    issuer_key,
    parse_crl_file,
)
from gateway.card_auth.service import CARD_AUTH
from gateway.card_auth.trust import TrustAnchors
from gateway.settings import Settings
from gateway.state import DATABASE
from sscard import demo as sd
from sscard.certs import (
    CertificateRevocationList,
    RevocationReason,
    RevokedCertificate,
    build_crl,
    build_issuing_ca,
)
from sscard.crypto import SM2PrivateKey

# Card m's certificate has serial m + 1000 (sscard.demo.demo_card_certificate).
SERIAL_OFFSET = 1000
# The card holder 1's new card: active, like NEW_ACTIVE, for a second card in one test.
ANOTHER_ACTIVE = 2


OPS_TOKEN = "ops-crl-test-token-" + "c" * 32
OPS = {"Authorization": f"Bearer {OPS_TOKEN}"}


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"demo_world": "on", "ops_token": OPS_TOKEN}


@pytest.fixture
def registry(engine: Engine) -> Engine:
    load_registry(engine)
    return engine


@pytest.fixture
def terminal(signer: Signer, registry: Engine) -> CardTerminal:
    return CardTerminal(signer)


def now_of(clock: FakeClock) -> dt.datetime:
    return dt.datetime.fromtimestamp(int(clock()), dt.UTC)


def demo_crl(
    clock: FakeClock, *cards: int, number: int = 1, hours_left: float = 24.0, **kw: Any
) -> CertificateRevocationList:
    pki = demo_pki()
    now = now_of(clock)
    args: dict[str, Any] = {
        "issuer": pki.issuing,
        "issuer_key": pki.issuing_key,
        "revoked": [
            RevokedCertificate(m + SERIAL_OFFSET, now - dt.timedelta(hours=1), None) for m in cards
        ],
        "this_update": now - dt.timedelta(minutes=10),
        "next_update": now + dt.timedelta(hours=hours_left),
        "crl_number": number,
    }
    args.update(kw)
    return build_crl(**args)


def trust() -> TrustAnchors:
    return TrustAnchors.demo(SEED)


def do_import(engine: Engine, crl: CertificateRevocationList, clock: FakeClock) -> Any:
    with Session(engine) as session, session.begin():
        return import_crl(session, crl, trust(), now=now_of(clock), max_entries=1000)


def table_state(engine: Engine) -> tuple[list[Any], int]:
    with Session(engine) as session:
        crls = session.execute(select(CardCrl.crl_number_hex, CardCrl.crl_sm3)).all()
        count = session.execute(select(func.count()).select_from(CardRevokedSerial)).scalar_one()
    return [tuple(row) for row in crls], count


async def refresh(client: Client, clock: FakeClock) -> None:
    """What each worker's crl-refresh task does every card_crl_refresh_s."""
    await client.app[CARD_AUTH].revoked.refresh(client.app[DATABASE], int(clock() * 1000))


# -- refused at challenge-response -----------------------------------------------------------


async def test_a_revoked_card_is_refused_with_its_own_code(
    terminal: CardTerminal, client: Client, registry: Engine, clock: FakeClock
) -> None:
    done = do_import(registry, demo_crl(clock, NEW_ACTIVE), clock)
    assert done.changed
    assert done.entries == 1
    await refresh(client, clock)
    await assert_problem(await terminal.authenticate(NEW_ACTIVE), 403, "CARD_CERT_REVOKED")
    # Another card of the same CA is not on the list.
    assert (await terminal.authenticate(ANOTHER_ACTIVE)).status == 200


async def test_a_cached_certificate_is_refused_once_revoked(
    terminal: CardTerminal, client: Client, registry: Engine, clock: FakeClock
) -> None:
    assert (await terminal.authenticate(NEW_ACTIVE)).status == 200  # chain now cached
    do_import(registry, demo_crl(clock, NEW_ACTIVE), clock)
    # Before this worker refreshed (at most card_crl_refresh_s), it still accepts the card.
    assert (await terminal.authenticate(NEW_ACTIVE, hash_only=True)).status == 200
    await refresh(client, clock)
    for hash_only in (True, False):
        refused = await terminal.authenticate(NEW_ACTIVE, hash_only=hash_only)
        await assert_problem(refused, 403, "CARD_CERT_REVOKED")


async def test_the_registry_states_keep_their_codes(
    terminal: CardTerminal, client: Client, registry: Engine, clock: FakeClock
) -> None:
    do_import(registry, demo_crl(clock, NEW_ACTIVE), clock)
    await refresh(client, clock)
    # A card lost in the registry and not revoked: CARD_LOST as before; a legacy card has no
    # certificate, so a CRL never concerns it.
    await assert_problem(await terminal.authenticate(NEW_LOST), 403, "CARD_LOST")
    await assert_problem(await terminal.authenticate(LEGACY_LOST), 403, "CARD_LOST")


async def test_a_newer_list_without_the_card_lets_it_in_again(
    terminal: CardTerminal, client: Client, registry: Engine, clock: FakeClock
) -> None:
    hold = [RevokedCertificate(SERIAL_OFFSET, now_of(clock), RevocationReason.CERTIFICATE_HOLD)]
    do_import(registry, demo_crl(clock, number=5, revoked=hold), clock)
    await refresh(client, clock)
    await assert_problem(await terminal.authenticate(NEW_ACTIVE), 403, "CARD_CERT_REVOKED")
    done = do_import(registry, demo_crl(clock, ANOTHER_ACTIVE, number=6), clock)
    assert done.previous_number == 5
    await refresh(client, clock)
    assert (await terminal.authenticate(NEW_ACTIVE)).status == 200
    await assert_problem(await terminal.authenticate(ANOTHER_ACTIVE), 403, "CARD_CERT_REVOKED")
    assert table_state(registry)[1] == 1


async def test_a_worker_loads_the_lists_in_force_before_it_serves(
    registry: Engine, settings: Settings, clock: FakeClock
) -> None:
    do_import(registry, demo_crl(clock, NEW_ACTIVE), clock)
    # Another worker, started after the import: no refresh needed.
    async with TestClient(TestServer(create_app(settings, clock=clock))) as fresh:
        terminal = CardTerminal(Signer(fresh, clock))
        await assert_problem(await terminal.authenticate(NEW_ACTIVE), 403, "CARD_CERT_REVOKED")


# -- the metric an overdue list alerts on -----------------------------------------------------

CRL_NEXT_UPDATE = "gateway_card_crl_next_update_timestamp_seconds"


async def test_each_worker_reports_the_next_update_of_the_list_in_force(
    client: Client, registry: Engine, clock: FakeClock
) -> None:
    """What CardCrlPastNextUpdate (deploy/prometheus/alerts.yml) compares with the time."""
    first = demo_crl(clock, number=40, hours_left=24)
    labels = {"issuer_sm3": do_import(registry, first, clock).issuer_sm3}
    await refresh(client, clock)
    assert REGISTRY.get_sample_value(CRL_NEXT_UPDATE, labels) == first.next_update.timestamp()
    # A newer list, imported by another worker or replica: this one reports it once refreshed.
    newer = demo_crl(clock, number=41, hours_left=72)
    do_import(registry, newer, clock)
    await refresh(client, clock)
    assert REGISTRY.get_sample_value(CRL_NEXT_UPDATE, labels) == newer.next_update.timestamp()
    exposed = await (await client.get("/metrics")).text()
    assert f'{CRL_NEXT_UPDATE}{{issuer_sm3="{labels["issuer_sm3"]}"}}' in exposed


def test_the_revoked_set_hands_every_lists_next_update_to_its_observer() -> None:
    seen: list[dict[str, int]] = []
    revoked = RevokedSerials(observe=lambda next_updates, _: seen.append(dict(next_updates)))
    revoked.apply({"a1": _IssuerList("crl-a", 5_000, frozenset({7}))}, now_ms=1_000)
    revoked.apply({"b2": _IssuerList("crl-b", 9_000, frozenset())}, now_ms=6_000)  # a1 overdue
    assert seen == [{"a1": 5_000}, {"a1": 5_000, "b2": 9_000}]


# -- the metric a CA without any list alerts on -----------------------------------------------

CRL_LOADED = "gateway_card_crl_loaded"


async def test_each_worker_reports_the_pinned_cas_that_have_no_list(
    client: Client, registry: Engine, clock: FakeClock
) -> None:
    """What CardCrlMissing (deploy/prometheus/alerts.yml) alerts on: a CA of the pinned PKI
    with no list has no nextUpdate series, so it needs a series of its own, at 0."""
    pki = demo_pki()
    root, issuing = ({"issuer_sm3": issuer_key(ca.subject_der)} for ca in (pki.root, pki.issuing))
    # The worker started with no CRL imported: both CAs of the demo PKI are reported missing.
    assert REGISTRY.get_sample_value(CRL_LOADED, root) == 0
    assert REGISTRY.get_sample_value(CRL_LOADED, issuing) == 0
    do_import(registry, demo_crl(clock), clock)
    await refresh(client, clock)
    assert REGISTRY.get_sample_value(CRL_LOADED, issuing) == 1
    assert REGISTRY.get_sample_value(CRL_LOADED, root) == 0  # the root's own list: still none
    exposed = await (await client.get("/metrics")).text()
    assert f'{CRL_LOADED}{{issuer_sm3="{root["issuer_sm3"]}"}} 0.0' in exposed


def test_the_revoked_set_tells_its_observer_which_pinned_cas_have_a_list(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pki = demo_pki()
    root, issuing = (issuer_key(ca.subject_der) for ca in (pki.root, pki.issuing))
    seen: list[dict[str, bool]] = []
    revoked = RevokedSerials(
        observe=lambda _, in_force: seen.append(dict(in_force)), pinned=(pki.root, pki.issuing)
    )
    with caplog.at_level("WARNING", logger="gateway.card_auth.revocation"):
        revoked.apply({}, now_ms=1_000)
        revoked.apply({}, now_ms=2_000)  # logged once per CA, not at every refresh
        revoked.apply({issuing: _IssuerList("crl-i", 9_000, frozenset())}, now_ms=3_000)
    assert seen == [
        {root: False, issuing: False},
        {root: False, issuing: False},
        {root: False, issuing: True},
    ]
    missing = [r for r in caplog.records if r.getMessage().startswith("no card CRL imported")]
    assert len(missing) == 2


# -- refused imports change nothing ----------------------------------------------------------


def test_bad_lists_are_refused_and_change_nothing(registry: Engine, clock: FakeClock) -> None:
    do_import(registry, demo_crl(clock, NEW_ACTIVE, number=7), clock)
    before = table_state(registry)
    pki = demo_pki()
    other_key = SM2PrivateKey.generate()
    look_alike = build_issuing_ca(
        other_key.public_key,
        sd.ISSUING_CA_NAME,
        issuer=pki.root,
        issuer_key=pki.root_key,
        not_before=sd.CA_VALID_FROM,
        not_after=sd.CA_VALID_UNTIL,
    )
    now = now_of(clock)
    cases = {
        "CRL_STALE": demo_crl(clock, 3, number=6),
        "CRL_EXPIRED": demo_crl(
            clock,
            3,
            number=8,
            this_update=now - dt.timedelta(days=8),
            next_update=now - dt.timedelta(days=1),
        ),
        "CRL_NOT_YET_VALID": demo_crl(clock, 3, number=8, this_update=now + dt.timedelta(hours=1)),
        "CRL_ISSUER_UNKNOWN": demo_crl(clock, 3, number=8, issuer=look_alike, issuer_key=other_key),
        "CRL_TOO_LARGE": demo_crl(clock, *range(1001), number=8),
    }
    for code, crl in cases.items():
        with pytest.raises(CrlImportRefused) as refused:
            do_import(registry, crl, clock)
        assert refused.value.code == code, refused.value
        assert table_state(registry) == before, code
    # A list signed by another key under the CA's own name and key id: the signature decides.
    forged = demo_crl(clock, 3, number=9, issuer_key=other_key, issuer=look_alike)
    with pytest.raises(CrlImportRefused):
        do_import(registry, forged, clock)
    assert table_state(registry) == before


def test_a_list_signed_by_the_root_is_accepted_for_the_root(
    registry: Engine, clock: FakeClock
) -> None:
    pki = demo_pki()
    root_list = demo_crl(clock, number=1, issuer=pki.root, issuer_key=pki.root_key)
    do_import(registry, root_list, clock)
    do_import(registry, demo_crl(clock, NEW_ACTIVE, number=1), clock)
    with Session(registry) as session:
        assert [item.crl_number for item in imported_crls(session)] == [1, 1]


def test_the_list_in_force_imported_again_is_a_no_op(registry: Engine, clock: FakeClock) -> None:
    crl = demo_crl(clock, NEW_ACTIVE, number=3)
    assert do_import(registry, crl, clock).changed
    before = table_state(registry), audit_rows(registry)
    assert not do_import(registry, crl, clock).changed
    assert (table_state(registry), audit_rows(registry)) == before


def audit_rows(engine: Engine) -> list[Any]:
    with Session(engine) as session:
        return list_audit(session, limit=100)


def test_an_import_is_audited_and_a_refusal_is_not(registry: Engine, clock: FakeClock) -> None:
    do_import(registry, demo_crl(clock, NEW_ACTIVE, number=3), clock)
    with pytest.raises(CrlImportRefused):
        do_import(registry, demo_crl(clock, number=2), clock)
    (row,) = audit_rows(registry)
    assert row.action == "crl.import"
    assert row.actor == "cli:unknown"
    assert row.subject.startswith("crl:Shanghai SSC Demo Issuing CA")
    changes = json.loads(row.changes)
    assert changes["crl_number"] == [None, "3"]
    assert changes["entries_count"] == 1


def test_malformed_bytes_are_refused_with_a_code() -> None:
    for data in (b"", b"not a crl", b"\x30\x03\x02\x01\x01", b"-----BEGIN X509 CRL-----\n!!\n"):
        with pytest.raises(CrlImportRefused) as refused:
            parse_crl_file(data)
        assert refused.value.code == "CRL_MALFORMED"


def test_revoked_set_checks_every_link_but_the_root() -> None:
    pki = demo_pki()
    card = sd.demo_card_certificate(SEED, NEW_ACTIVE, pki)
    revoked = RevokedSerials()
    revoked.check((card, pki.issuing, pki.root))  # nothing loaded: nothing revoked
    assert len(revoked) == 0


# -- the command line ------------------------------------------------------------------------


def test_admin_crl_import_command(
    registry: Engine,
    settings: Settings,
    clock: FakeClock,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("GATEWAY_DEMO_WORLD", "on")
    flags = ["--db", settings.database_url, "--data-dir", str(tmp_path)]
    # The command uses the wall clock: a list around now.
    wall = FakeClock(dt.datetime.now(dt.UTC).timestamp())
    good = tmp_path / "good.pem"
    good.write_bytes(demo_crl(wall, NEW_ACTIVE, number=11).to_pem())
    der = tmp_path / "good.der"
    der.write_bytes(demo_crl(wall, NEW_ACTIVE, 3, number=12).der)
    bad = tmp_path / "bad.pem"
    bad.write_bytes(b"-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n")

    assert cli.main(["admin", "crl", "import", str(good), *flags]) == 0
    assert "imported CRL number 11" in capsys.readouterr().out
    assert cli.main(["admin", "crl", "import", str(good), *flags]) == 0
    assert "already in force; nothing changed" in capsys.readouterr().out
    assert cli.main(["admin", "crl", "import", str(bad), *flags]) == 1
    err = capsys.readouterr().err
    assert "CRL_MALFORMED" in err
    assert "Nothing changed" in err
    assert cli.main(["admin", "crl", "import", str(der), *flags]) == 0
    assert "before: 11" in capsys.readouterr().out
    assert cli.main(["admin", "crl", "list", *flags]) == 0
    assert "number 12" in capsys.readouterr().out
    assert table_state(registry)[1] == 2


# -- the ops API -----------------------------------------------------------------------------


async def test_ops_api_imports_a_crl_and_this_worker_enforces_it_at_once(
    terminal: CardTerminal, client: Client, registry: Engine, clock: FakeClock
) -> None:
    crl = demo_crl(clock, NEW_ACTIVE, number=21)
    answer = await client.post("/v1/ops/crls", json={"crl": crl.to_pem().decode()}, headers=OPS)
    assert answer.status == 200, await answer.text()
    body = await answer.json()
    assert (body["crl_number"], body["entries"], body["changed"]) == ("21", 1, True)
    await assert_problem(await terminal.authenticate(NEW_ACTIVE), 403, "CARD_CERT_REVOKED")
    listed = await (await client.get("/v1/ops/crls", headers=OPS)).json()
    assert [item["crl_number"] for item in listed["crls"]] == ["21"]
    (row,) = audit_rows(registry)
    assert (row.action, row.actor) == ("crl.import", "ops:bootstrap")
    assert row.source == "127.0.0.1"


async def test_ops_api_refuses_bad_lists_and_changes_nothing(
    client: Client, registry: Engine, clock: FakeClock
) -> None:
    import base64

    do_import(registry, demo_crl(clock, NEW_ACTIVE, number=30), clock)
    before = table_state(registry), audit_rows(registry)
    stale = base64.b64encode(demo_crl(clock, number=29).der).decode()
    for body, reason in (
        ({"crl": stale}, "CRL_STALE"),
        ({"crl": "not base64 !"}, "CRL_MALFORMED"),
        ({"crl": base64.b64encode(b"0").decode()}, "CRL_MALFORMED"),
    ):
        answer = await client.post("/v1/ops/crls", json=body, headers=OPS)
        problem = await assert_problem(answer, 422, "CRL_REFUSED")
        assert problem["detail"].startswith(reason), problem
    assert (table_state(registry), audit_rows(registry)) == before
    await assert_problem(
        await client.post("/v1/ops/crls", json={"crl": stale}), 401, "OPS_UNAUTHORIZED"
    )
