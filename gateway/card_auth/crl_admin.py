"""``python -m gateway admin crl …``: import the card PKI's CRLs, list the lists in force, and
(DEMO ONLY) write a CRL signed by the demo issuing CA.

::

    python -m gateway admin crl import FILE        DER or PEM; refused with a code and a reason,
                                                   changing nothing, unless the list is the
                                                   pinned PKI's, current and newer
    python -m gateway admin crl list               issuer, number, window, entries of each list
    python -m gateway admin crl demo-write OUT --revoke M [M …]
                                                   DEMO ONLY: revoke demo cards M (serial M+1000)

Exit codes: 0 imported (or already in force), 1 refused or failed, 2 bad configuration.
Running workers pick an import up within ``card_crl_refresh_s`` (gateway.card_auth.revocation).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from gateway.card_auth.revocation import CrlImported, CrlImportRefused
    from gateway.settings import Settings

# Everything else is imported where it is used: `python -m gateway` builds this parser for
# every command, and `serve` must import gateway.metrics (prometheus_client) only after it set
# PROMETHEUS_MULTIPROC_DIR.

__all__ = ["add_crl_commands", "run_crl_command"]

# A demo CRL is valid for a week from the moment it is written.
_DEMO_VALIDITY = dt.timedelta(days=7)


def add_crl_commands(admin: Any, settings_flags: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add ``crl`` and its subcommands to the ``admin`` subparsers (gateway.admin); the
    settings flags go on every leaf."""
    crl = admin.add_parser("crl", help="card certificate revocation lists")
    commands = crl.add_subparsers(dest="crl_command", required=True)
    do_import = commands.add_parser("import", help="import a CRL of the pinned card PKI")
    settings_flags(do_import)
    do_import.add_argument("file", type=Path, metavar="FILE", help="the CRL (DER or PEM)")
    listing = commands.add_parser("list", help="the CRL in force for each CA")
    settings_flags(listing)
    demo = commands.add_parser("demo-write", help="DEMO ONLY: a CRL of the demo issuing CA")
    settings_flags(demo)
    demo.add_argument("out", type=Path, metavar="OUT", help="where to write the PEM")
    demo.add_argument("--revoke", type=int, nargs="*", default=[], metavar="M", help="demo cards")
    demo.add_argument("--crl-number", type=int, default=None, help="default: unix time")
    demo.add_argument(
        "--openssl-id",
        action="store_true",
        help="sign under the empty SM2 id, so that `openssl crl -CAfile` (3.0) verifies it",
    )


def run_crl_command(args: argparse.Namespace, settings: Settings) -> int:
    from gateway.db import make_engine
    from gateway.demo import demo_world_of

    engine = make_engine(settings)
    try:
        # "auto" decided by the database's marker, as `serve` decides it (loading nothing):
        # the demo PKI is trusted exactly where the running gateway trusts it.
        settings = demo_world_of(engine, settings)
        if args.crl_command == "demo-write":
            return _demo_write(args, settings)
        if args.crl_command == "import":
            return _import(args.file, settings, engine)
        return _list(engine)
    finally:
        engine.dispose()


def _import(path: Path, settings: Settings, engine: Engine) -> int:
    from sqlalchemy.orm import Session

    from gateway.card_auth.revocation import (
        CrlImportRefused,
        import_crl,
        parse_crl_file,
    )
    from gateway.card_auth.service import trust_anchors_from_settings
    from gateway.db import for_writes
    from sscard.certs import MAX_CRL_DER_BYTES

    trust = trust_anchors_from_settings(settings)
    if trust is None:
        print(
            "gateway: refused: no card trust root is configured (card_trust_root_pem, "
            "card_issuing_ca_pems): a CRL cannot be checked; nothing imported",
            file=sys.stderr,
        )
        return 1
    try:
        if path.stat().st_size > 2 * MAX_CRL_DER_BYTES:
            raise CrlImportRefused("CRL_MALFORMED", f"{path} is larger than any CRL accepted")
        data = path.read_bytes()
    except OSError as exc:
        print(f"gateway: cannot read {path}: {exc.strerror}", file=sys.stderr)
        return 1
    except CrlImportRefused as exc:
        return _refused(exc)
    try:
        crl = parse_crl_file(data)
        now = dt.datetime.fromtimestamp(int(time.time()), dt.UTC)
        with Session(for_writes(engine)) as session, session.begin():
            done = import_crl(
                session,
                crl,
                trust,
                now=now,
                max_entries=settings.card_crl_max_entries,
                actor=_cli_actor(),
            )
    except CrlImportRefused as exc:
        return _refused(exc)
    _print_imported(done, settings)
    return 0


def _cli_actor() -> str:
    """``cli:<login>`` for the audit row: who ran the command on this host."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"[:64]
    except (KeyError, OSError):  # no passwd entry and no LOGNAME (a bare container)
        return "cli:unknown"


def _refused(exc: CrlImportRefused) -> int:
    print(f"gateway: CRL refused ({exc.code}): {exc.message}. Nothing changed.", file=sys.stderr)
    return 1


def _print_imported(done: CrlImported, settings: Settings) -> None:
    if not done.changed:
        print(f"CRL number {done.crl_number} of {done.issuer} is already in force; nothing changed")
        return
    before = "none" if done.previous_number is None else str(done.previous_number)
    print(
        f"imported CRL number {done.crl_number} of {done.issuer} (before: {before}): "
        f"{done.entries} revoked certificate(s), valid {done.this_update.isoformat()} to "
        f"{done.next_update.isoformat()}; every worker refuses them within "
        f"{settings.card_crl_refresh_s:g} s"
    )


def _list(engine: Engine) -> int:
    from sqlalchemy.orm import Session

    from gateway.card_auth.revocation import imported_crls

    with Session(engine) as session:
        lists = imported_crls(session)
    if not lists:
        print("no CRL imported")
    for item in lists:
        print(
            f"issuer sm3:{item.issuer_sm3[:16]}  number {item.crl_number}  "
            f"{item.this_update.isoformat()} .. {item.next_update.isoformat()}  "
            f"{item.entries} entries  imported {item.imported_at.isoformat()}"
        )
    return 0


def _demo_write(args: argparse.Namespace, settings: Settings) -> int:
    from sscard import demo as sscard_demo
    from sscard.certs import RevocationReason, RevokedCertificate, build_crl
    from sscard.crypto import DEFAULT_SIGNER_ID

    if not settings.should_load_demo_world():
        print("gateway: demo-write needs the demo world (demo_world on/auto)", file=sys.stderr)
        return 2
    pki = sscard_demo.demo_pki(settings.demo_seed)
    now = dt.datetime.fromtimestamp(int(time.time()), dt.UTC)
    crl = build_crl(
        issuer=pki.issuing,
        issuer_key=pki.issuing_key,
        revoked=[
            RevokedCertificate(m + 1000, now, RevocationReason.KEY_COMPROMISE)
            for m in sorted(set(args.revoke))
        ],
        this_update=now,
        next_update=now + _DEMO_VALIDITY,
        crl_number=int(now.timestamp()) if args.crl_number is None else args.crl_number,
        signer_id=b"" if args.openssl_id else DEFAULT_SIGNER_ID,
    )
    args.out.write_bytes(crl.to_pem())
    print(f"wrote {args.out}: CRL number {crl.crl_number}, {len(crl.revoked)} entries (DEMO ONLY)")
    return 0
