"""``ssc-terminal`` (``python -m terminal_sdk``): the SDK from a shell.

Commands::

    readers                         list card readers (and whether a card is in each)
    read                            read the card's basic information (masked unless --full)
    auth                            authenticate the card with the gateway
    his-card                        read + authenticate, print what an HIS passes on (/fsi door)
    settle --line CODE:QTY:FEN ...  an outpatient (or --visit-type) visit, printed as a receipt
    cancel SETL_ID --reason TEXT    cancel a settlement in full
    demo --gateway URL              a whole visit as demo terminal N with demo card M

The terminal signs as ``--terminal N`` (demo terminal N of ``--seed``) or as
``--terminal-id ID`` with ``--secret-hex`` (or SSC_TERMINAL_ID / SSC_TERMINAL_SECRET).
``--demo-card M`` puts demo card M into the reader: in memory, or through pcscd and vpcd with
``--reader pcsc``.

Personal data (citizen id, name, card number, psn_no) is printed masked (sscard.masking);
only ``read --full`` prints the card's whole record, for the HIS that asked for it.

Exit codes: 0 done; 1 failed (the message says why and what to do); 2 usage; 3 the gateway
does not offer settlement (yet); 4 the settlement's outcome is unknown (rerun with the
printed --idempotency-key to learn it; never settle it again as new).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import getpass
import json
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Final, TextIO

from sscard import demo as sd
from sscard.masking import mask_psn_no
from sscard.terminal_auth import (
    DEMO_HOSPITAL_COUNT,
    DEMO_TERMINAL_COUNT,
    DEMO_TERMINALS_PER_INSTITUTION,
    demo_terminal,
)
from sscard.vpcd import VirtualCard
from terminal_sdk.card import SocialSecurityCard
from terminal_sdk.client import (
    CardSession,
    Claim,
    FeeLine,
    RetryPolicy,
    new_idempotency_key,
)
from terminal_sdk.errors import TerminalError
from terminal_sdk.problems import (
    GatewayProblem,
    GatewayUnreachable,
    OutcomeUnknown,
    RouteUnavailable,
)
from terminal_sdk.readers.base import Reader
from terminal_sdk.readers.memory import MemoryReader
from terminal_sdk.readers.pcsc import PcscReader
from terminal_sdk.receipt import Receipt, yuan
from terminal_sdk.sync_client import SyncGatewayClient

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_OUTCOME_UNKNOWN",
    "EXIT_SETTLEMENT_UNAVAILABLE",
    "EXIT_USAGE",
    "main",
]

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_SETTLEMENT_UNAVAILABLE: Final = 3
EXIT_OUTCOME_UNKNOWN: Final = 4
_DEFAULT_WAIT_S: Final = 10.0


class _Usage(Exception):
    """A usage error found after parsing (exit 2)."""


class _SettlementUnavailable(Exception):
    """The gateway has no settlement routes (exit 3)."""


@dataclass
class _Out:
    out: TextIO
    err: TextIO

    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def warn(self, text: str) -> None:
        print(f"warning: {text}", file=self.err, flush=True)


# -- arguments ------------------------------------------------------------------------------------


def _card_options(parser: argparse.ArgumentParser, *, default_reader: str = "pcsc") -> None:
    group = parser.add_argument_group("card")
    group.add_argument(
        "--reader",
        choices=("pcsc", "memory"),
        default=default_reader,
        help=f"PC/SC readers, or an in-memory reader for demo cards (default {default_reader})",
    )
    group.add_argument("--reader-name", metavar="NAME", help="use this reader (default: first)")
    group.add_argument(
        "--demo-card", type=int, metavar="M", help="DEMO: put demo card M into the reader"
    )
    group.add_argument(
        "--wait",
        type=float,
        default=_DEFAULT_WAIT_S,
        metavar="S",
        help="seconds to wait for a card",
    )
    group.add_argument("--seed", default=sd.DEFAULT_DEMO_SEED, help="DEMO: the demo world's seed")


def _gateway_options(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    group = parser.add_argument_group("gateway")
    group.add_argument("--gateway", required=required, metavar="URL", help="the gateway's URL")
    group.add_argument(
        "--terminal", type=int, metavar="N", help="DEMO: sign as demo terminal N of --seed"
    )
    group.add_argument(
        "--terminal-id", metavar="ID", help="this terminal's id (or SSC_TERMINAL_ID)"
    )
    group.add_argument(
        "--secret-hex", metavar="HEX", help="this terminal's secret, hex (or SSC_TERMINAL_SECRET)"
    )
    group.add_argument("--timeout", type=float, default=10.0, metavar="S", help="per request")


def _pin_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--pin", help="the cardholder's PIN (prefer --ask-pin outside demos)")
    group.add_argument("--ask-pin", action="store_true", help="ask for the PIN without echo")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ssc-terminal",
        description="Shanghai social security card terminal: read, authenticate, settle.",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--english-only", action="store_true", help="no Chinese in messages")
    commands = parser.add_subparsers(dest="command", required=True)

    readers = commands.add_parser("readers", parents=[common], help="list card readers")
    readers.add_argument("--reader", choices=("pcsc", "memory"), default="pcsc")

    read = commands.add_parser("read", parents=[common], help="read the card's basic information")
    _card_options(read)
    read.add_argument("--full", action="store_true", help="print iReadCardBas (personal data)")

    auth = commands.add_parser(
        "auth", parents=[common], help="authenticate the card with the gateway"
    )
    _card_options(auth)
    _gateway_options(auth)
    _pin_options(auth)

    his_card = commands.add_parser(
        "his-card",
        parents=[common],
        help="read and authenticate the card; print card_no|card_sn|name|citizen_id|expiry|"
        "dev_no| for the HIS (docs/national-interface.md §4)",
    )
    _card_options(his_card)
    _gateway_options(his_card)
    _pin_options(his_card)
    his_card.add_argument("--json", action="store_true", help="one JSON object instead")

    settle = commands.add_parser(
        "settle", parents=[common], help="settle a visit for the card in the reader"
    )
    _card_options(settle)
    _gateway_options(settle)
    _pin_options(settle)
    settle.add_argument(
        "--line",
        action="append",
        required=True,
        metavar="CODE:QTY:FEN",
        help="a fee line: catalogue code, quantity, unit price in fen (repeat)",
    )
    settle.add_argument(
        "--visit-type",
        choices=("outpatient", "emergency", "pharmacy"),
        default="outpatient",
    )
    settle.add_argument("--date", help="visit date YYYY-MM-DD (default today)")
    settle.add_argument(
        "--idempotency-key", help="resend a settlement whose outcome was unknown (same lines)"
    )

    cancel = commands.add_parser("cancel", parents=[common], help="cancel a settlement in full")
    _gateway_options(cancel)
    cancel.add_argument("setl_id")
    cancel.add_argument("--reason", required=True)
    cancel.add_argument("--idempotency-key", help="resend a cancel whose outcome was unknown")
    cancel.add_argument("--seed", default=sd.DEFAULT_DEMO_SEED, help="DEMO: the demo seed")

    demo = commands.add_parser(
        "demo", parents=[common], help="DEMO: a whole visit with a demo card"
    )
    demo.add_argument("--gateway", required=True, metavar="URL")
    demo.add_argument("--reader", choices=("memory", "pcsc"), default="memory")
    demo.add_argument("--terminal", type=int, default=0, metavar="N", help="demo terminal N")
    demo.add_argument("--card", type=int, default=0, metavar="M", help="demo card M")
    demo.add_argument("--seed", default=sd.DEFAULT_DEMO_SEED)
    demo.add_argument("--pin", default=sd.DEMO_PIN, help="the PIN to enter (demo cards: 123456)")
    demo.add_argument("--timeout", type=float, default=10.0, metavar="S")
    demo.add_argument("--date", help="visit date YYYY-MM-DD (default today)")
    return parser


# -- the pieces -----------------------------------------------------------------------------------


def _terminal_credentials(args: argparse.Namespace) -> tuple[str, bytes]:
    if args.terminal is not None:
        if not 0 <= args.terminal < DEMO_TERMINAL_COUNT:
            raise _Usage(f"--terminal must be in 0..{DEMO_TERMINAL_COUNT - 1}")
        return demo_terminal(args.seed, args.terminal)
    terminal_id = getattr(args, "terminal_id", None) or os.environ.get("SSC_TERMINAL_ID")
    secret_hex = getattr(args, "secret_hex", None) or os.environ.get("SSC_TERMINAL_SECRET")
    if not terminal_id or not secret_hex:
        raise _Usage("say who signs: --terminal N (demo), or --terminal-id and --secret-hex")
    try:
        return terminal_id, bytes.fromhex(secret_hex)
    except ValueError:
        raise _Usage("--secret-hex must be hex digits") from None


def _client(args: argparse.Namespace, url: str) -> SyncGatewayClient:
    terminal_id, secret = _terminal_credentials(args)
    try:
        return SyncGatewayClient(
            url, terminal_id, secret, timeout_s=args.timeout, retry=RetryPolicy(max_attempts=3)
        )
    except ValueError as exc:
        raise _Usage(str(exc)) from None


def _demo_card(args: argparse.Namespace, number: int) -> VirtualCard:
    if not 0 <= number < sd.DEMO_CARD_COUNT:
        raise _Usage(f"demo card must be in 0..{sd.DEMO_CARD_COUNT - 1}")
    return demo_software_card_for(args.seed, number)


def demo_software_card_for(seed: str, number: int) -> VirtualCard:
    from terminal_sdk.demo import demo_software_card

    return demo_software_card(seed, number)


@contextlib.contextmanager
def _open_card(
    args: argparse.Namespace, out: _Out, demo_card: VirtualCard | None
) -> Iterator[SocialSecurityCard]:
    """Connect the card: a real reader, or a demo card in memory or served through pcscd."""
    reader: Reader
    name: str | None = args.reader_name if hasattr(args, "reader_name") else None
    with contextlib.ExitStack() as stack:
        if args.reader == "pcsc" and demo_card is not None:
            from terminal_sdk.demo import PcscUnavailable, serve_through_pcscd

            try:
                name, started = stack.enter_context(serve_through_pcscd(demo_card))
            except PcscUnavailable as exc:
                out.warn(
                    f"PC/SC is not usable here ({exc}). FALLING BACK to the in-memory reader: "
                    "the demo card is NOT going through pcscd."
                )
                args.reader = "memory"
                name = None
            else:
                note = " (pcscd started by this command)" if started else ""
                out.say(f"reader: {name} via pcscd and vpcd{note}")
        if args.reader == "memory":
            memory = MemoryReader()
            stack.callback(memory.close)
            if demo_card is not None:
                memory.insert(demo_card)
                out.say("reader: in-memory reader with a software demo card")
            reader = memory
        else:
            pcsc = PcscReader()
            stack.callback(pcsc.close)
            reader = pcsc
        info = reader.wait_for_card(
            timeout_s=args.wait if hasattr(args, "wait") else 10.0, reader=name
        )
        yield SocialSecurityCard.connect(reader, info.reader)


def _pin(args: argparse.Namespace) -> str | None:
    if getattr(args, "ask_pin", False):
        return getpass.getpass("PIN: ")
    pin: str | None = getattr(args, "pin", None)
    return pin


def _lines(specs: Sequence[str]) -> tuple[FeeLine, ...]:
    lines = []
    for spec in specs:
        parts = spec.split(":")
        if len(parts) != 3 or not all(p.isascii() and p.isdigit() for p in parts[1:]):
            raise _Usage(f"--line must be CODE:QUANTITY:UNIT_PRICE_FEN, not {spec!r}")
        lines.append(FeeLine(parts[0], int(parts[1]), int(parts[2])))
    return tuple(lines)


def _authenticate(
    client: SyncGatewayClient, card: SocialSecurityCard, pin: str | None, out: _Out
) -> CardSession:
    if pin is not None:
        card.verify_pin(pin)
        out.say("PIN: verified by the card")
    session = client.authenticate_card(card)
    out.say(
        f"card authenticated: card {session.card_sn} (generation {session.generation}), "
        f"session valid {session.expires_in_s} s"
    )
    return session


def _print_receipt(receipt: Receipt, out: _Out, *, chinese: bool) -> None:
    out.say(receipt.format(chinese=chinese))


# -- commands -------------------------------------------------------------------------------------


def _cmd_readers(args: argparse.Namespace, out: _Out) -> int:
    reader: Reader = MemoryReader() if args.reader == "memory" else PcscReader()
    try:
        found = reader.list_readers()
    finally:
        reader.close()
    if not found:
        out.say("no card reader found")
        return EXIT_FAILED
    for info in found:
        card = f"card ATR {info.atr.hex().upper()}" if info.atr is not None else "no card"
        out.say(f"{info.name}  [{info.interface}]  {card}")
    return EXIT_OK


def _cmd_read(args: argparse.Namespace, out: _Out) -> int:
    demo_card = None if args.demo_card is None else _demo_card(args, args.demo_card)
    with _open_card(args, out, demo_card) as card:
        generation = card.detect_generation()
        info = card.read_basic_info()
        out.say(f"generation {generation.generation} (spec {generation.spec_version})")
        out.say(info.to_ireadcardbas() if args.full else repr(info))
    return EXIT_OK


def _cmd_auth(args: argparse.Namespace, out: _Out) -> int:
    demo_card = None if args.demo_card is None else _demo_card(args, args.demo_card)
    with _client(args, args.gateway) as client, _open_card(args, out, demo_card) as card:
        _authenticate(client, card, _pin(args), out)
    return EXIT_OK


def _cmd_his_card(args: argparse.Namespace, out: _Out) -> int:
    from terminal_sdk.his_card import read_his_card

    demo_card = None if args.demo_card is None else _demo_card(args, args.demo_card)
    status = _Out(out.err, out.err)  # stdout carries the one line (or object) the HIS reads
    with _client(args, args.gateway) as client, _open_card(args, status, demo_card) as card:
        read = read_his_card(client, card, pin=_pin(args))
    out.say(json.dumps(read.to_json(), ensure_ascii=False) if args.json else read.to_line())
    return EXIT_OK


def _cmd_settle(args: argparse.Namespace, out: _Out) -> int:
    lines = _lines(args.line)
    demo_card = None if args.demo_card is None else _demo_card(args, args.demo_card)
    chinese = not args.english_only
    with _client(args, args.gateway) as client, _open_card(args, out, demo_card) as card:
        visit = client.outpatient_visit(
            card,
            lines,
            pin=_pin(args),
            visit_type=args.visit_type,
            visit_date=args.date,
            idempotency_key=args.idempotency_key,
        )
        out.say(f"idempotency key: {visit.idempotency_key}")
        _print_receipt(visit.receipt, out, chinese=chinese)
    return EXIT_OK


def _cmd_cancel(args: argparse.Namespace, out: _Out) -> int:
    with _client(args, args.gateway) as client:
        receipt = client.cancel(args.setl_id, args.reason, idempotency_key=args.idempotency_key)
    out.say(f"cancelled: {args.setl_id}")
    if receipt is not None:
        _print_receipt(receipt, out, chinese=not args.english_only)
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace, out: _Out) -> int:
    demo = sd.demo_card(args.seed, args.card) if 0 <= args.card < sd.DEMO_CARD_COUNT else None
    if demo is None:
        raise _Usage(f"--card must be in 0..{sd.DEMO_CARD_COUNT - 1}")
    args.reader_name, args.wait = None, _DEFAULT_WAIT_S
    with _client(args, args.gateway) as client:
        out.say(
            f"DEMO: terminal {client.terminal_id} (demo terminal {args.terminal}), demo card "
            f"{args.card} (generation {demo.generation}, registry state {demo.state}), "
            f"seed {args.seed!r}"
        )
        from terminal_sdk.demo import DEMO_LINES, DEMO_PHARMACY_LINES

        # Demo terminals 0..799 belong to hospitals, the rest to pharmacies (sscard.terminal_auth),
        # and a pharmacy settles purchases, not outpatient visits.
        pharmacy = args.terminal >= DEMO_HOSPITAL_COUNT * DEMO_TERMINALS_PER_INSTITUTION
        visit_type, lines = (
            ("pharmacy", DEMO_PHARMACY_LINES) if pharmacy else ("outpatient", DEMO_LINES)
        )

        with _open_card(args, out, _demo_card(args, args.card)) as card:
            out.say(f"card: {card.read_basic_info()!r}")
            session = _authenticate(client, card, args.pin, out)
            try:
                eligibility = client.eligibility(session)
            except RouteUnavailable as exc:
                raise _SettlementUnavailable(
                    "the card is authenticated, but this gateway does not offer settlement yet "
                    f"(POST /v1/eligibility answered {exc.status} {exc.code})"
                ) from exc
            balance = _balance(eligibility.raw)
            out.say(
                f"eligibility: psn_no {mask_psn_no(eligibility.get('psn_no'))}, "
                f"benefit {eligibility.get('benefit_category')}"
                + (f", account balance ¥{yuan(balance)}" if balance is not None else "")
            )
            claim = Claim(visit_type, args.date or dt.date.today().isoformat(), lines)
            estimate = client.pre_settle(session, claim)
            out.say(
                f"estimate: total ¥{yuan(estimate.medfee_sumamt)}, patient pays "
                f"¥{yuan(estimate.psn_cash_pay)} in cash"
            )
            # As flows.outpatient_visit does: the money moves only with the card still there.
            card.check_present()
            key = new_idempotency_key()
            out.say(f"settling (idempotency key {key}) ...")
            receipt = client.settle(session, claim, idempotency_key=key)
        _print_receipt(receipt, out, chinese=not args.english_only)
    return EXIT_OK


def _balance(raw: object) -> int | None:
    if not isinstance(raw, dict):
        return None
    for insurance in raw.get("insuinfo") or ():
        if isinstance(insurance, dict) and isinstance(insurance.get("balc"), int):
            return int(insurance["balc"])
    return None


_COMMANDS: Final = {
    "readers": _cmd_readers,
    "read": _cmd_read,
    "auth": _cmd_auth,
    "his-card": _cmd_his_card,
    "settle": _cmd_settle,
    "cancel": _cmd_cancel,
    "demo": _cmd_demo,
}


def _report(error: TerminalError, out: _Out, *, chinese: bool, gateway: str | None) -> None:
    out.err.write(f"error: {error.message}\n")
    if chinese:
        out.err.write(f"       {error.message_zh}\n")
    facts = [f"code {error.code}"]
    if isinstance(error, GatewayProblem):
        if isinstance(error, GatewayUnreachable) and gateway:
            facts.append(f"gateway {gateway}")
        if error.status is not None:
            facts.append(f"HTTP {error.status}")
        if error.request_id:
            facts.append(f"request id {error.request_id}")
    if error.detail:
        facts.append(error.detail)
    out.err.write(f"       ({'; '.join(facts)})\n")
    out.err.flush()


def main(
    argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    """Run one command; returns the exit code (``ssc-terminal`` exits with it)."""
    out = _Out(stdout or sys.stdout, stderr or sys.stderr)
    args = _parser().parse_args(argv)
    try:
        return _COMMANDS[args.command](args, out)
    except (_Usage, _SettlementUnavailable, TerminalError, KeyboardInterrupt) as exc:
        return _failed(exc, args, out)


def _failed(exc: BaseException, args: argparse.Namespace, out: _Out) -> int:
    chinese = not args.english_only
    gateway = getattr(args, "gateway", None)
    if isinstance(exc, _Usage):
        out.err.write(f"ssc-terminal {args.command}: {exc}\n")
        return EXIT_USAGE
    if isinstance(exc, _SettlementUnavailable):
        out.err.write(f"settlement unavailable: {exc}\n")
        return EXIT_SETTLEMENT_UNAVAILABLE
    if isinstance(exc, KeyboardInterrupt):
        out.err.write("interrupted\n")
        return 130
    assert isinstance(exc, TerminalError)
    _report(exc, out, chinese=chinese, gateway=gateway)
    if isinstance(exc, OutcomeUnknown):
        if exc.pending is not None:
            out.err.write(
                "       The settlement may have gone through. Rerun the same command with "
                f"--idempotency-key {exc.pending.idempotency_key} to learn its outcome.\n"
            )
        return EXIT_OUTCOME_UNKNOWN
    if isinstance(exc, RouteUnavailable):
        return EXIT_SETTLEMENT_UNAVAILABLE
    return EXIT_FAILED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
