"""The task mix's one table: its shape, what its weights mean, and that it is what drives the
visits (a draw over many visits follows the weights; --ssc-cover-mix does each kind once)."""

from __future__ import annotations

import ast
import random
from collections import Counter
from pathlib import Path

import pytest
from locust_testkit import SEED, FakeSession

from loadtest.locust import _mix as mix
from loadtest.locust import _run
from loadtest.locust import _visits as visits
from loadtest.locust._http import SignedClient
from loadtest.locust._world import institution_terminal

LOCUSTFILE = Path(mix.__file__).with_name("locustfile.py")


def test_every_row_weighs_every_kind() -> None:
    for key, weights in mix.MIX.items():
        assert len(weights) == len(mix.KINDS), key
        assert all(w >= 0 for w in weights)
        assert sum(weights) > 0


@pytest.mark.parametrize("level", [1, 2, 3])
def test_a_hospital_row_settles_no_pharmacy_purchase(level: int) -> None:
    row = mix.row_for("hospital", level)
    assert row["pharmacy"] == 0
    assert row["outpatient"] > 0


def test_a_pharmacy_settles_purchases_only() -> None:
    row = mix.row_for("pharmacy")
    assert row["outpatient"] == row["inpatient"] == 0
    assert row["pharmacy"] == max(row.values())


def test_shares_are_the_weights_over_their_row_total() -> None:
    row = mix.row_for("hospital", 3)
    shares = mix.shares(row)
    assert sum(shares.values()) == pytest.approx(1.0)
    assert shares["inpatient"] == pytest.approx(row["inpatient"] / sum(row.values()))


def test_bigger_hospitals_admit_more_inpatients() -> None:
    inpatient = [mix.shares(mix.row_for("hospital", lv))["inpatient"] for lv in (1, 2, 3)]
    assert inpatient == sorted(inpatient)


def test_unknown_rows_are_refused() -> None:
    with pytest.raises(KeyError):
        mix.row_for("hospital", 4)
    with pytest.raises(KeyError):
        mix.row_for("clinic")


@pytest.mark.parametrize(
    ("key", "weights", "message"),
    [
        ("hospital-1", (1, 0, 0), "weights for"),
        ("hospital-1", (1, 0, 0, 0, 0, 0, 0, -1), ">= 0"),
        ("pharmacy", (1, 5, 0, 0, 0, 0, 0, 0), "purchases only"),
        ("hospital-2", (1, 5, 0, 0, 0, 0, 0, 0), "does not settle pharmacy"),
    ],
)
def test_check_mix_refuses_a_table_that_cannot_mean_what_it_says(
    monkeypatch: pytest.MonkeyPatch, key: str, weights: tuple[int, ...], message: str
) -> None:
    broken = dict(mix.MIX)
    broken[key] = weights
    monkeypatch.setattr(mix, "MIX", broken)
    with pytest.raises(ValueError, match=message):
        mix.check_mix()


def test_the_locustfile_classes_take_their_weights_from_the_table() -> None:
    """Each user class of locustfile.py reads its weight from USER_CLASS_WEIGHTS under its
    own name (parsed, not imported: importing locust would monkey-patch this process)."""
    tree = ast.parse(LOCUSTFILE.read_text(encoding="utf-8"))
    found = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for stmt in node.body:
                if (
                    isinstance(stmt, ast.Assign)
                    and isinstance(stmt.targets[0], ast.Name)
                    and stmt.targets[0].id == "weight"
                ):
                    assert isinstance(stmt.value, ast.Subscript)
                    found[node.name] = ast.literal_eval(stmt.value.slice)
    assert found == {name: name for name in mix.USER_CLASS_WEIGHTS}


def _counting_visitor(
    monkeypatch: pytest.MonkeyPatch, row: dict[str, int], seed: int
) -> tuple[visits.Visitor, Counter[str]]:
    done: Counter[str] = Counter()
    fakes = {kind: (lambda v, k=kind: done.update([k])) for kind in mix.KINDS}
    monkeypatch.setattr(visits, "VISITS", fakes)
    run = _run.begin(SEED)
    client = SignedClient(FakeSession(lambda sent: (500, {})), institution_terminal(SEED, 0))
    return visits.Visitor(client, run, random.Random(seed), row), done


@pytest.mark.parametrize(("kind", "level"), [("hospital", 3), ("hospital", 1), ("pharmacy", None)])
def test_visits_are_drawn_by_the_tables_weights(
    monkeypatch: pytest.MonkeyPatch, kind: str, level: int | None
) -> None:
    row = dict(mix.row_for(kind, level))
    visitor, done = _counting_visitor(monkeypatch, row, seed=7)
    draws = 20_000
    for _ in range(draws):
        visits.next_visit(visitor)
    for name, share in mix.shares(row).items():
        # 20,000 draws: 4 standard deviations of a binomial share are at most 0.0142.
        assert done[name] / draws == pytest.approx(share, abs=0.0142), name
    assert visitor.run.inflight == 0


def test_cover_mix_does_every_kind_of_the_row_once_first(monkeypatch: pytest.MonkeyPatch) -> None:
    row = dict(mix.row_for("pharmacy"))
    visitor, done = _counting_visitor(monkeypatch, row, seed=1)
    visitor.cover = [k for k, w in row.items() if w > 0]
    for _ in range(len(visitor.cover)):
        visits.next_visit(visitor)
    assert set(done) == {k for k, w in row.items() if w > 0}
    assert all(count == 1 for count in done.values())


def test_no_visit_starts_once_the_run_is_closing(monkeypatch: pytest.MonkeyPatch) -> None:
    visitor, done = _counting_visitor(monkeypatch, dict(mix.row_for("hospital", 2)), seed=3)
    visitor.run.closing = True
    visits.next_visit(visitor)
    assert not done


def test_refusals_name_codes_the_gateway_has() -> None:
    from gateway.errors import ErrorCode

    assert {code for _, code in mix.REFUSALS.values()} <= {c.value for c in ErrorCode}
