"""docs/integration-guide.md's table "Errors: what to show the clerk" is hand-written (each row's
advice is prose, so it is not generated), and checked here against the SDK itself: every
exception terminal_sdk exports is in the table (a group class that only gathers others may be
named in the section's text instead), every class the table names is one the SDK exports, and
each is in the group its row says. A new exception, a renamed one, or one moved to another
group fails here until the guide says so."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

import terminal_sdk
from terminal_sdk import (
    CardError,
    GatewayInternalError,
    GatewayProblem,
    IntegrationError,
    ReaderError,
    RequestRefused,
)

GUIDE = Path(__file__).parents[2] / "docs" / "integration-guide.md"
SECTION = "## Errors: what to show the clerk"
_CLASS_NAME = re.compile(r"`([A-Z]\w*)`")


def _retryable(cls: type[BaseException]) -> bool | None:
    value = getattr(cls, "retryable", None)
    return value if isinstance(value, bool) else None


# The table's "group" column: what it promises about each class of the row.
GROUPS: dict[str, Callable[[type[BaseException]], bool]] = {
    "reader": lambda cls: issubclass(cls, ReaderError),
    "card": lambda cls: issubclass(cls, CardError),
    "retryable": lambda cls: _retryable(cls) is True,
    "not retryable": lambda cls: _retryable(cls) is False,
    "refused": lambda cls: issubclass(cls, RequestRefused),
    "integration": lambda cls: issubclass(cls, IntegrationError),
    "operator": lambda cls: issubclass(cls, GatewayInternalError),
    "by `.retryable`": lambda cls: cls is GatewayProblem,
}


def _section() -> str:
    text = GUIDE.read_text(encoding="utf-8")
    assert SECTION in text, f"{GUIDE.name} lost its section {SECTION!r}"
    return text.split(SECTION, 1)[1].split("\n## ", 1)[0]


def _rows(section: str) -> list[tuple[list[str], str]]:
    """(class names of the first column, group) of each row of the exceptions table."""
    rows = []
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        rows.append((_CLASS_NAME.findall(cells[0]), cells[1]))
    assert rows, f"no exceptions table under {SECTION!r}"
    return rows


def _prose_lines(section: str) -> list[str]:
    return [line for line in section.splitlines() if not line.startswith("|")]


def _exported_exceptions() -> dict[str, type[BaseException]]:
    found = {}
    for name in terminal_sdk.__all__:
        obj = getattr(terminal_sdk, name)
        if isinstance(obj, type) and issubclass(obj, BaseException):
            found[name] = obj
    return found


def test_every_exported_exception_is_in_the_guides_table() -> None:
    section = _section()
    tabled = {name for names, _ in _rows(section) for name in names}
    prose = set(_CLASS_NAME.findall("\n".join(_prose_lines(section))))
    exported = _exported_exceptions()
    missing = []
    for name, cls in exported.items():
        if name in tabled:
            continue
        gathers = any(other is not cls and issubclass(other, cls) for other in exported.values())
        if not (gathers and name in prose):
            missing.append(name)
    assert missing == [], f"exported by terminal_sdk but not in {GUIDE.name}'s table: {missing}"


def test_every_class_the_table_names_is_an_exported_exception() -> None:
    exported = _exported_exceptions()
    unknown = sorted(
        {name for names, _ in _rows(_section()) for name in names if name not in exported}
    )
    assert unknown == [], f"{GUIDE.name}'s table names what terminal_sdk does not export: {unknown}"


@pytest.mark.parametrize(("names", "group"), _rows(_section()), ids=str)
def test_each_row_is_in_the_group_it_says(names: list[str], group: str) -> None:
    assert group in GROUPS, f"unknown group {group!r} (known: {sorted(GROUPS)})"
    exported = _exported_exceptions()
    wrong = [name for name in names if name in exported and not GROUPS[group](exported[name])]
    assert wrong == [], f"not {group!r}: {wrong}"
