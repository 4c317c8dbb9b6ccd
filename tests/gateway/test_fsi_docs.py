"""docs/national-interface.md is the door's contract (an HIS is written from it alone): its
§3 table lists exactly the transactions the door offers, and §7 names none of them."""

from __future__ import annotations

import re
from pathlib import Path

from gateway.fsi.door import TRANSACTIONS

DOC = Path(__file__).parents[2] / "docs" / "national-interface.md"


def _section(text: str, number: int) -> str:
    start = text.index(f"\n## {number}. ")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def test_the_transaction_table_lists_exactly_what_the_door_offers() -> None:
    table = _section(DOC.read_text(encoding="utf-8"), 3)
    listed = set(re.findall(r"^\| (\d{4}) \|", table, flags=re.MULTILINE))
    assert listed == set(TRANSACTIONS)


def test_the_not_supported_list_names_no_offered_transaction() -> None:
    unsupported = _section(DOC.read_text(encoding="utf-8"), 7)
    listed = unsupported.split("never a 500:", 1)[1].split(". ", 1)[0]
    named = set(re.findall(r"\b(\d{4})\b", listed))
    assert named
    # 5206 is offered; only a person insured elsewhere is refused it (named so).
    assert named & set(TRANSACTIONS) == {"5206"}
