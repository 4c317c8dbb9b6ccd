"""The books check's arithmetic: what Locust saw confirmed against the gateway's listings and
3201, to the fen; replays counted once, cancels as 3201 counts them, a settlement applied twice
or lost found, and the tally surviving its trip from worker to master."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from locust_testkit import settlement

from loadtest.locust._books import (
    BEIJING,
    Figures,
    GatewayRow,
    Seen,
    Tally,
    compare,
    judge_totals,
    summarise,
)

CUTOFF = dt.datetime(2026, 12, 7, 0, 30, tzinfo=dt.UTC)
DAY = dt.date(2026, 12, 7)
H1, H2 = "H31000000001", "H31000000002"


def seen(setl_id: str, **kw: Any) -> Seen:
    return Seen.from_answer(settlement(setl_id, **kw), kw.get("route_kind", "local"))


def local_row(setl_id: str, **kw: Any) -> GatewayRow:
    return GatewayRow.local(settlement(setl_id, **kw))


def remote_row(setl_id: str | None, status: str, **kw: Any) -> GatewayRow | None:
    item = settlement(setl_id or "x", **kw)
    item.update(
        setl_id=setl_id, status=status, created_at=kw.get("setl_time", "2026-12-07T01:00:00Z")
    )
    return GatewayRow.remote(item)


def tally_of(*settled: Seen, cancelled: tuple[str, ...] = ()) -> Tally:
    tally = Tally()
    for s in settled:
        tally.settle(s)
    for c in cancelled:
        tally.cancel(c)
    return tally


# -- what Locust saw ---------------------------------------------------------------------------


def test_a_settle_answer_is_read_to_the_fen_on_its_beijing_day() -> None:
    s = Seen.from_answer(settlement("S9", setl_time="2026-12-06T16:30:00.5Z"), "local")
    assert s.day == dt.date(2026, 12, 7)  # 00:30 in Beijing
    assert (s.medfee_sumamt, s.fund_pay_sumamt, s.acct_pay, s.psn_cash_pay) == (8500, 0, 7900, 600)
    assert s.clr_type == "11"
    assert Seen.from_answer(settlement("S8", visit_type="inpatient"), "local").clr_type == "21"
    assert Seen.from_answer(settlement("S7", visit_type="pharmacy"), "local").clr_type == "41"


@pytest.mark.parametrize(
    "change",
    [
        {"medfee_sumamt": 8501},  # not fund + account + cash
        {"acct_pay": 7900.0},  # not an int
        {"psn_cash_pay": True},  # a bool is not fen
        {"fund_pay_sumamt": -1},
        {"setl_id": ""},
        {"setl_time": "2026-12-07T01:00:00"},  # no zone
        {"visit_type": "dental"},
    ],
)
def test_an_answer_that_is_not_a_settlement_is_refused(change: dict[str, Any]) -> None:
    body = settlement("S1")
    body.update(change)
    with pytest.raises(ValueError, match=r"fen|missing|zone|visit type|medfee"):
        Seen.from_answer(body, "local")


def test_a_replay_is_counted_once_and_a_different_replay_is_a_conflict() -> None:
    tally = Tally()
    assert tally.settle(seen("S1"))
    assert not tally.settle(seen("S1"))
    assert len(tally.settled) == 1
    assert not tally.conflicts
    assert not tally.settle(seen("S1", amounts=(9_000, 0, 8_400, 600)))
    assert tally.conflicts == ["S1: answered twice with different figures"]


def test_the_tally_survives_the_trip_from_worker_to_master_in_chunks() -> None:
    worker = tally_of(*(seen(f"S{i}") for i in range(5)), cancelled=("S3",))
    worker.touched |= {H1, H2}
    worker.in_doubt = 2
    worker.conflicts.append("S0: answered twice with different figures")
    chunks = list(worker.chunks(size=2))
    assert [len(c["settled"]) for c in chunks] == [2, 2, 1, 0]
    assert [c["last"] for c in chunks] == [False, False, False, True]
    master = Tally()
    master.merge(tally_of(seen("M1", institution=H2)))
    for chunk in chunks:
        master.absorb(chunk)
    assert set(master.settled) == {"M1", "S0", "S1", "S2", "S3", "S4"}
    assert master.settled["S2"] == worker.settled["S2"]
    assert master.cancelled == {"S3"}
    assert master.touched == {H1, H2}
    assert master.in_doubt == 2
    assert master.conflicts == worker.conflicts
    assert master.institutions() == {H1, H2}


# -- the comparison ----------------------------------------------------------------------------


def test_books_that_agree_pass_and_each_statement_counts_the_valid_settlements() -> None:
    tally = tally_of(
        seen("S1"),
        seen("S2", amounts=(1_000, 500, 300, 200)),
        seen("S3", visit_type="inpatient", amounts=(100_000, 80_000, 0, 20_000)),
        seen("S4"),
        cancelled=("S4",),
    )
    rows = [
        local_row("S1"),
        local_row("S2", amounts=(1_000, 500, 300, 200)),
        local_row("S3", visit_type="inpatient", amounts=(100_000, 80_000, 0, 20_000)),
        local_row("S4", status="cancelled"),
    ]
    out = compare(tally, rows, CUTOFF)
    assert out.problems == []
    assert out.problem_count == 0
    assert out.statements == {
        (H1, DAY, "11"): Figures(2, 9_500, 500, 8_200, 800),  # S4 cancelled: not on it
        (H1, DAY, "21"): Figures(1, 100_000, 80_000, 0, 20_000),
    }


def test_settlements_from_before_the_run_join_the_statement_but_are_not_problems() -> None:
    tally = tally_of(seen("S1"))
    earlier = local_row("S0", setl_time="2026-12-07T00:10:00Z", amounts=(100, 0, 0, 100))
    earlier_cancelled = local_row("S00", setl_time="2026-12-07T00:11:00Z", status="cancelled")
    out = compare(tally, [local_row("S1"), earlier, earlier_cancelled], CUTOFF)
    assert out.problem_count == 0
    assert out.statements == {(H1, DAY, "11"): Figures(2, 8_600, 0, 7_900, 700)}


def test_a_settlement_booked_during_the_run_that_locust_never_saw_is_found() -> None:
    """A retry applied twice leaves a second settlement nobody was told about."""
    tally = tally_of(seen("S1"))
    twice = local_row("S1bis", setl_time="2026-12-07T01:00:01Z")
    out = compare(tally, [local_row("S1"), twice], CUTOFF)
    assert out.doubled == 1
    assert "S1bis" in out.problems[0]
    assert "never confirmed" in out.problems[0]


def test_a_settlement_where_locust_only_tried_is_found_too() -> None:
    """An institution where every settle got no answer is still read."""
    tally = Tally()
    tally.touched.add(H2)
    out = compare(tally, [local_row("S5", institution=H2)], CUTOFF)
    assert out.doubled == 1


def test_other_institutions_are_not_judged() -> None:
    out = compare(tally_of(seen("S1")), [local_row("S1"), local_row("X", institution=H2)], CUTOFF)
    assert out.problem_count == 0


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        (None, "not booked"),
        (local_row("S1", amounts=(8_500, 100, 7_800, 600)), "booked (8500, 100, 7800, 600)"),
        (local_row("S1", institution=H2), f"booked at {H2}"),
        (local_row("S1", status="cancelled"), "cancelled at the gateway, standing"),
    ],
)
def test_disagreements_about_a_settlement_locust_saw(row: GatewayRow | None, expected: str) -> None:
    out = compare(tally_of(seen("S1")), [] if row is None else [row], CUTOFF)
    assert out.problem_count == 1
    assert expected in out.problems[0]


def test_a_cancel_locust_saw_that_the_gateway_did_not_book() -> None:
    out = compare(tally_of(seen("S1"), cancelled=("S1",)), [local_row("S1")], CUTOFF)
    assert "settled at the gateway, cancelled for Locust" in out.problems[0]


def test_remote_settlements_are_matched_by_the_hubs_id_and_make_no_3201_statement() -> None:
    hub = {"route": "cross_province", "amounts": (8_500, 4_000, 3_900, 600)}
    tally = Tally()
    tally.settle(Seen.from_answer(settlement("SETL1", **hub), "remote"))
    tally.settle(Seen.from_answer(settlement("SETL2", **hub), "remote"))
    tally.cancel("SETL2")
    rows = [
        remote_row("SETL1", "confirmed", amounts=(8_500, 4_000, 3_900, 600)),
        remote_row("SETL2", "cancelled", amounts=(8_500, 4_000, 3_900, 600)),
    ]
    assert remote_row(None, "failed") is None  # moved no money
    assert remote_row("SETL3", "reversed") is None
    assert remote_row("SETL4", "unknown") is None
    out = compare(tally, [r for r in rows if r is not None], CUTOFF)
    assert out.problem_count == 0
    assert out.statements == {}


def test_a_local_row_never_stands_for_a_remote_settlement() -> None:
    tally = Tally()
    tally.settle(Seen.from_answer(settlement("SETL1", route="cross_province"), "remote"))
    out = compare(tally, [local_row("SETL1")], CUTOFF)
    assert out.missing == 1


def test_in_doubt_settles_and_replay_conflicts_fail_the_check() -> None:
    tally = tally_of(seen("S1"))
    tally.in_doubt = 1
    tally.settle(seen("S1", amounts=(1, 0, 0, 1)))
    out = compare(tally, [local_row("S1")], CUTOFF)
    assert out.problem_count == 2
    assert any("never learned" in p for p in out.problems)
    assert any("replay conflict" in p for p in out.problems)


def test_problems_are_listed_up_to_a_bound_and_counted_in_full() -> None:
    tally = tally_of(*(seen(f"S{i}") for i in range(50)))
    out = compare(tally, [], CUTOFF)
    assert out.problem_count == 50
    assert len(out.problems) == 20


def test_the_cutoff_must_be_an_instant() -> None:
    with pytest.raises(ValueError, match="aware"):
        compare(Tally(), [], dt.datetime(2026, 12, 7))


# -- 3201 and the report -----------------------------------------------------------------------


def test_3201_answers_are_judged_statement_by_statement() -> None:
    tally = tally_of(seen("S1"), seen("S2", institution=H2))
    out = compare(tally, [local_row("S1"), local_row("S2", institution=H2)], CUTOFF)
    one = Figures(1, 8_500, 0, 7_900, 600)
    matched = judge_totals(out, {(H1, DAY, "11"): ("0", one), (H2, DAY, "11"): ("1", one)})
    assert matched == 1
    assert out.problem_count == 1
    assert "stmt_rslt 1" in out.problems[0]
    out2 = compare(tally, [local_row("S1"), local_row("S2", institution=H2)], CUTOFF)
    assert judge_totals(out2, {(H1, DAY, "11"): ("0", Figures(2, 1, 1, 0, 0))}) == 0
    assert out2.problem_count == 2  # H1's figures differ; H2 got no answer


def test_the_report_line_says_passed_or_failed_with_the_figures() -> None:
    tally = tally_of(seen("S1"), seen("S2"), cancelled=("S2",))
    out = compare(tally, [local_row("S1"), local_row("S2", status="cancelled")], CUTOFF)
    report = summarise(tally, out, matched=1, pages=2)
    assert report.ok
    assert report.line.startswith("SSC books check PASSED: 2 settlements")
    assert "3201 matched 1/1" in report.line
    assert report.figures["valid_medfee_fen"] == 8_500
    assert report.figures["hospital_settlements"] == 2
    assert report.figures["pharmacy_settlements"] == 0
    out.problem("made up")
    failed = summarise(tally, out, matched=0, pages=2)
    assert not failed.ok
    assert failed.line.startswith("SSC books check FAILED: 1 problem(s)")


def test_beijing_is_utc_plus_eight() -> None:
    assert dt.datetime(2026, 1, 1, 16, tzinfo=dt.UTC).astimezone(BEIJING).hour == 0
