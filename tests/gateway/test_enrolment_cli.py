"""``gateway admin``: enrolment from a shell; bad input refused on one line, nothing changed;
KEK rotation by rewrap; and a copy of the database alone reveals no secret."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert, text
from sqlalchemy.orm import Session

from gateway import migrate
from gateway.card_auth.tables import SESSION_KEY_NAME, GatewaySecret, load_session_key
from gateway.cli import main
from gateway.db import make_engine
from gateway.enrolment.common import Actor
from gateway.enrolment.rewrap import rewrap_secrets
from gateway.fsi.store import institution_keys
from gateway.kek import require_key_ring
from gateway.settings import Settings, load_settings
from gateway.store import SecretsUnavailable, Terminal, find_terminal
from sscard.crypto import SM2PrivateKey

TABLES = (
    "institutions",
    "terminals",
    "ops_identities",
    "issuance_agents",
    "fsi_transport",
    "audit_log",
)
HIS_KEY = SM2PrivateKey.from_int(0x1234567).public_key.to_bytes().hex()


@pytest.fixture
def kek(tmp_path: Path) -> Path:
    path = tmp_path / "kek-1"
    path.write_text(secrets.token_hex(32) + "\n")
    return path


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db_url: str, kek: Path) -> dict[str, str]:
    values = {
        "GATEWAY_DB_URL": db_url,
        "GATEWAY_DATA_DIR": str(tmp_path),
        "GATEWAY_DEMO_WORLD": "off",
        "GATEWAY_KEK_FILE": str(kek),
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return values


@pytest.fixture
def engine(env: dict[str, str]) -> Any:
    engine = make_engine(load_settings())
    migrate.upgrade(engine)
    yield engine
    engine.dispose()


def admin(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["admin", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _snapshot(engine: Engine) -> tuple[Any, ...]:
    with Session(engine) as session:
        return tuple(
            tuple(tuple(r) for r in session.execute(text(f"SELECT * FROM {t} ORDER BY 1")))
            for t in TABLES
        )


def _secret_of(out: str) -> bytes:
    line = next(x for x in out.splitlines() if x.startswith("secret (hex"))
    return bytes.fromhex(line.rsplit(" ", 1)[1])


@pytest.fixture
def enrolled(engine: Engine, capsys: pytest.CaptureFixture[str]) -> bytes:
    assert (
        admin(
            capsys,
            "institution",
            "add",
            "H1",
            "--name",
            "Hosp",
            "--kind",
            "hospital",
            "--level",
            "2",
        )[0]
        == 0
    )
    assert (
        admin(capsys, "institution", "add", "B1", "--name", "Bank", "--kind", "service_bank")[0]
        == 0
    )
    code, out, _ = admin(capsys, "terminal", "enrol", "T-1", "--institution", "H1")
    assert code == 0
    return _secret_of(out)


def test_an_enrolled_terminal_is_found_with_its_secret(engine: Engine, enrolled: bytes):
    ring = require_key_ring(load_settings())
    with Session(engine) as session:
        record = find_terminal(session, "T-1", ring)
    assert record is not None
    assert record.secret == enrolled
    assert record.institution_level == 2


@pytest.mark.parametrize(
    ("argv", "exit_code", "says"),
    [
        (
            ("institution", "add", "H1", "--name", "x", "--kind", "pharmacy"),
            1,
            "ENROLMENT_CONFLICT",
        ),
        (("institution", "add", "H2", "--name", "x", "--kind", "hospital"), 1, "needs its level"),
        (
            ("institution", "add", "H2", "--name", "x", "--kind", "hospital", "--level", "4"),
            2,
            "level must be 1, 2 or 3",
        ),
        (
            ("institution", "add", "H 2", "--name", "x", "--kind", "pharmacy"),
            1,
            "ENROLMENT_INVALID",
        ),
        (("institution", "change", "NOPE", "--name", "x"), 1, "ENROLMENT_NOT_FOUND"),
        (("terminal", "enrol", "T-1", "--institution", "H1"), 1, "ENROLMENT_CONFLICT"),
        (
            ("terminal", "enrol", "T-2", "--institution", "NOPE"),
            1,
            "no institution has the code NOPE",
        ),
        (("terminal", "enrol", "T/2", "--institution", "H1"), 1, "terminal id must be"),
        (("terminal", "rotate", "NOPE"), 1, "ENROLMENT_NOT_FOUND"),
        (("terminal", "rotate", "T-1", "--overlap-s", "-5"), 2, "whole seconds"),
        (("terminal", "disable", "NOPE"), 1, "ENROLMENT_NOT_FOUND"),
        (
            ("agent", "set", "H1", "--role", "bank", "--name", "x", "--bank-code", "01"),
            1,
            "does not issue cards",
        ),
        (("agent", "set", "B1", "--role", "wizard", "--name", "x"), 1, "role must be one of"),
        (("agent", "set", "B1", "--role", "bank", "--name", "x"), 1, "bank code"),
        (("ops-identity", "add", "bootstrap", "--role", "admin"), 1, "ENROLMENT_INVALID"),
        (("ops-identity", "add", "amy", "--role", "god"), 1, "role must be one of"),
        (("ops-identity", "revoke", "nobody"), 1, "ENROLMENT_NOT_FOUND"),
        (("terminal", "frobnicate", "T-1"), 2, "invalid choice"),
        (("institution", "transport", "NOPE", "--profile", "plain"), 1, "ENROLMENT_NOT_FOUND"),
        (("institution", "transport", "H1", "--profile", "tls"), 1, "profile must be"),
        (("institution", "transport", "B1", "--profile", "plain"), 1, "does not use"),
        (("institution", "transport", "H1", "--profile", "sm2-sm4"), 1, "16-byte SM4 key"),
        (
            (
                "institution",
                "transport",
                "H1",
                "--profile",
                "sm2-sm4",
                "--his-public-key",
                "04" + "00" * 64,
            ),
            1,
            "16-byte SM4 key",
        ),
    ],
)
def test_bad_input_is_refused_on_one_line_and_changes_nothing(
    engine: Engine,
    enrolled: bytes,
    capsys: pytest.CaptureFixture[str],
    argv: tuple[str, ...],
    exit_code: int,
    says: str,
):
    before = _snapshot(engine)
    code, out, err = admin(capsys, *argv)
    assert code == exit_code
    assert out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert says in err
    assert _snapshot(engine) == before


def test_an_imported_secret_that_is_not_hex_is_refused(
    engine: Engine, enrolled: bytes, capsys: pytest.CaptureFixture[str], tmp_path: Path
):
    bad = tmp_path / "secret"
    bad.write_text("not hex")
    before = _snapshot(engine)
    code, _, err = admin(
        capsys, "terminal", "enrol", "T-9", "--institution", "H1", "--secret-file", str(bad)
    )
    assert (code, len(err.splitlines())) == (2, 1)
    assert "not hex" not in err
    short = tmp_path / "short"
    short.write_text("00" * 8)
    code, _, err = admin(
        capsys, "terminal", "enrol", "T-9", "--institution", "H1", "--secret-file", str(short)
    )
    assert code == 1
    assert "16 to 64 bytes" in err
    assert _snapshot(engine) == before


def test_an_unreadable_kek_is_refused(
    engine: Engine,
    enrolled: bytes,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
):
    bad = tmp_path / "bad-kek"
    bad.write_text("1234")
    monkeypatch.setenv("GATEWAY_KEK_FILE", str(bad))
    before = _snapshot(engine)
    code, _, err = admin(capsys, "terminal", "enrol", "T-9", "--institution", "H1")
    assert code == 2
    assert "64 hex digits" in err
    assert _snapshot(engine) == before


def test_rewrap_moves_every_secret_to_the_new_kek_and_a_wrong_kek_changes_nothing(
    engine: Engine,
    enrolled: bytes,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    kek: Path,
    tmp_path: Path,
):
    assert admin(capsys, "terminal", "rotate", "T-1", "--overlap-s", "600")[0] == 0
    # The card-session key, made sealed under the old KEK as a worker makes it.
    session_key = secrets.token_bytes(32)
    with Session(engine) as session, session.begin():
        made = load_session_key(
            session, sealer=require_key_ring(load_settings()), candidate=session_key
        )
    assert made == session_key
    new_kek = tmp_path / "kek-2"
    new_kek.write_text(secrets.token_hex(32))
    # Wrong: the new KEK without the old one to open the present blobs.
    monkeypatch.setenv("GATEWAY_KEK_FILE", str(new_kek))
    before = _snapshot(engine)
    code, _, err = admin(capsys, "rewrap")
    assert code == 1
    assert "KEK_WRONG" in err
    assert len(err.splitlines()) == 1
    assert _snapshot(engine) == before
    # A worker holding only the new KEK cannot open the card-session key (it answers 503
    # KEK_UNAVAILABLE, gateway.card_auth.service) and changes nothing.
    with Session(engine) as session, session.begin(), pytest.raises(SecretsUnavailable):
        load_session_key(session, sealer=require_key_ring(load_settings()), candidate=b"\x00" * 32)
    # Right: the old KEK readable during the move.
    monkeypatch.setenv("GATEWAY_KEK_PREVIOUS_FILES", str(kek))
    code, out, _ = admin(capsys, "rewrap")
    assert code == 0
    assert "2 moved" in out  # the terminal's secrets and the card-session key
    monkeypatch.delenv("GATEWAY_KEK_PREVIOUS_FILES")
    ring = require_key_ring(load_settings())  # the new KEK alone opens everything now
    with Session(engine) as session:
        record = find_terminal(session, "T-1", ring)
    assert record is not None
    assert record.previous_secret == enrolled
    with Session(engine) as session, session.begin():
        assert load_session_key(session, sealer=ring, candidate=b"\x00" * 32) == session_key
    code, out, _ = admin(capsys, "audit", "list")
    assert "keys.rewrap" in out


def _dump(settings: Settings, engine: Engine) -> bytes:
    """What a thief with the database alone has: the SQLite files' bytes, or every row of
    every table on PostgreSQL."""
    if engine.dialect.name == "sqlite":
        base = Path(settings.database_url.removeprefix("sqlite:///"))
        return b"".join(p.read_bytes() for p in base.parent.glob(base.name + "*"))
    dump = bytearray()
    with engine.connect() as connection:
        for table in migrate.target_metadata()[0].sorted_tables:
            for row in connection.execute(text(f'SELECT * FROM "{table.name}"')):
                dump += repr(tuple(row)).encode()
    return bytes(dump)


def test_a_database_dump_alone_reveals_no_secret(
    engine: Engine, enrolled: bytes, capsys: pytest.CaptureFixture[str]
):
    assert admin(capsys, "terminal", "rotate", "T-1", "--overlap-s", "600")[0] == 0
    _, out, _ = admin(capsys, "ops-identity", "add", "amy", "--role", "viewer")
    token = out.rsplit(" ", 1)[1].strip()
    settings = load_settings()
    # A row of before gw0005 (or the demo world's, loaded in plaintext), sealed as `serve`
    # does at every start.
    legacy = secrets.token_bytes(32)
    # The card-session MAC key as every gateway stored it before it was sealed.
    session_key = secrets.token_bytes(32)
    with Session(engine) as session, session.begin():
        session.execute(
            insert(Terminal).values(terminal_id="LEGACY-1", institution_code="H1", secret=legacy)
        )
        session.execute(insert(GatewaySecret).values(name=SESSION_KEY_NAME, value=session_key))
    ring = require_key_ring(settings)
    with Session(engine) as session, session.begin():
        report = rewrap_secrets(session, Actor("cli:test", "cli", 0), ring, plaintext_only=True)
    assert report.sealed == 2
    with Session(engine) as session, session.begin():
        # What every worker loads at start: the same key, opened (not the new candidate).
        loaded = load_session_key(session, sealer=ring, candidate=secrets.token_bytes(32))
    assert loaded == session_key
    with engine.connect() as connection:
        connection.exec_driver_sql(
            "PRAGMA wal_checkpoint(TRUNCATE)"
        ) if engine.dialect.name == "sqlite" else None
    dump = _dump(settings, engine)
    assert b"LEGACY-1" in dump  # the dump is real
    for secret in (enrolled, legacy, token.encode(), session_key):
        assert secret not in dump
        assert secret.hex().encode() not in dump


def test_the_demo_world_makes_its_kek_in_the_data_dir_and_logs_the_path_not_the_value(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    from gateway.kek import DEMO_KEK_FILE, resolve_keys

    # "on": what `serve` decides "auto" to be for a demo (or empty embedded) database.
    settings = load_settings(environ={}, overrides={"data_dir": tmp_path, "demo_world": "on"})
    assert settings.should_load_demo_world()
    with caplog.at_level("WARNING", logger="gateway.kek"):
        keys = resolve_keys(settings)
    path = tmp_path / DEMO_KEK_FILE
    assert keys.ring is not None
    assert str(path) in keys.source
    value = path.read_text().strip()
    assert [r.getMessage() for r in caplog.records] == ["DEMO ONLY: key-encryption key generated"]
    assert value not in caplog.text
    assert resolve_keys(settings).ring.current_kek_id == keys.ring.current_kek_id  # type: ignore[union-attr]
    # Replicas of one demo world (a data dir each) share it: it follows from the demo seed.
    other = load_settings(
        environ={}, overrides={"data_dir": tmp_path / "replica-b", "demo_world": "on"}
    )
    assert resolve_keys(other).ring.current_kek_id == keys.ring.current_kek_id  # type: ignore[union-attr]
    # Not the demo world and no KEK: nothing to seal with, said plainly.
    off = load_settings(environ={}, overrides={"data_dir": tmp_path, "demo_world": "off"})
    assert resolve_keys(off).ring is None


def test_an_institution_transport_key_is_sealed_and_moves_with_rewrap(
    engine: Engine,
    enrolled: bytes,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    kek: Path,
    tmp_path: Path,
):
    sm4 = secrets.token_bytes(16)
    key_file = tmp_path / "sm4"
    key_file.write_text(sm4.hex())
    bad_point = "04" + "11" * 64
    before = _snapshot(engine)
    code, _, err = admin(
        capsys,
        "institution",
        "transport",
        "H1",
        "--profile",
        "sm2-sm4",
        "--sm4-key-file",
        str(key_file),
        "--his-public-key",
        bad_point,
    )
    assert code == 1
    assert "not a point on the curve" in err
    assert _snapshot(engine) == before
    code, out, err = admin(
        capsys,
        "institution",
        "transport",
        "H1",
        "--profile",
        "sm2-sm4",
        "--sm4-key-file",
        str(key_file),
        "--his-public-key",
        HIS_KEY,
    )
    assert code == 0, err
    assert "sealed under KEK" in out
    settings = load_settings()
    with Session(engine) as session:
        keys = institution_keys(session, "H1", require_key_ring(settings))
    assert keys is not None
    assert (keys.profile, keys.sm4_key) == ("sm2-sm4", sm4)
    assert sm4 not in _dump(settings, engine)
    new_kek = tmp_path / "kek-2"
    new_kek.write_text(secrets.token_hex(32))
    monkeypatch.setenv("GATEWAY_KEK_FILE", str(new_kek))
    monkeypatch.setenv("GATEWAY_KEK_PREVIOUS_FILES", str(kek))
    code, out, _ = admin(capsys, "rewrap")
    assert "2 moved" in out  # the terminal's secret and the institution's key
    monkeypatch.delenv("GATEWAY_KEK_PREVIOUS_FILES")
    with Session(engine) as session:
        keys = institution_keys(session, "H1", require_key_ring(load_settings()))
    assert keys is not None
    assert keys.sm4_key == sm4
