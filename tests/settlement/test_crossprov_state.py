"""Cross-province, gateway side, pure and on SQLite: routing by insured place, which filing a
visit settles under, the remote-settlement state machine (intent → confirmed / failed /
unknown → reversed, cancel), the reversal queue's leases and backoff, and the clearing
comparison with the hub's per-message statuses."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, func, select
from sqlalchemy.orm import Session

from settlement.counter.holders import HolderRow, insured_place, local_holdings
from settlement.crossprov import clearing, remote
from settlement.crossprov.filings import (
    Filing,
    FilingInvalid,
    FilingNotCrossProvince,
    FilingRequired,
    filing_for_visit,
    register_filing,
)
from settlement.crossprov.routing import InsuredPlace, Route, route_for
from settlement.crossprov.store import (
    FilingRow,
    FilingType,
    HubReversalRow,
    RemoteSettlementRow,
    RemoteStatus,
    ReversalStatus,
)
from settlement.errors import InvalidPerson
from settlement.idempotency import begin_request
from settlement.ledger import account_balance_fen, unbalanced_transactions
from settlement.store import IdempotencyKey, LedgerTransaction, metadata

NOW = dt.datetime(2026, 6, 1, 2, 0, tzinfo=dt.UTC)  # 10:00 in Beijing
DAY = dt.date(2026, 6, 1)
HOSPITAL = "H31000000001"
OTHER = "H31000000002"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        engine = create_engine(f"sqlite:///{tmp_path / 'crossprov.db'}")
    else:
        engine = create_engine(request.getfixturevalue("postgres_schema_url"))
    metadata.create_all(engine)
    yield engine
    engine.dispose()


# --- routing ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("treatment", "insured", "route"),
    [
        ("310000", "310000", Route.LOCAL),
        ("310000", "310115", Route.LOCAL),  # Shanghai pools city-wide
        ("320100", "320100", Route.LOCAL),
        ("320100", "320102", Route.LOCAL),  # same prefecture
        ("320100", "320500", Route.IN_PROVINCE_REMOTE),  # Nanjing / Suzhou
        ("310000", "320000", Route.CROSS_PROVINCE),
        ("440300", "110000", Route.CROSS_PROVINCE),
        ("500000", "500230", Route.LOCAL),  # Chongqing pools city-wide
    ],
)
def test_route_follows_the_insured_place(treatment: str, insured: str, route: Route) -> None:
    assert route_for(treatment, insured) is route
    assert route.via_hub is (route is not Route.LOCAL)


@pytest.mark.parametrize("bad", ["", "31000", "3100000", "x10000", "010000"])
def test_route_refuses_malformed_codes(bad: str) -> None:
    with pytest.raises(ValueError, match="admdvs"):
        route_for("310000", bad)


def _holder(psn_no: str, insuplc_admdvs: str) -> HolderRow:
    return HolderRow(
        1, psn_no, False, dt.date(1980, 1, 1), dt.date(2019, 1, 1), None, insuplc_admdvs,
        "11", 100, 0, None, None, None, 2026,
    )  # fmt: skip


def test_the_insured_place_is_a_value_that_carries_its_route() -> None:
    # Decided before any transaction (no exception as control flow): the handler matches on it.
    day = dt.date(2026, 6, 1)
    local = insured_place(_holder("31000000000000001", "310104"), day)
    assert local == InsuredPlace("31000000000000001", "310104", Route.LOCAL)
    remote = insured_place(_holder("32000000000000001", "320000"), day)
    assert (remote.route, remote.insuplc_admdvs) == (Route.CROSS_PROVINCE, "320000")
    # A local settlement of a person insured elsewhere is refused, never settled at
    # Shanghai's rates (the route changed after the card was read).
    assert local_holdings(_holder("31000000000000001", "310104"), day).psn_no.startswith("31")
    with pytest.raises(InvalidPerson, match="read the card again"):
        local_holdings(_holder("32000000000000001", "320000"), day)


# --- filings ----------------------------------------------------------------------------------

LONG_TERM = Filing(FilingType.LONG_TERM_RESIDENT, dt.date(2020, 1, 1), None, None)
REFERRAL = Filing(FilingType.REFERRAL, dt.date(2026, 5, 1), dt.date(2026, 7, 1), HOSPITAL)


@pytest.mark.parametrize(
    ("filings", "visit_type", "day", "where", "expected"),
    [
        ((LONG_TERM,), "outpatient", DAY, OTHER, FilingType.LONG_TERM_RESIDENT),
        ((REFERRAL,), "outpatient", DAY, HOSPITAL, FilingType.REFERRAL),
        ((REFERRAL, LONG_TERM), "outpatient", DAY, HOSPITAL, FilingType.LONG_TERM_RESIDENT),
        ((), "emergency", DAY, OTHER, FilingType.EMERGENCY),
        ((REFERRAL,), "emergency", DAY, OTHER, FilingType.EMERGENCY),
    ],
)
def test_the_filing_a_visit_settles_under(
    filings: tuple[Filing, ...], visit_type: str, day: dt.date, where: str, expected: FilingType
) -> None:
    assert (
        filing_for_visit(filings, visit_type=visit_type, visit_date=day, fixmedins_code=where)
        is expected
    )


@pytest.mark.parametrize(
    ("filings", "day", "where"),
    [
        ((), DAY, HOSPITAL),
        ((REFERRAL,), DAY, OTHER),  # a referral names its target
        ((REFERRAL,), dt.date(2026, 7, 2), HOSPITAL),  # and its own validity
        ((Filing(FilingType.RESETTLED_RETIREE, dt.date(2027, 1, 1), None, None),), DAY, HOSPITAL),
    ],
)
def test_no_valid_filing_names_the_filings_that_would_do(
    filings: tuple[Filing, ...], day: dt.date, where: str
) -> None:
    with pytest.raises(FilingRequired) as raised:
        filing_for_visit(filings, visit_type="pharmacy", visit_date=day, fixmedins_code=where)
    assert raised.value.code == "FILING_REQUIRED"
    for name in ("resettled_retiree", "long_term_resident", "referral", "emergencies"):
        assert name in raised.value.message


def test_registering_a_referral_needs_its_own_validity(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        common = {
            "psn_no": "320000000000001",
            "insuplc_admdvs": "320000",
            "filing_type": FilingType.REFERRAL,
            "valid_from": DAY,
            "target_fixmedins_code": None,
            "registered_by": HOSPITAL,
            "now": NOW,
        }
        with pytest.raises(FilingInvalid, match="valid_to"):
            register_filing(session, valid_to=None, **common)  # type: ignore[arg-type]
        with pytest.raises(FilingInvalid, match="at most"):
            register_filing(session, valid_to=DAY + dt.timedelta(days=400), **common)  # type: ignore[arg-type]
        row = register_filing(session, valid_to=DAY + dt.timedelta(days=30), **common)  # type: ignore[arg-type]
        assert row.target_fixmedins_code == HOSPITAL  # the registering hospital by default


@pytest.mark.parametrize(
    ("insuplc_admdvs", "why"),
    [
        ("310000", "another province"),  # insured here: settled locally, no filing
        ("310115", "another province"),  # a Shanghai district: still local
        ("3100", "admdvs code"),  # not a code at all
    ],
)
def test_a_filing_is_only_for_a_person_insured_in_another_province(
    engine: Engine, insuplc_admdvs: str, why: str
) -> None:
    # The rule is the use case's, whichever door asks (docs/architecture.md §6): /v1 and the
    # national door only map FilingNotCrossProvince to their own form.
    with Session(engine) as session, session.begin():
        with pytest.raises(FilingNotCrossProvince, match=why) as raised:
            register_filing(
                session,
                psn_no="310000000000001",
                insuplc_admdvs=insuplc_admdvs,
                filing_type=FilingType.LONG_TERM_RESIDENT,
                valid_from=DAY,
                valid_to=None,
                target_fixmedins_code=None,
                registered_by=HOSPITAL,
                now=NOW,
            )
        assert raised.value.code == "VALIDATION_FAILED"
        assert raised.value.field == "insuplc_admdvs"
        assert session.scalar(select(func.count()).select_from(FilingRow)) == 0


# --- the state machine ------------------------------------------------------------------------


def _intent(session: Session, msgid: str, *, key: str | None = None) -> None:
    if key is not None:
        begin_request(
            session, client_id=HOSPITAL, idempotency_key=key, request_sha256="a" * 64, now=NOW
        )
    remote.begin_intent(
        session,
        RemoteSettlementRow(
            msgid=msgid,
            infno="2207",
            route="cross_province",
            status=RemoteStatus.INTENT,
            psn_no="320000000000001",
            insuplc_admdvs="320000",
            fixmedins_code=HOSPITAL,
            mdtrt_id="M1",
            visit_type="outpatient",
            visit_date=DAY,
            filing_type="long_term_resident",
            client_id=HOSPITAL if key else None,
            idempotency_key=key,
            request_json="{}",
            created_at=NOW,
        ),
    )


SETTLED = remote.HubSettlement(
    setl_id="S320000000001",
    setl_time=NOW,
    medfee_sumamt=10_000,
    fund_pay_sumamt=6_000,
    acct_pay=1_500,
    psn_cash_pay=2_500,
)


def _msgid(n: int) -> str:
    return f"{HOSPITAL}20260601100000{n:04d}"


def test_confirm_stores_setlinfo_verbatim_and_books_a_receivable(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        _intent(session, _msgid(2), key="k1")
    with Session(engine) as session, session.begin():
        row = remote.confirm(
            session,
            msgid=_msgid(2),
            setlinfo_json='{"setl_id":"S320000000001"}',
            settled=SETTLED,
            now=NOW,
        )
        assert row.status is RemoteStatus.CONFIRMED
        assert row.setlinfo_json == '{"setl_id":"S320000000001"}'
    with Session(engine) as session:
        assert account_balance_fen(session, "receivable:province:320000") == 7_500
        assert account_balance_fen(session, f"institution:{HOSPITAL}:cash") == 2_500
        assert account_balance_fen(session, f"institution:{HOSPITAL}:fees") == -10_000
        assert unbalanced_transactions(session) == []
    with Session(engine) as session, session.begin():
        remote.confirm_cancel(session, msgid=_msgid(2), cancel_json="{}", now=NOW)
    with Session(engine) as session:
        assert account_balance_fen(session, "receivable:province:320000") == 0
        assert account_balance_fen(session, f"institution:{HOSPITAL}:fees") == 0


def test_a_late_success_cannot_overtake_a_decision_already_written(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        _intent(session, _msgid(4), key="k2")
    with Session(engine) as session, session.begin():
        stale = remote.stale_intents_to_unknown(
            session, older_than=NOW + dt.timedelta(seconds=1), now=NOW, limit=10
        )
        assert stale == [_msgid(4)]
    with Session(engine) as session, session.begin(), pytest.raises(remote.OutcomeOverridden):
        remote.confirm(session, msgid=_msgid(4), setlinfo_json="{}", settled=SETTLED, now=NOW)
    with Session(engine) as session:
        assert account_balance_fen(session, "receivable:province:320000") == 0
        # Unknown: queued for reversal, and the key released so the retry settles afresh.
        queued = session.scalars(select(HubReversalRow)).all()
        assert [(q.omsgid, q.status) for q in queued] == [(_msgid(4), ReversalStatus.PENDING)]
        assert session.scalar(select(func.count()).select_from(IdempotencyKey)) == 0


def test_unknown_is_reversed_by_lease_with_capped_backoff(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        _intent(session, _msgid(6), key="k3")
        assert remote.mark_unknown(session, msgid=_msgid(6), error="dropped", now=NOW)
        assert not remote.mark_unknown(session, msgid=_msgid(6), error="again", now=NOW)
    lease = dt.timedelta(seconds=30)
    with Session(engine) as session, session.begin():
        jobs = remote.claim_due_reversals(session, owner="w1", now=NOW, lease=lease, limit=10)
        assert [(j.omsgid, j.oinfno, j.fixmedins_code) for j in jobs] == [
            (_msgid(6), "2207", HOSPITAL)
        ]
        # Held by w1: another worker finds nothing due.
        assert remote.claim_due_reversals(session, owner="w2", now=NOW, lease=lease, limit=10) == []
    later = NOW + dt.timedelta(seconds=31)
    with Session(engine) as session, session.begin():
        # w1 died: its lease ran out, so w2 takes the row over ...
        (job,) = remote.claim_due_reversals(session, owner="w2", now=later, lease=lease, limit=10)
        # ... and a late word from w1 changes nothing.
        assert not remote.reversal_done(
            session, omsgid=job.omsgid, owner="w1", hub_reversed=True, now=later
        )
        remote.reversal_retry(
            session,
            omsgid=job.omsgid,
            owner="w2",
            error="timeout",
            next_attempt_at=later + dt.timedelta(seconds=2),
        )
        assert remote.queue_depth(session) == 1
        assert (
            remote.claim_due_reversals(session, owner="w2", now=later, lease=lease, limit=10) == []
        )
    due = later + dt.timedelta(seconds=2)
    with Session(engine) as session, session.begin():
        (job,) = remote.claim_due_reversals(session, owner="w2", now=due, lease=lease, limit=10)
        assert job.attempts == 1
        assert remote.reversal_done(
            session, omsgid=job.omsgid, owner="w2", hub_reversed=False, now=due
        )
    with Session(engine) as session:
        row = session.scalar(select(RemoteSettlementRow))
        assert row is not None
        assert row.status is RemoteStatus.REVERSED
        assert remote.queue_depth(session) == 0
        assert account_balance_fen(session, "receivable:province:320000") == 0


def test_failed_posts_nothing(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        _intent(session, _msgid(8))
        remote.fail(session, msgid=_msgid(8), err_code="PERSON_NOT_FOUND", err_msg="no", now=NOW)
    with Session(engine) as session:
        row = session.scalar(select(RemoteSettlementRow))
        assert row is not None
        assert (row.status, row.err_code) == (RemoteStatus.FAILED, "PERSON_NOT_FOUND")
        assert remote.queue_depth(session) == 0
        assert account_balance_fen(session, "receivable:province:320000") == 0


# --- cancel checks ----------------------------------------------------------------------------

LEASE = dt.timedelta(seconds=30)


def _confirmed(engine: Engine, msgid: str) -> None:
    with Session(engine) as session, session.begin():
        _intent(session, msgid)
        remote.confirm(session, msgid=msgid, setlinfo_json="{}", settled=SETTLED, now=NOW)


def _begin_cancel(
    session: Session, msgid: str, cancel_msgid: str, owner: str, now: dt.datetime
) -> str:
    row = session.scalar(select(RemoteSettlementRow).where(RemoteSettlementRow.msgid == msgid))
    assert row is not None
    return remote.begin_cancel(
        session,
        row=row,
        cancel_msgid=cancel_msgid,
        reason="wrong",
        owner=owner,
        now=now,
        lease=LEASE,
    )


def _cancel_postings(session: Session) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(LedgerTransaction)
            .where(LedgerTransaction.kind == remote.KIND_CANCEL)
        )
        or 0
    )


def test_an_unknown_cancel_is_resolved_by_whoever_holds_the_lease_and_booked_once(
    engine: Engine,
) -> None:
    _confirmed(engine, _msgid(10))
    with Session(engine) as session, session.begin():
        sent = _begin_cancel(session, _msgid(10), _msgid(11), "terminal-1", NOW)
        assert sent == _msgid(11)
    with Session(engine) as session, session.begin():
        # The first request holds the lease: a second attempt and the task keep off.
        with pytest.raises(remote.CancelBusy) as busy:
            _begin_cancel(session, _msgid(10), _msgid(13), "terminal-2", NOW)
        assert 1 <= busy.value.retry_after_s <= 31
        assert remote.claim_due_reversals(session, owner="w1", now=NOW, lease=LEASE, limit=9) == []
        # No answer: the lease is handed to the reversal task, due in a second.
        remote.cancel_unresolved(
            session,
            msgid=_msgid(10),
            owner="terminal-1",
            error="dropped",
            next_attempt_at=NOW + dt.timedelta(seconds=1),
        )
    due = NOW + dt.timedelta(seconds=1)
    with Session(engine) as session, session.begin():
        (job,) = remote.claim_due_reversals(session, owner="w1", now=due, lease=LEASE, limit=9)
        assert job.is_cancel_check
        assert (job.omsgid, job.oinfno, job.cancel_msgid) == (_msgid(10), "2208", _msgid(11))
    # The terminal's retry meanwhile must wait: the task holds the cancel now.
    with Session(engine) as session, session.begin(), pytest.raises(remote.CancelBusy):
        _begin_cancel(session, _msgid(10), _msgid(15), "terminal-2", due)
    with Session(engine) as session, session.begin():
        booked = remote.cancel_booked(
            session,
            msgid=_msgid(10),
            cancel_msgid=_msgid(11),
            owner="w1",
            cancel_json='{"setl_id":"CNCL1"}',
            now=due,
        )
        assert booked is not None
        assert booked.status is RemoteStatus.CANCELLED
    with Session(engine) as session, session.begin():
        # A late answer to the first request, for the same cancel msgid: nothing twice.
        again = remote.cancel_booked(
            session,
            msgid=_msgid(10),
            cancel_msgid=_msgid(11),
            owner="terminal-1",
            cancel_json="{}",
            now=due,
        )
        assert again is not None
        assert again.cancel_json == '{"setl_id":"CNCL1"}'
    with Session(engine) as session:
        assert _cancel_postings(session) == 1
        assert account_balance_fen(session, "receivable:province:320000") == 0
        assert account_balance_fen(session, f"institution:{HOSPITAL}:fees") == 0
        assert unbalanced_transactions(session) == []
        assert remote.queue_depth(session) == 0
        check = session.scalar(select(HubReversalRow))
        assert check is not None
        assert (check.status, check.hub_reversed) == (ReversalStatus.DONE, False)


def test_a_cancel_not_done_leaves_the_settlement_settled_and_a_new_cancel_starts_afresh(
    engine: Engine,
) -> None:
    _confirmed(engine, _msgid(20))
    with Session(engine) as session, session.begin():
        _begin_cancel(session, _msgid(20), _msgid(21), "terminal-1", NOW)
    # terminal-1's worker died mid-call: its lease runs out and the task takes the cancel.
    later = NOW + LEASE + dt.timedelta(seconds=1)
    with Session(engine) as session, session.begin():
        (job,) = remote.claim_due_reversals(session, owner="w1", now=later, lease=LEASE, limit=9)
        assert job.cancel_msgid == _msgid(21)
        assert remote.cancel_not_done(
            session, msgid=_msgid(20), cancel_msgid=_msgid(21), owner="w1", now=later
        )
    with Session(engine) as session, session.begin():
        # A late success reported under the lost lease books nothing.
        assert (
            remote.cancel_booked(
                session,
                msgid=_msgid(20),
                cancel_msgid=_msgid(21),
                owner="terminal-1",
                cancel_json="{}",
                now=later,
            )
            is None
        )
        assert not remote.cancel_not_done(
            session, msgid=_msgid(20), cancel_msgid=_msgid(21), owner="terminal-1", now=later
        )
    with Session(engine) as session:
        row = session.scalar(select(RemoteSettlementRow))
        assert row is not None
        assert (row.status, row.cancel_msgid, row.cancel_reason) == (
            RemoteStatus.CONFIRMED,
            None,
            None,
        )
        assert _cancel_postings(session) == 0
        assert account_balance_fen(session, "receivable:province:320000") == 7_500
        assert remote.queue_depth(session) == 0
    with Session(engine) as session, session.begin():
        # A new cancel draws a new msgid and reopens the check.
        assert _begin_cancel(session, _msgid(20), _msgid(23), "terminal-2", later) == _msgid(23)
        assert remote.queue_depth(session) == 1
        check = session.scalar(select(HubReversalRow))
        assert check is not None
        assert (check.status, check.attempts, check.done_at) == (ReversalStatus.PENDING, 0, None)


# --- clearing ---------------------------------------------------------------------------------

ONE = clearing.Figures(1, 10_000, 6_000, 1_500, 2_500)


def _compare(
    ours: list[clearing.HubMessage], theirs: list[clearing.HubMessage]
) -> clearing.Statement:
    hub_settled = clearing.Figures()
    for message in theirs:
        if message.status == "settled":
            hub_settled = hub_settled.plus(message.figures)
    return clearing.compare(
        insuplc_admdvs="320000",
        begin=DAY,
        end=DAY,
        ours=ours,
        hub_settled=hub_settled,
        hub_details=theirs,
    )


def test_a_clean_period_matches() -> None:
    statement = _compare(
        [
            clearing.HubMessage("m1", "confirmed", "S1", ONE),
            clearing.HubMessage("m2", "reversed"),  # never committed at the hub
            clearing.HubMessage("m3", "reversed"),  # committed, then reversed there
            clearing.HubMessage("m4", "cancelled", "S4", ONE),
            clearing.HubMessage("m5", "failed"),
        ],
        [
            clearing.HubMessage("m1", "settled", "S1", ONE),
            clearing.HubMessage("m3", "reversed", "S3", ONE),
            clearing.HubMessage("m4", "cancelled", "S4", ONE),
        ],
    )
    assert statement.matched
    assert statement.settled == ONE
    assert statement.settled.fronted_fen == 7_500
    assert (statement.reversed_count, statement.cancelled.count) == (2, 1)


def test_every_kind_of_disagreement_is_listed_by_msgid() -> None:
    other = clearing.Figures(1, 10_000, 6_001, 1_499, 2_500)
    statement = _compare(
        [
            clearing.HubMessage("m1", "confirmed", "S1", ONE),  # amounts differ
            clearing.HubMessage("m2", "confirmed", "S2", ONE),  # the hub has nothing
            clearing.HubMessage("m3", "reversed"),  # the hub still has it settled
            clearing.HubMessage("m5", "unknown"),  # not final yet
        ],
        [
            clearing.HubMessage("m1", "settled", "S1", other),
            clearing.HubMessage("m3", "settled", "S3", ONE),
            clearing.HubMessage("m4", "settled", "S4", ONE),  # the gateway has nothing
        ],
    )
    assert not statement.matched
    assert statement.unresolved_count == 1
    assert [(m.msgid, m.reason) for m in statement.mismatches] == [
        ("m1", "amounts_differ"),
        ("m2", "missing_at_hub"),
        ("m3", "status_differs"),
        ("m4", "missing_at_gateway"),
    ]


def test_a_cancel_in_doubt_is_unresolved_until_the_task_writes_its_outcome() -> None:
    mine = clearing.HubMessage("m1", "confirmed", "S1", ONE, cancel_in_doubt=True)
    statement = _compare([mine], [clearing.HubMessage("m1", "cancelled", "S1", ONE)])
    assert (statement.unresolved_count, statement.mismatches) == (1, [])
    assert not statement.matched
    # Without a cancel in doubt, the same disagreement is a mismatch.
    settled = clearing.HubMessage("m1", "confirmed", "S1", ONE)
    (mismatch,) = _compare(
        [settled], [clearing.HubMessage("m1", "cancelled", "S1", ONE)]
    ).mismatches
    assert (mismatch.reason, mismatch.hub_status) == ("status_differs", "cancelled")
    # A cancel in doubt the hub never did still agrees with "settled".
    agreed = _compare([mine], [clearing.HubMessage("m1", "settled", "S1", ONE)])
    assert (agreed.unresolved_count, agreed.mismatches) == (0, [])
