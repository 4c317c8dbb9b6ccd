"""Every migration file's revision id is its own: two branches merged with the same id (two
helpers each writing the branch's next number) make Alembic run one of them and skip the other
silently, and a database then claims a head whose tables it lacks."""

from __future__ import annotations

import ast
import collections

from gateway.migrate import MIGRATION_SOURCES


def _revision(source: str) -> str | None:
    for node in ast.parse(source).body:
        if isinstance(node, ast.AnnAssign | ast.Assign):
            targets = [node.target] if isinstance(node, ast.AnnAssign) else node.targets
            names = [t.id for t in targets if isinstance(t, ast.Name)]
            if "revision" in names and isinstance(node.value, ast.Constant):
                return str(node.value.value)
    return None


def test_no_two_migrations_share_a_revision_id() -> None:
    files: dict[str, list[str]] = collections.defaultdict(list)
    for source in MIGRATION_SOURCES:
        for path in sorted(source.versions_dir.glob("*.py")):
            revision = _revision(path.read_text(encoding="utf-8"))
            if revision is not None:
                files[revision].append(f"{source.name}/{path.name}")
    assert files
    assert {rev: names for rev, names in files.items() if len(names) > 1} == {}
