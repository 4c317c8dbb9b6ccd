"""The ops summary queries on SQLite and (mark ``postgres``) PostgreSQL: local activity by visit
type, cancellations, reconciliation runs, the cross-province tables absent and present (in the
shape gateway.ops.remote assumes), province receivables from the ledger, and the counters."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pytest
from gateway_testkit import OTHER_TERMINAL, SECRETS, Client, FakeClock, Signer
from settlement_api_testkit import (
    OUTPATIENT_LINES,
    PHARMACY_LINES,
    TODAY,
    Till,
    assert_ledger_balanced,
    load_insured_world,
    outpatient,
)
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    insert,
    inspect,
    select,
)
from sqlalchemy.orm import Session

from gateway import metrics
from gateway.ops import activity, remote
from gateway.ops.counters import counters_note, read_counters
from gateway.ops.summary import day_summary, total_row
from settlement.store import (
    InsuredPersonRow,
    LedgerEntry,
    LedgerSide,
    LedgerTransaction,
    ReconciliationRun,
)

DAY = dt.date.fromisoformat(TODAY)
NOW = dt.datetime(2027, 1, 15, 8, tzinfo=dt.UTC)  # the fake clock's T0


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"demo_world": "on"}


@pytest.fixture
def world(engine: Engine) -> Iterator[Engine]:
    load_insured_world(engine)
    yield engine
    assert_ledger_balanced(engine)


@pytest.fixture
async def till(signer: Signer, world: Engine) -> Till:
    till = Till(signer)
    await till.read_card(0)
    return till


@pytest.fixture
async def pharmacy(client: Client, clock: FakeClock, world: Engine) -> Till:
    till = Till(Signer(client, clock, OTHER_TERMINAL, SECRETS[OTHER_TERMINAL]))
    await till.read_card(0)
    return till


def _read(engine: Engine, query: Any, *args: Any) -> Any:
    with Session(engine) as session:
        return query(session, *args)


async def test_local_activity_counts_valid_settlements_by_visit_type(
    till: Till, pharmacy: Till, world: Engine
):
    outs = [await till.settled(outpatient()), await till.settled(outpatient(OUTPATIENT_LINES[:1]))]
    emergency = await till.settled(outpatient(visit_type="emergency"))
    cancelled = await till.settled(outpatient(OUTPATIENT_LINES[:2]))
    response = await till.post(
        f"/v1/settlements/{cancelled['setl_id']}/cancel", {"reason": "x"}, key=till.new_key()
    )
    assert response.status == 200
    drug = await pharmacy.settled(outpatient(PHARMACY_LINES, visit_type="pharmacy"))

    rows = {row.visit_type: row for row in _read(world, activity.local_activity, DAY)}
    assert set(rows) == {"outpatient", "emergency", "pharmacy"}
    out = rows["outpatient"]
    assert out.route == "local"
    assert out.count == 2  # the cancelled one is not valid any more ...
    assert out.cancelled_count == 1  # ... and is counted apart
    for field in ("medfee_sumamt", "fund_pay_sumamt", "acct_pay", "psn_cash_pay"):
        assert getattr(out, field) == sum(s[field] for s in outs)
        assert getattr(rows["emergency"], field) == emergency[field]
        assert getattr(rows["pharmacy"], field) == drug[field]
    assert rows["pharmacy"].count == rows["emergency"].count == 1

    cancels = _read(world, activity.cancellations, DAY)
    assert [(c.route, c.visit_type, c.count, c.medfee_sumamt) for c in cancels] == [
        ("local", "outpatient", 1, cancelled["medfee_sumamt"])
    ]
    # Another day has nothing.
    assert _read(world, activity.local_activity, DAY + dt.timedelta(days=1)) == []
    assert _read(world, activity.cancellations, DAY - dt.timedelta(days=1)) == []


async def test_total_row_adds_up_and_is_not_available_when_a_row_lacks_amounts(
    till: Till, world: Engine
):
    await till.settled(outpatient())
    await till.settled(outpatient(visit_type="emergency"))
    rows = _read(world, activity.local_activity, DAY)
    total = total_row(rows)
    assert total.count == 2
    assert total.medfee_sumamt == sum(row.medfee_sumamt for row in rows)
    lacking = rows[0].model_copy(update={"route": "cross_province", "medfee_sumamt": None})
    assert total_row([*rows, lacking]).medfee_sumamt is None
    assert total_row([]).medfee_sumamt == 0


async def test_reconciliation_counts_runs_and_lists_mismatches(till: Till, world: Engine):
    settled = await till.settled(outpatient())
    totals = {
        "clr_type": "11",
        "stmt_date": TODAY,
        "fixmedins_setl_cnt": 1,
        "medfee_sumamt": settled["medfee_sumamt"],
        "fund_pay_sumamt": settled["fund_pay_sumamt"],
        "acct_pay": settled["acct_pay"],
        "psn_cash_pay": settled["psn_cash_pay"],
    }
    assert (await till.post("/v1/reconciliation/totals", totals)).status == 200
    off = {**totals, "medfee_sumamt": totals["medfee_sumamt"] + 1, "psn_cash_pay": 0}
    off["psn_cash_pay"] = off["medfee_sumamt"] - off["fund_pay_sumamt"] - off["acct_pay"]
    assert (await till.post("/v1/reconciliation/totals", off)).status == 200
    details = {"clr_type": "11", "stmt_date": TODAY, "details": []}
    assert (await till.post("/v1/reconciliation/details", details)).status == 200

    summary = _read(world, activity.reconciliation, DAY)
    assert (summary.runs, summary.matched, summary.mismatched) == (3, 1, 2)
    assert not summary.mismatches_truncated
    by_kind = {m.kind: m for m in summary.mismatches}
    assert by_kind["totals"].institution_medfee_sumamt == settled["medfee_sumamt"] + 1
    assert by_kind["totals"].gateway_medfee_sumamt == settled["medfee_sumamt"]
    assert by_kind["details"].difference_count == 1  # missing at the institution
    # The mismatch shows its differences, as the institution was told them.
    (difference,) = by_kind["details"].differences
    assert difference.setl_id == settled["setl_id"]
    assert difference.reason == "missing_at_institution"
    assert difference.institution_medfee_sumamt is None
    assert difference.gateway_medfee_sumamt == settled["medfee_sumamt"]
    assert _read(world, activity.reconciliation, DAY - dt.timedelta(days=1)).runs == 0


def test_mismatch_listing_is_bounded(world: Engine):
    with Session(world) as session, session.begin():
        session.add_all(
            ReconciliationRun(
                fixmedins_code="H31000099001",
                stmt_date=DAY,
                clr_type="11",
                kind="totals",
                matched=False,
                figures="not json" if n == 0 else json.dumps({"institution": [1]}),
                created_at=NOW,
            )
            for n in range(activity.MAX_MISMATCHES_SHOWN + 3)
        )
    summary = _read(world, activity.reconciliation, DAY)
    assert summary.mismatched == activity.MAX_MISMATCHES_SHOWN + 3
    assert len(summary.mismatches) == activity.MAX_MISMATCHES_SHOWN
    assert summary.mismatches_truncated
    # Odd stored figures do not break the page: the amounts are simply not shown.
    assert summary.mismatches[0].institution_medfee_sumamt is None


def _drop_remote_tables(engine: Engine) -> None:
    """Whatever the migrations made of them: gone (an older schema, or before cross-province
    settlement is deployed)."""
    for name in ("hub_reversals", "remote_settlements"):
        if inspect(engine).has_table(name):
            Table(name, MetaData(), autoload_with=engine).drop(engine)


def test_cross_province_tables_absent_are_not_available(world: Engine):
    _drop_remote_tables(world)
    view = _read(world, remote.remote_view, DAY)
    assert not view.available
    assert view.rows == view.by_status == []
    assert "remote_settlements: not available" in view.notes[0]
    queue, notes = _read(world, remote.reversal_queue)
    assert queue is None
    assert "hub_reversals: not available" in notes[0]
    assert _read(world, remote.province_receivables, DAY) == []


def _remote_tables(engine: Engine, *, with_amounts: bool = True) -> tuple[Table, Table]:
    """The columns gateway.ops.remote reads (module docstring; names as in
    settlement.crossprov.store), made here so the test does not depend on that table's other
    NOT NULL columns."""
    _drop_remote_tables(engine)
    metadata = MetaData()
    amounts = [Column(name, BigInteger) for name in remote._AMOUNTS] if with_amounts else []
    remote_table = Table(
        "remote_settlements",
        metadata,
        Column("msgid", String(40), primary_key=True),
        Column("status", String(20)),
        Column("route", String(20)),
        Column("visit_type", String(20)),
        Column("insuplc_admdvs", String(6)),
        Column("created_at", DateTime(timezone=True)),
        Column("cancelled_at", DateTime(timezone=True)),
        *amounts,
    )
    reversals = Table(
        "hub_reversals",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("msgid", String(40)),
        Column("status", String(20)),
        Column("created_at", DateTime(timezone=True)),
    )
    metadata.create_all(engine)
    return remote_table, reversals


def _remote_row(msgid: str, status: str, when: dt.datetime, medfee: int, **extra: Any) -> dict:
    fund, acct = medfee // 2, medfee // 4
    return {
        "msgid": msgid,
        "status": status,
        "route": "cross_province",
        "visit_type": "outpatient",
        "insuplc_admdvs": "320000",
        "created_at": when,
        "cancelled_at": None,
        "medfee_sumamt": medfee,
        "fund_pay_sumamt": fund,
        "acct_pay": acct,
        "psn_cash_pay": medfee - fund - acct,
        **extra,
    }


def test_cross_province_tables_present_are_read(world: Engine):
    remote_table, reversals = _remote_tables(world)
    yesterday = NOW - dt.timedelta(days=1)
    with Session(world) as session, session.begin():
        session.execute(
            insert(remote_table),
            [
                _remote_row("m1", "confirmed", NOW, 10_001),
                _remote_row("m2", "confirmed", NOW, 20_000),
                _remote_row("m3", "cancelled", NOW, 5_000, cancelled_at=NOW),
                _remote_row("m4", "unknown", NOW, 7_000),
                _remote_row("m5", "intent", NOW, 7_000),
                _remote_row("m6", "confirmed", yesterday, 99_999),
                _remote_row("m7", "cancelled", yesterday, 3_000, cancelled_at=NOW),
            ],
        )
        session.execute(
            insert(reversals),
            [
                {"msgid": "m4", "status": "pending", "created_at": NOW},
                {"msgid": "m0", "status": "pending", "created_at": yesterday},
                {"msgid": "mx", "status": "done", "created_at": yesterday - dt.timedelta(1)},
            ],
        )
    view = _read(world, remote.remote_view, DAY)
    assert view.available
    assert view.notes == []
    [row] = view.rows
    assert (row.route, row.visit_type, row.count, row.cancelled_count) == (
        "cross_province",
        "outpatient",
        2,
        1,
    )
    assert row.medfee_sumamt == 30_001
    assert row.medfee_sumamt == row.fund_pay_sumamt + row.acct_pay + row.psn_cash_pay
    assert {(s.status, s.count) for s in view.by_status} == {
        ("confirmed", 2),
        ("cancelled", 1),
        ("unknown", 1),
        ("intent", 1),
    }
    cancels = _read(world, remote.remote_cancellations, DAY)
    assert [(c.route, c.visit_type, c.count, c.medfee_sumamt) for c in cancels] == [
        ("cross_province", "outpatient", 2, 8_000)
    ]
    queue, notes = _read(world, remote.reversal_queue)
    assert notes == []
    assert queue is not None
    assert queue.depth == 2
    assert queue.oldest_at == yesterday


def test_remote_table_without_amounts_shows_counts_only(world: Engine):
    remote_table, _ = _remote_tables(world, with_amounts=False)
    with Session(world) as session, session.begin():
        row = _remote_row("m1", "confirmed", NOW, 100)
        session.execute(
            insert(remote_table), [{k: v for k, v in row.items() if k not in remote._AMOUNTS}]
        )
    view = _read(world, remote.remote_view, DAY)
    [activity_row] = view.rows
    assert activity_row.count == 1
    assert activity_row.medfee_sumamt is None
    assert any("no fen amount columns" in note for note in view.notes)


def test_province_receivables_from_the_ledger(world: Engine):
    def post(txn_id: str, when: dt.datetime, account: str, fen: int, side: LedgerSide) -> None:
        other = LedgerSide.CREDIT if side is LedgerSide.DEBIT else LedgerSide.DEBIT
        with Session(world) as session, session.begin():
            session.add(LedgerTransaction(txn_id=txn_id, kind=txn_id, posted_at=when))
            session.flush()
            session.add_all(
                [
                    LedgerEntry(txn_id=txn_id, account=account, side=side, amount_fen=fen),
                    LedgerEntry(
                        txn_id=txn_id, account="institution:X:fees", side=other, amount_fen=fen
                    ),
                ]
            )

    post("t1", NOW - dt.timedelta(days=2), "receivable:province:320000", 5_000, LedgerSide.DEBIT)
    post("t2", NOW, "receivable:province:320000", 1_234, LedgerSide.DEBIT)
    post("t3", NOW, "receivable:province:320000", 500, LedgerSide.CREDIT)
    post("t4", NOW, "receivable:province:110000", 7, LedgerSide.DEBIT)
    post("t5", NOW, "person:P1:current_year", 9, LedgerSide.DEBIT)  # never listed
    rows = _read(world, remote.province_receivables, DAY)
    assert [(r.insuplc_admdvs, r.outstanding_fen, r.day_net_fen) for r in rows] == [
        ("110000", 7, 7),
        ("320000", 5_734, 734),
    ]


async def test_day_summary_puts_it_together_without_personal_data(till: Till, world: Engine):
    settled = await till.settled(outpatient())
    exposition = (
        b"# TYPE gateway_rejections counter\n"
        b'gateway_rejections_total{code="CARD_LOST"} 2.0\n'
        b'gateway_rejections_total{code="SIGNATURE_INVALID"} 5.0\n'
        b'gateway_rejections_total{code="NOT_FOUND"} 0.0\n'
        b"# TYPE gateway_requests counter\n"
        b'gateway_requests_total{route="/v1/card-auth/challenge",method="POST",status="200"} 4\n'
        b'gateway_requests_total{route="/v1/card-auth/response",method="POST",status="200"} 3\n'
        b'gateway_requests_total{route="/v1/card-auth/response",method="POST",status="403"} 2\n'
        b'gateway_requests_total{route="/v1/card-auth/response",method="POST",status="401"} 1\n'
        b'gateway_requests_total{route="/v1/echo",method="POST",status="200"} 9\n'
        b"# TYPE gateway_card_authentications counter\n"
        b'gateway_card_authentications_total{generation="3",outcome="authenticated",'
        b'reason="none"} 3\n'
        b'gateway_card_authentications_total{generation="3",outcome="refused",'
        b'reason="CARD_LOST"} 1\n'
        b'gateway_card_authentications_total{generation="2",outcome="refused",'
        b'reason="CARD_LOST"} 1\n'
        b"# TYPE ssc_hub_calls counter\n"
        b'ssc_hub_calls_total{infno="2207",outcome="ok"} 6.0\n'
        b'ssc_hub_calls_total{infno="2207",outcome="unknown"} 1.0\n'
        b'ssc_hub_calls_total{infno="2601",outcome="ok"} 0.0\n'
        b"# TYPE ssc_hub_breaker_state gauge\n"
        b'ssc_hub_breaker_state{pid="11"} 2.0\n'
        b'ssc_hub_breaker_state{pid="12"} 1.0\n'
        b'ssc_hub_breaker_state{pid="13"} 0.0\n'
    )
    counters = read_counters(exposition)
    assert [(r.code, r.count) for r in counters.rejections] == [
        ("SIGNATURE_INVALID", 5),
        ("CARD_LOST", 2),
    ]
    auth = counters.card_auth
    # Two card refusals (CARD_LOST, summed over generations); of the three non-200 answers,
    # the third (the 401) was never judged: an unsigned or malformed answer, counted apart.
    assert (auth.challenges_issued, auth.authenticated, auth.refused) == (4, 3, 2)
    assert [(r.code, r.count) for r in auth.refusals_by_code] == [("CARD_LOST", 2)]
    assert auth.not_judged == 1
    assert [(c.infno, c.outcome, c.count) for c in counters.hub_calls] == [
        ("2207", "ok", 6),
        ("2207", "unknown", 1),
    ]
    assert counters.breaker_open_workers == 1

    with Session(world) as session:
        summary = day_summary(session, day=DAY, now=NOW, counters=counters)
    assert summary.settlements.total.count == 1
    assert summary.settlements.total.medfee_sumamt == settled["medfee_sumamt"]
    # Whatever the migrations hold now: the real queue table is read (empty), or is absent.
    queue = summary.cross_province.reversal_queue
    if inspect(world).has_table("hub_reversals"):
        assert queue is not None
        assert queue.depth == 0
    else:
        assert queue is None
    text = summary.model_dump_json()
    with Session(world) as session:
        person = session.scalars(
            select(InsuredPersonRow).where(InsuredPersonRow.psn_no == settled["psn_no"])
        ).one()
    for personal in (person.psn_no, person.citizen_id, person.name):
        assert personal not in text


def test_the_real_cross_province_tables_are_read(world: Engine):
    """settlement.crossprov.store's own rows (the schema as migrated), not the test's shape."""
    from settlement.crossprov.store import (
        HubReversalRow,
        RemoteSettlementRow,
        RemoteStatus,
        ReversalStatus,
    )

    def message(n: int, status: RemoteStatus, medfee: int | None) -> RemoteSettlementRow:
        confirmed = status in (RemoteStatus.CONFIRMED, RemoteStatus.CANCELLED)
        fund = None if medfee is None else medfee // 2
        return RemoteSettlementRow(
            msgid=f"H31000099001{n:018d}",
            infno="2207",
            route="cross_province",
            status=status,
            psn_no=f"32{n:013d}",
            insuplc_admdvs="320000",
            fixmedins_code="H31000099001",
            mdtrt_id=f"M{n}",
            visit_type="outpatient",
            visit_date=DAY,
            filing_type="long_term_resident",
            request_json="{}",
            setlinfo_json="{}" if confirmed else None,
            setl_id=f"S{n}" if confirmed else None,
            setl_time=NOW if confirmed else None,
            medfee_sumamt=medfee,
            fund_pay_sumamt=fund,
            acct_pay=None if medfee is None else 0,
            psn_cash_pay=None if medfee is None or fund is None else medfee - fund,
            created_at=NOW,
            cancelled_at=NOW if status is RemoteStatus.CANCELLED else None,
        )

    with Session(world) as session, session.begin():
        session.add_all(
            [
                message(1, RemoteStatus.CONFIRMED, 12_345),
                message(2, RemoteStatus.CANCELLED, 1_000),
                message(3, RemoteStatus.UNKNOWN, None),
            ]
        )
        session.flush()
        session.add(
            HubReversalRow(
                omsgid=f"H31000099001{3:018d}",
                oinfno="2207",
                insuplc_admdvs="320000",
                status=ReversalStatus.PENDING,
                attempts=2,
                next_attempt_at=NOW,
                created_at=NOW,
            )
        )
    view = _read(world, remote.remote_view, DAY)
    assert view.available
    assert view.notes == []
    [row] = view.rows
    assert (row.route, row.count, row.cancelled_count, row.medfee_sumamt) == (
        "cross_province",
        1,
        1,
        12_345,
    )
    assert {(s.status, s.count) for s in view.by_status} == {
        ("confirmed", 1),
        ("cancelled", 1),
        ("unknown", 1),
    }
    cancels = _read(world, remote.remote_cancellations, DAY)
    assert [(c.route, c.count, c.medfee_sumamt) for c in cancels] == [("cross_province", 1, 1_000)]
    queue, notes = _read(world, remote.reversal_queue)
    assert notes == []
    assert queue is not None
    assert (queue.depth, queue.oldest_at) == (1, NOW)


def test_counters_say_since_when_they_count():
    """The counters are not the day's: the summary carries the earliest worker start (the
    multiprocess ``min`` gauge; a second sample stands for a later, restarted worker)."""
    exposition = (
        b"# TYPE gateway_counters_start_time_seconds gauge\n"
        b"gateway_counters_start_time_seconds 1.7950458e+09\n"
        b"gateway_counters_start_time_seconds 1.7950500e+09\n"
    )
    counters = read_counters(exposition)
    assert counters.since == dt.datetime(2026, 11, 18, 23, 50, tzinfo=dt.UTC)
    note = counters_note(counters.since)
    assert "since the gateway started at 2026-11-19 07:50:00 Beijing time" in note
    assert "not figures of the chosen day" in note
    assert read_counters(b"").since is None
    assert "since the gateway started (all workers)" in counters_note(None)


def test_this_process_exposes_its_counters_start():
    """The gauge is set at import, before any request could be counted."""
    since = read_counters(metrics.render_latest()).since
    assert since is not None
    assert since <= dt.datetime.now(dt.UTC)
