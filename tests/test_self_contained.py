"""The repository is self-contained: a stranger's clone needs nothing beside it.

Nothing in the repository may point at a folder outside the clone (the team's briefing folder
beside it, or its design and domain pages), and the section numbers that code comments cite as
"DOMAIN §N" and "DESIGN §N" must exist in the project's own docs/domain.md and
docs/architecture.md.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest
from vectors import SM_VECTORS_PATH, sm_vectors

REPO_ROOT = Path(__file__).resolve().parent.parent

# Folders that are not the project: tools' caches, the virtualenv, the demo's data directory.
NOT_THE_PROJECT = {
    ".git",
    ".venv",
    "var",
    "build",
    "dist",
    "__pycache__",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    ".hypothesis",
    ".import_linter_cache",
    "node_modules",
}

# Spelled in pieces so that this file does not find itself.
OUTSIDE_REFERENCES = (
    ".." + "/shared",
    "/work" + "/shared",
    "SSC_" + "SHARED_DIR",
    "DOMAIN" + ".md",
    "DESIGN" + ".md",
)


def _project_files() -> Iterator[Path]:
    for path in sorted(REPO_ROOT.rglob("*")):
        relative = path.relative_to(REPO_ROOT)
        if any(part in NOT_THE_PROJECT or part.endswith(".egg-info") for part in relative.parts):
            continue
        if path.is_file():
            yield path


@cache
def _project_texts() -> tuple[tuple[str, str], ...]:
    texts = []
    for path in _project_files():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # binary (images, fonts): cannot hold a path reference we would follow
        texts.append((path.relative_to(REPO_ROOT).as_posix(), text))
    return tuple(texts)


def test_the_walk_sees_the_project() -> None:
    names = {name for name, _ in _project_texts()}
    # A walk that found nothing would pass every check below.
    assert {"README.md", "pyproject.toml", "scripts/test", "docs/domain.md"} <= names
    assert "tests/test_self_contained.py" in names
    assert not any(name.startswith(".venv/") for name in names)


@pytest.mark.parametrize("reference", OUTSIDE_REFERENCES)
def test_nothing_points_outside_the_clone(reference: str) -> None:
    found = [
        f"{name}:{number}"
        for name, text in _project_texts()
        for number, line in enumerate(text.splitlines(), start=1)
        if reference in line
    ]
    assert found == [], f"{reference!r} points outside the repository: {found}"


def _sections(doc: str) -> set[str]:
    text = (REPO_ROOT / "docs" / doc).read_text(encoding="utf-8")
    return set(re.findall(r"^## (\d+)\. ", text, flags=re.MULTILINE))


@pytest.mark.parametrize(("alias", "doc"), [("DOMAIN", "domain.md"), ("DESIGN", "architecture.md")])
def test_cited_sections_exist(alias: str, doc: str) -> None:
    sections = _sections(doc)
    cited = {
        (name, number)
        for name, text in _project_texts()
        for number in re.findall(rf"\b{alias} §(\d+)", text)
    }
    assert cited, f"nothing cites {alias} §N: is the pattern still right?"
    missing = sorted((name, number) for name, number in cited if number not in sections)
    assert missing == [], f"cited as {alias} §N but docs/{doc} has no such section: {missing}"


def test_sm_vectors_live_in_the_repository_with_their_sources() -> None:
    assert SM_VECTORS_PATH.is_relative_to(REPO_ROOT)
    about = sm_vectors()["about"]
    for standard in ("GB/T 32918", "GB/T 32905", "GB/T 32907"):
        assert standard in about
    assert {"sm2_curve", "sm2_sign", "sm3", "sm4"} <= sm_vectors().keys()
