"""``python -m loadtest.bench <name> [--json]``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from loadtest.bench import crypto

BENCHES: dict[str, tuple[str, Callable[[argparse.Namespace], dict[str, Any]]]] = {
    "crypto": ("SM2 sign/verify per backend beside `openssl speed sm2`", crypto.run),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.bench", description=__doc__)
    sub = parser.add_subparsers(dest="bench", required=True)
    for name, (help_text, _) in BENCHES.items():
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--json", action="store_true", help="also print one JSON object last")
        p.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    args = parser.parse_args(argv)
    result = BENCHES[args.bench][1](args)
    if args.json:
        print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
