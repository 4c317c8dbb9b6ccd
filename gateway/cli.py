"""Command line: ``python -m gateway serve | db upgrade | db current | db revision | admin …``
(``admin``: enrolment, keys, audit and the year-end roll-over: gateway.admin; card CRLs:
gateway.card_auth.crl_admin).

Flags override the TOML file and GATEWAY_* environment (see gateway.settings). Exit codes:
0 success, 1 runtime failure, 2 invalid configuration or usage.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gateway.settings import Settings, SettingsError, load_settings

__all__ = ["main"]


def _settings_flags(parser: argparse.ArgumentParser, *, server: bool) -> None:
    parser.add_argument("--config", type=Path, metavar="FILE", help="TOML settings file")
    parser.add_argument("--db", dest="db_url", metavar="URL", help="database URL")
    parser.add_argument(
        "--data-dir", type=Path, metavar="DIR", help="data directory (default ./var)"
    )
    if server:
        parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
        parser.add_argument("--port", type=int, help="TCP port (default 8080; 0 = any free)")
        parser.add_argument("--workers", type=int, metavar="N", help="worker processes")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m gateway", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="migrate, then run the gateway")
    _settings_flags(serve, server=True)
    db = commands.add_parser("db", help="database schema")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    upgrade = db_commands.add_parser("upgrade", help="apply every pending migration")
    _settings_flags(upgrade, server=False)
    current = db_commands.add_parser("current", help="print the schema revisions")
    _settings_flags(current, server=False)
    revision = db_commands.add_parser("revision", help="write a new migration script")
    _settings_flags(revision, server=False)
    revision.add_argument("-m", "--message", required=True)
    revision.add_argument("--branch", default="gateway", help="migration source (branch)")
    revision.add_argument("--autogenerate", action="store_true")
    from gateway.admin import add_admin_parser

    add_admin_parser(commands, lambda p: _settings_flags(p, server=False))
    return parser


def _load(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {"db_url": args.db_url, "data_dir": args.data_dir}
    for name in ("host", "port", "workers"):
        overrides[name] = getattr(args, name, None)
    return load_settings(config_file=args.config, overrides=overrides)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
    except ValueError as exc:  # gateway.admin's one-line usage error
        print(str(exc), file=sys.stderr)
        return 2
    try:
        settings = _load(args)
    except SettingsError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 2
    if args.command == "serve":
        from gateway.serve import serve

        return serve(settings)
    if args.command == "admin":
        from gateway.admin import run_admin

        return run_admin(args, settings)
    return _db(args, settings)


def _db(args: argparse.Namespace, settings: Settings) -> int:
    from gateway import migrate
    from gateway.db import make_engine

    engine = make_engine(settings)
    try:
        if args.db_command == "upgrade":
            revisions = migrate.upgrade(engine)
            print(f"schema at {', '.join(sorted(revisions))}")
        elif args.db_command == "current":
            current, expected = migrate.current_revisions(engine), migrate.expected_heads()
            state = "current" if current == expected else f"behind (heads: {sorted(expected)})"
            print(f"schema at {', '.join(sorted(current)) or 'no revision'}: {state}")
            return 0 if current == expected else 1
        else:
            path = migrate.create_revision(
                engine, args.message, branch=args.branch, autogenerate=args.autogenerate
            )
            print(f"wrote {path}")
    finally:
        engine.dispose()
    return 0
