"""docs/operations.md's "Production install from zero" and "Backups and restore" against the
code: the settings example loads as gateway.settings reads it; deploy/systemd's units pass
`systemd-analyze verify` and say what the page says; the roll-over timer's command names the
year that ended; deploy/haproxy's TLS file passes `haproxy -c`; the restore drill's SQL checks
run, and hold, on PostgreSQL with settlements and a roll-over in it."""

from __future__ import annotations

import datetime as dt
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from cikit import fail_or_skip
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

import settlement.crossprov.store  # noqa: F401  (its tables are on the settlement MetaData)
from dbkit import BEIJING
from gateway.settings import Settings, load_settings
from settlement.claim import ClaimLine, Visit
from settlement.counter.settle import record
from settlement.policy import HospitalLevel, VisitType
from settlement.recording import load_holdings
from settlement.rollover import roll_over_year
from settlement.store import Insurance, InsuredPersonRow, PersonalAccount, metadata

REPO = Path(__file__).resolve().parents[2]
GUIDE = REPO / "docs" / "operations.md"
UNITS = REPO / "deploy" / "systemd"
HAPROXY = REPO / "deploy" / "haproxy" / "ssc-gateway-tls.cfg"
VENV_PYTHON = "/opt/ssc-gateway/.venv/bin/python"
CONFIG = "/etc/ssc-gateway/gateway.toml"


def _section(title: str) -> str:
    """The text of the guide's section ``title`` (a ## or ### heading), to the next heading
    of the same or a higher level (lines inside code blocks are not headings)."""
    lines = GUIDE.read_text(encoding="utf-8").splitlines(keepends=True)
    fenced = False
    level = 0
    taken: list[str] = []
    for line in lines:
        heading = re.match(r"(#+) (.*)\n?$", line) if not fenced else None
        if line.startswith("```"):
            fenced = not fenced
        if heading and level and len(heading.group(1)) <= level:
            break
        if heading and not level and heading.group(2) == title:
            level = len(heading.group(1))
            continue
        if level:
            taken.append(line)
    assert level, f"docs/operations.md has no section {title!r}"
    return "".join(taken)


def _block(section: str, language: str) -> str:
    blocks = re.findall(rf"^```{language}\n(.*?)^```", _section(section), re.M | re.S)
    assert len(blocks) == 1, (section, language, len(blocks))
    return str(blocks[0])


def _unit(name: str) -> dict[str, dict[str, list[str]]]:
    """A unit file as {section: {key: [values]}} (keys may repeat, as Environment= does)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in (UNITS / name).read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key, []).append(value)
    return sections


def test_the_settings_example_loads(tmp_path: Path) -> None:
    example = tomllib.loads(_block("The settings file", "toml"))
    config = tmp_path / "gateway.toml"
    config.write_text(
        "\n".join(f"{key} = {_toml(value)}" for key, value in example.items()), encoding="utf-8"
    )
    settings = load_settings(config_file=config, environ={})
    assert settings.demo_world == "off"
    assert not settings.should_load_demo_world()
    assert settings.kek_file == Path("/etc/ssc-gateway/kek")
    assert settings.trusted_proxies
    assert settings.database_url.startswith("postgresql+psycopg://")
    # The unit's StateDirectory is the data directory the example names.
    service = _unit("ssc-gateway.service")["Service"]
    assert settings.data_dir == Path("/var/lib") / service["StateDirectory"][0]
    assert service["WorkingDirectory"] == [str(settings.data_dir)]


def test_the_kek_commands_make_a_key_the_gateway_reads(tmp_path: Path) -> None:
    from gateway.sealing import load_kek_file

    commands = _block("The KEK file", "sh")
    made = re.search(r"^python3 -c '([^']+)' > (\S+)$", commands, re.MULTILINE)
    assert made, commands
    assert made.group(2) == "/etc/ssc-gateway/kek"
    key = subprocess.run(
        [sys.executable, "-c", made.group(1)], capture_output=True, timeout=30, check=True
    ).stdout
    (tmp_path / "kek").write_bytes(key)
    load_kek_file(tmp_path / "kek")  # raises on anything but 64 hex digits


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return str(value)  # ints, floats and dates write as TOML reads them


def test_the_gateway_unit_runs_serve_and_stops_it_the_way_the_guide_says() -> None:
    unit = _unit("ssc-gateway.service")
    service = unit["Service"]
    assert service["ExecStart"] == [f"{VENV_PYTHON} -m gateway serve"]
    assert service["Environment"] == [f"GATEWAY_CONFIG={CONFIG}"]
    assert service["User"] == ["ssc-gateway"]
    # SIGTERM to the supervisor alone, which drains its workers within shutdown_timeout_s.
    assert service["KillMode"] == ["mixed"]
    assert int(service["TimeoutStopSec"][0]) > Settings().shutdown_timeout_s
    assert service["Restart"] == ["on-failure"]
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]
    guide = _section("systemd units")
    for name in sorted(path.name for path in UNITS.iterdir()):
        assert f"`{name}`" in guide, name
    assert "`TimeoutStopSec=45`" in guide
    assert f"GATEWAY_CONFIG={CONFIG}" in guide


def test_the_rollover_timer_runs_the_command_for_the_year_that_ended() -> None:
    timer = _unit("ssc-gateway-rollover.timer")
    assert timer["Timer"]["OnCalendar"] == ["*-01-01 00:10:00 Asia/Shanghai"]
    service = _unit("ssc-gateway-rollover.service")["Service"]
    assert service["Type"] == ["oneshot"]
    assert f"GATEWAY_CONFIG={CONFIG}" in service["Environment"]
    # systemd's escapes ("%%" is "%", "$$" is "$"), then the shell's: with the interpreter
    # replaced by echo, the command prints the arguments it would run.
    command = service["ExecStart"][0].replace("%%", "%").replace("$$", "$")
    shell, flag, script = shlex.split(command)
    assert (shell, flag) == ("/bin/sh", "-c")
    assert script.startswith(f"exec {VENV_PYTHON} -m gateway admin rollover --year ")
    ran = subprocess.run(
        [shell, flag, script.replace(VENV_PYTHON, "echo")],
        capture_output=True,
        text=True,
        env={**os.environ, "TZ": "Asia/Shanghai"},
        timeout=10,
        check=True,
    )
    beijing_year = dt.datetime.now(BEIJING).year
    assert ran.stdout.split() == [
        *("-m", "gateway", "admin", "rollover", "--year"),
        str(beijing_year - 1),
    ]


def _tool(name: str) -> str:
    """systemd-analyze (Debian's systemd) and haproxy are installed by scripts/bootstrap: a
    missing one fails under CI and is a skip on a developer's machine."""
    path = shutil.which(name)
    if path is None:
        fail_or_skip(f"{name} not found (scripts/bootstrap installs it)")
    return path


def test_the_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = _tool("systemd-analyze")
    # verify checks that ExecStart's program exists: this interpreter stands in for the venv's.
    for path in UNITS.iterdir():
        text_ = path.read_text(encoding="utf-8").replace(VENV_PYTHON, sys.executable)
        (tmp_path / path.name).write_text(text_, encoding="utf-8")
    names = sorted(path.name for path in tmp_path.iterdir())
    result = subprocess.run(
        [analyze, "verify", *names],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "ignoring" not in result.stderr, result.stderr  # an unknown or misspelt key


def test_the_haproxy_tls_file_is_valid(tmp_path: Path) -> None:
    haproxy, openssl = _tool("haproxy"), _tool("openssl")
    subprocess.run(
        [
            *(openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"),
            *("-nodes", "-days", "1", "-subj", "/CN=gateway.test"),
            *("-keyout", str(tmp_path / "key.pem"), "-out", str(tmp_path / "cert.pem")),
        ],
        capture_output=True,
        timeout=60,
        check=True,
    )
    pem = tmp_path / "ssc-gateway.pem"
    pem.write_bytes((tmp_path / "cert.pem").read_bytes() + (tmp_path / "key.pem").read_bytes())
    config = HAPROXY.read_text(encoding="utf-8")
    assert "/etc/haproxy/certs/ssc-gateway.pem" in config
    (tmp_path / "haproxy.cfg").write_text(
        config.replace("/etc/haproxy/certs/ssc-gateway.pem", str(pem)), encoding="utf-8"
    )
    result = subprocess.run(
        [haproxy, "-c", "-f", str(tmp_path / "haproxy.cfg")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "deploy/haproxy/ssc-gateway-tls.cfg" in _section("TLS in front")


@pytest.mark.postgres
def test_the_restore_drills_sql_checks_hold(postgres_schema_url: str) -> None:
    engine = create_engine(postgres_schema_url)
    try:
        metadata.create_all(engine)
        now = dt.datetime.now(dt.UTC)
        ended = now.astimezone(BEIJING).year - 1
        last_evening = dt.datetime(ended, 12, 31, 20, 0, tzinfo=BEIJING)
        with Session(engine) as session, session.begin():
            person = InsuredPersonRow(
                psn_no="31000000000000000001",
                citizen_id="310101199001010011",
                name="张三",
                birth_date=dt.date(1990, 1, 1),
                retired=False,
            )
            session.add(person)
            session.flush()
            session.add_all(
                [
                    Insurance(
                        person_id=person.id,
                        insutype="310",
                        insuplc_admdvs="310000",
                        psn_type="11",
                        valid_from=dt.date(2019, 1, 1),
                        valid_to=None,
                    ),
                    PersonalAccount(
                        person_id=person.id,
                        account_year=ended,
                        current_year_fen=5_000,
                        past_years_fen=100,
                    ),
                ]
            )
        with Session(engine) as session, session.begin():
            record(
                session,
                holdings=load_holdings(session, psn_no="31000000000000000001", year=ended),
                fixmedins_code="H31010100001",
                mdtrt_id="M1",
                visit=Visit(last_evening.date(), VisitType.OUTPATIENT, HospitalLevel.LEVEL_1),
                lines=[ClaimLine("DEMO-A-002", 1, 2_000)],
                now=last_evening,
            )
        with Session(engine) as session, session.begin():
            assert roll_over_year(session, year=ended, now=now, batch=10).completed
        statements = [
            part.strip() for part in _block("Backups and restore", "sql").split(";") if part.strip()
        ]
        assert len(statements) == 5
        with engine.connect() as connection:
            results = [connection.execute(text(statement)).all() for statement in statements]
        unbalanced, ledger_sum, negative, not_rolled, day_totals = results
        assert unbalanced == []
        assert ledger_sum == [(0,)]
        assert negative == [(0,)]
        assert not_rolled == [(0,)]
        assert day_totals == []  # the example's day has no settlements here
    finally:
        engine.dispose()
