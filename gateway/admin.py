"""``python -m gateway admin …``: enrolment from a shell (docs/operations.md, "Enrolment").

Parse, call a use case of gateway.enrolment in one write transaction, render. Exit codes: 0
done; 1 refused (a duplicate id, an unknown institution, a wrong KEK …: one line on stderr
naming the code, and nothing changed); 2 bad usage or configuration (one line). A secret made
by the gateway is printed once, on stdout, and never again: it is stored sealed.
"""

from __future__ import annotations

import argparse
import getpass
import socket
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, Final, NoReturn

from sqlalchemy.orm import Session

from gateway.audit import audit_csv_header, audit_csv_rows, list_audit
from gateway.card_auth.crl_admin import add_crl_commands, run_crl_command
from gateway.enrolment import agents, identities, institutions, terminals, transport
from gateway.enrolment.common import Actor
from gateway.enrolment.rewrap import rewrap_secrets
from gateway.errors import GatewayError
from gateway.kek import KekUnavailable, require_key_ring
from gateway.settings import Settings

__all__ = ["add_admin_parser", "run_admin"]


class _UsageError(ValueError):
    """Bad usage: gateway.cli prints it as one line and exits 2."""


class _OneLineParser(argparse.ArgumentParser):
    """Bad usage is one line on stderr (and exit 2), not the usage text: scripts log it."""

    def error(self, message: str) -> NoReturn:
        raise _UsageError(f"{self.prog}: {message}")


def _level(text: str) -> int:
    if text not in ("1", "2", "3"):
        raise argparse.ArgumentTypeError("level must be 1, 2 or 3")
    return int(text)


def _seconds(text: str) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > 8:
        raise argparse.ArgumentTypeError("must be whole seconds, 0 or more")
    return int(text)


def _year(text: str) -> int:
    from gateway.year_end import MAX_YEAR, MIN_YEAR

    if not text.isdigit() or not MIN_YEAR <= int(text) <= MAX_YEAR:
        raise argparse.ArgumentTypeError(f"a year from {MIN_YEAR} to {MAX_YEAR}, not {text!r}")
    return int(text)


def add_admin_parser(
    commands: Any, settings_flags: Callable[[argparse.ArgumentParser], None]
) -> None:
    """``admin <object> <verb> … [--config F] [--db URL] [--data-dir D]``: the settings flags
    go on every leaf, after the words."""
    admin = commands.add_parser("admin", help="enrolment, keys, audit, year-end roll-over")
    objects = admin.add_subparsers(dest="admin_object", required=True, parser_class=_OneLineParser)

    def verbs(name: str, help_text: str) -> Any:
        return objects.add_parser(name, help=help_text).add_subparsers(
            dest="admin_verb", required=True
        )

    def leaf(group: Any, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = group.add_parser(name, **kwargs)
        settings_flags(parser)
        return parser

    inst = verbs("institution", "institutions")
    add = leaf(inst, "add")
    add.add_argument("code")
    add.add_argument("--name", required=True)
    add.add_argument("--kind", required=True, help="hospital, pharmacy or an issuing kind")
    add.add_argument("--level", type=_level, help="a hospital's level: 1, 2 or 3")
    change = leaf(inst, "change")
    change.add_argument("code")
    change.add_argument("--name")
    change.add_argument("--level", type=_level)
    for verb in ("suspend", "reinstate"):
        leaf(inst, verb).add_argument("code")
    leaf(inst, "list").add_argument("--kind")
    transport = leaf(inst, "transport", help="its national-interface transport profile and keys")
    transport.add_argument("code")
    transport.add_argument("--profile", required=True, help="plain or sm2-sm4")
    transport.add_argument("--sm4-key-file", type=Path, help="sm2-sm4: the SM4 key (32 hex)")
    transport.add_argument("--his-public-key", help="sm2-sm4: the HIS's SM2 key (130 hex)")

    term = verbs("terminal", "terminals")
    enrol = leaf(term, "enrol")
    enrol.add_argument("terminal_id")
    enrol.add_argument("--institution", required=True)
    enrol.add_argument("--secret-file", type=Path, help="import this secret (hex; '-' reads stdin)")
    rotate = leaf(term, "rotate")
    rotate.add_argument("terminal_id")
    rotate.add_argument("--overlap-s", type=_seconds, help="default: terminal_secret_overlap_s")
    rotate.add_argument("--secret-file", type=Path)
    for verb in ("disable", "enable"):
        leaf(term, verb).add_argument("terminal_id")
    leaf(term, "list").add_argument("--institution")

    _agent_and_ops_parsers(verbs, leaf)
    leaf(objects, "rewrap", help="re-seal every secret under the current KEK")
    audit = verbs("audit", "the audit trail")
    leaf(audit, "list").add_argument("--limit", type=_seconds, default=50)
    leaf(audit, "export", help="CSV on stdout")

    # Card CRLs: import, list, demo-write (gateway.card_auth.crl_admin).
    add_crl_commands(objects, settings_flags)

    rollover = leaf(
        objects, "rollover", help="year-end roll-over of personal accounts (gateway.year_end)"
    )
    rollover.add_argument("--year", type=_year, required=True, help="the year that ended")
    rollover.add_argument("--check", action="store_true", help="report only, change nothing")


def _agent_and_ops_parsers(verbs: Callable[[str, str], Any], leaf: Callable[..., Any]) -> None:
    agent = verbs("agent", "issuing agents and their roles")
    set_ = leaf(agent, "set")
    set_.add_argument("institution")
    set_.add_argument("--role", required=True)
    set_.add_argument("--name", required=True)
    set_.add_argument("--bank-code")
    set_.add_argument("--employer-code")
    set_.add_argument("--area-code")
    leaf(agent, "remove").add_argument("institution")
    leaf(agent, "list")

    ops = verbs("ops-identity", "named ops tokens")
    ops_add = leaf(ops, "add")
    ops_add.add_argument("name")
    ops_add.add_argument("--role", required=True, help="viewer, operator or admin")
    leaf(ops, "revoke").add_argument("name")
    leaf(ops, "list")


def _read_secret(path: Path | None) -> bytes | None:
    if path is None:
        return None
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="ascii")
        return bytes.fromhex(text.strip())
    except (OSError, UnicodeError, ValueError):
        raise _UsageError(f"{path}: the secret file must hold hex digits") from None


def _actor() -> Actor:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return Actor(f"cli:{user}"[:64], f"cli@{socket.gethostname()}"[:64], time.time())


def run_admin(args: argparse.Namespace, settings: Settings) -> int:
    if args.admin_object == "crl":
        return run_crl_command(args, settings)
    if args.admin_object == "rollover":
        from gateway.year_end import run_rollover

        return run_rollover(settings, year=args.year, check=args.check)
    from gateway import migrate
    from gateway.db import for_writes, make_engine
    from gateway.demo import demo_world_of

    engine = make_engine(settings)
    try:
        migrate.check_schema_current(engine)
        # "auto" decided by this database's demo-world marker (gateway.demo), as `serve` does.
        settings = demo_world_of(engine, settings)
        write_engine = for_writes(engine)

        def unit(work: Callable[[Session], Any]) -> Any:
            with Session(write_engine) as session, session.begin():
                return work(session)

        _dispatch(args, settings, unit)
    except (_UsageError, KekUnavailable, migrate.SchemaNotCurrent) as exc:
        print(f"gateway admin: {exc}", file=sys.stderr)
        return 2
    except GatewayError as exc:
        print(f"gateway admin: {exc.code}: {exc.detail}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    return 0


Unit = Callable[[Callable[[Session], Any]], Any]
# Rows per transaction of `audit export`, which writes the whole trail a page at a time.
_AUDIT_EXPORT_PAGE: Final = 1000


def _audit_export(unit: Unit) -> None:
    """Every audit row, newest first, in pages by id (as GET /v1/ops/audit.csv): memory is one
    page whatever the trail's length."""
    sys.stdout.write(audit_csv_header())
    before_id: int | None = None
    while True:
        entries = unit(partial(list_audit, limit=_AUDIT_EXPORT_PAGE, before_id=before_id))
        sys.stdout.write(audit_csv_rows(entries))
        if len(entries) < _AUDIT_EXPORT_PAGE:
            return
        before_id = entries[-1].id


def _dispatch(args: argparse.Namespace, settings: Settings, unit: Unit) -> None:
    handlers = {
        "institution": _institution,
        "terminal": _terminal,
        "agent": _agent,
        "ops-identity": _ops_identity,
        "rewrap": _rewrap,
        "audit": _audit,
    }
    handlers[args.admin_object](args, settings, _actor(), unit)


def _transport(args: argparse.Namespace, settings: Settings, actor: Actor, unit: Unit) -> None:
    ring = require_key_ring(settings)
    sm4_key = _read_secret(args.sm4_key_file)
    try:
        his_key = None if args.his_public_key is None else bytes.fromhex(args.his_public_key)
    except ValueError:
        raise _UsageError("--his-public-key must be hex digits") from None
    view = unit(
        lambda s: transport.set_transport(
            s,
            actor,
            ring,
            institution_code=args.code,
            profile=args.profile,
            sm4_key=sm4_key,
            his_public_key=his_key,
        )
    )
    sealed = f" (SM4 key sealed under KEK {view.kek_id})" if view.kek_id else ""
    print(f"institution {view.institution_code}: transport {view.profile}{sealed}")


def _institution(args: argparse.Namespace, settings: Settings, actor: Actor, unit: Unit) -> None:
    verb = args.admin_verb
    if verb == "add":
        view = unit(
            lambda s: institutions.add_institution(
                s, actor, code=args.code, name=args.name, kind=args.kind, level=args.level
            )
        )
        print(f"institution {view.code} added ({view.kind})")
    elif verb == "change":
        view = unit(
            lambda s: institutions.change_institution(
                s, actor, code=args.code, name=args.name, level=args.level
            )
        )
        print(f"institution {view.code}: {view.name}, level {view.level}")
    elif verb in ("suspend", "reinstate"):
        view = unit(
            lambda s: institutions.suspend_institution(
                s, actor, code=args.code, suspended=verb == "suspend"
            )
        )
        print(f"institution {view.code} {'suspended' if view.suspended else 'active'}")
    elif verb == "transport":
        _transport(args, settings, actor, unit)
    else:
        for i in unit(lambda s: institutions.list_institutions(s, kind=args.kind)):
            state = "suspended" if i.suspended else "active"
            print(f"{i.code}\t{i.kind}\t{i.level or '-'}\t{state}\t{i.name}")


def _terminal(args: argparse.Namespace, settings: Settings, actor: Actor, unit: Unit) -> None:
    verb = args.admin_verb
    if verb in ("enrol", "rotate"):
        ring = require_key_ring(settings)
        secret = _read_secret(args.secret_file)
        if verb == "enrol":
            enrolled = unit(
                lambda s: terminals.enrol_terminal(
                    s,
                    actor,
                    ring,
                    terminal_id=args.terminal_id,
                    institution_code=args.institution,
                    secret=secret,
                )
            )
        else:
            overlap = args.overlap_s
            if overlap is None:
                overlap = settings.terminal_secret_overlap_s
            enrolled = unit(
                lambda s: terminals.rotate_terminal(
                    s, actor, ring, terminal_id=args.terminal_id, overlap_s=overlap, secret=secret
                )
            )
        done = "enrolled" if verb == "enrol" else "rotated"
        print(
            f"terminal {enrolled.terminal_id} of {enrolled.institution_code}: {done} "
            f"(sealed under KEK {enrolled.kek_id})"
        )
        if enrolled.previous_until_s is not None:
            print(f"previous secret accepted until {enrolled.previous_until_s} (unix s)")
        if secret is None:
            print(f"secret (hex, shown ONCE, give it to the terminal): {enrolled.secret.hex()}")
    elif verb in ("disable", "enable"):
        view = unit(
            lambda s: terminals.set_terminal_enabled(
                s, actor, terminal_id=args.terminal_id, enabled=verb == "enable"
            )
        )
        print(f"terminal {view.terminal_id} {'enabled' if view.enabled else 'disabled'}")
    else:
        for t in unit(lambda s: terminals.list_terminals(s, institution_code=args.institution)):
            state = "enabled" if t.enabled else "disabled"
            print(f"{t.terminal_id}\t{t.institution_code}\t{state}\tkek {t.kek_id}")


def _agent(args: argparse.Namespace, _: Settings, actor: Actor, unit: Unit) -> None:
    verb = args.admin_verb
    if verb == "set":
        view = unit(
            lambda s: agents.set_agent(
                s,
                actor,
                institution_code=args.institution,
                role=args.role,
                name=args.name,
                bank_code=args.bank_code,
                employer_code=args.employer_code,
                area_code=args.area_code,
            )
        )
        print(f"institution {view.institution_code} issues as {view.role}")
    elif verb == "remove":
        unit(lambda s: agents.remove_agent(s, actor, institution_code=args.institution))
        print(f"institution {args.institution} no longer issues")
    else:
        for a in unit(agents.list_agents):
            print(f"{a.institution_code}\t{a.role}\t{a.name}")


def _ops_identity(args: argparse.Namespace, _: Settings, actor: Actor, unit: Unit) -> None:
    verb = args.admin_verb
    if verb == "add":
        issued = unit(
            lambda s: identities.add_ops_identity(s, actor, name=args.name, role=args.role)
        )
        print(f"ops identity {issued.name} ({issued.role}) added")
        print(f"token (shown ONCE): {issued.token}")
    elif verb == "revoke":
        view = unit(lambda s: identities.revoke_ops_identity(s, actor, name=args.name))
        print(f"ops identity {view.name} revoked")
    else:
        for o in unit(identities.list_ops_identities):
            state = "live" if o.revoked_at_s is None else f"revoked {o.revoked_at_s}"
            print(f"{o.name}\t{o.role}\t{state}")


def _rewrap(_: argparse.Namespace, settings: Settings, actor: Actor, unit: Unit) -> None:
    ring = require_key_ring(settings)
    report = unit(lambda s: rewrap_secrets(s, actor, ring))
    print(
        f"rewrap to KEK {report.kek_id}: {report.moved} moved, {report.sealed} sealed from "
        f"plaintext, {report.unchanged} already current"
    )


def _audit(args: argparse.Namespace, _: Settings, __: Actor, unit: Unit) -> None:
    verb = args.admin_verb
    if verb == "export":
        _audit_export(unit)
        return
    entries = unit(lambda s: list_audit(s, limit=args.limit))
    for e in entries:
        at = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(e.at_ms / 1000))
        print(f"{e.id}\t{at}Z\t{e.actor}\t{e.source}\t{e.action}\t{e.subject}\t{e.changes}")
