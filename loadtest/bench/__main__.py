"""``python -m loadtest.bench <name> [--json] [--seconds S] [bench options]``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from loadtest.bench import auth, crypto, demo, issuance, settle, visit

Runner = Callable[[argparse.Namespace], dict[str, Any]]
AddArguments = Callable[[argparse.ArgumentParser], None]


def _no_arguments(_parser: argparse.ArgumentParser) -> None:
    return None


BENCHES: dict[str, tuple[str, Runner, AddArguments]] = {
    "crypto": ("SM2 sign/verify per backend beside `openssl speed sm2`", crypto.run, _no_arguments),
    "auth": (
        "full card authentications over HTTP against `python -m gateway serve`",
        auth.run,
        auth.add_arguments,
    ),
    "settle": (
        "local settlements (pre-settle + settle) over HTTP against `python -m gateway serve`",
        settle.run,
        settle.add_arguments,
    ),
    "issuance": (
        "100,000 applications uploaded as employer CSV, batched and every card produced, over "
        "HTTP against `python -m gateway serve` (time, server and bench peak RSS)",
        issuance.run,
        issuance.add_arguments,
    ),
    "visit": (
        "whole visits (challenge, response, eligibility, pre-settle, settle) over HTTP against "
        "`python -m gateway serve`, and their overhead multiple over 5 hello requests + 1 SM2 "
        "verification",
        visit.run,
        visit.add_arguments,
    ),
    "demo": (
        "`python -m gateway serve` on an empty data directory (the demo world loaded) against "
        "a restart on the filled one",
        demo.run,
        demo.add_arguments,
    ),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.bench", description=__doc__)
    sub = parser.add_subparsers(dest="bench", required=True)
    for name, (help_text, _, add_arguments) in BENCHES.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--json", action="store_true", help="also print one JSON object last")
        p.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
        add_arguments(p)
    args = parser.parse_args(argv)
    result = BENCHES[args.bench][1](args)
    if args.json:
        print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
