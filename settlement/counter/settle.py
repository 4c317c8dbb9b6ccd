"""Eligibility, pre-settle, settle and cancel at the counter: units of work ``unit(session)``.

Each runs in one transaction (the gateway's Database runs it) and takes what it needs from
outside as arguments (settlement.counter.ports): the card check, the institution at the
counter, the request nonce, and the door's renderer for the answer it stores.

How a settle stays cheap (it is the hot path; docs/benchmarks.md)
    One unit: the request nonce (claimed first, so a replay stops there), the Idempotency-Key
    (settlement.keyed), the card's registry re-check (one primary-key read), the visit rule,
    the holder's facts (ONE indexed read, settlement.counter.holders), the engine, every write
    and the stored answer. Every statement runs on the driver's cursor (dbkit), each a
    primary-key or unique-index lookup, an insert or a relative update, so the cost does not
    grow with the ledger. The route (local or through the hub) was decided before the unit
    began; a local unit refuses a person insured elsewhere, it never dispatches.

Pre-settle is one unit too (:func:`counter_read`): its request nonce and the same reads, then
the engine outside the transaction (:func:`estimate`), locking nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from dbkit import beijing_date
from settlement.claim import ClaimLine, Visit
from settlement.counter.holders import (
    INSUTYPE_EMPLOYEE,
    holdings_to_spend,
    local_holdings,
    read_holder,
)
from settlement.counter.outcomes import (
    Eligibility,
    Estimate,
    Settled,
    catalogue,
    policies,
)
from settlement.counter.ports import AtCounter, NonceClaim
from settlement.counter.visits import new_id, visit_at
from settlement.engine import age_on, benefit_category
from settlement.engine import settle as run_engine
from settlement.errors import SettlementNotFound
from settlement.keyed import KeyedRequest, Render, Stored, answer, claim_key
from settlement.recording import Holdings, cancel_settlement, write_settlement
from settlement.rollover import as_rolled, roll_over_due, spendable
from settlement.store import InsuredPersonRow, SettlementRow

__all__ = [
    "CounterRead",
    "cancel",
    "counter_read",
    "eligibility",
    "estimate",
    "find_settlement",
    "record",
    "settle",
]


def eligibility(session: Session, *, at: AtCounter, now: dt.datetime) -> Eligibility:
    """Person information today (a read unit: writes nothing)."""
    today = beijing_date(now)
    at.card_check(session, today)
    row = read_holder(session, at.holder_id, today.year)
    # As after the year-end roll-over, even if the job has not reached this account yet.
    holdings = as_rolled(local_holdings(row, today), today.year)
    assert row is not None
    assert row.insuplc_admdvs is not None
    assert row.psn_type is not None
    category = benefit_category(holdings.person, today, policies().for_date(today))
    return Eligibility(
        psn_no=holdings.psn_no,
        age_years=age_on(row.birth_date, today),
        retired=holdings.person.retired,
        benefit_category=category.value,
        insutype=INSUTYPE_EMPLOYEE,
        insuplc_admdvs=row.insuplc_admdvs,
        psn_type=row.psn_type,
        current_year_fen=holdings.balances.current_year_fen,
        past_years_fen=holdings.balances.past_years_fen,
        year_to_date=holdings.year_to_date,
    )


@dataclass(frozen=True, slots=True)
class CounterRead:
    """What settle and pre-settle read before the engine runs. ``holdings`` as stored (the
    account may still be in an ended year: settlement.rollover); ``this_year`` is the Beijing
    year of the read."""

    visit: Visit
    holdings: Holdings
    this_year: int


def _at_the_counter(
    session: Session,
    *,
    at: AtCounter,
    visit_type: str,
    visit_date: dt.date,
    now: dt.datetime,
) -> CounterRead:
    """Settle's and pre-settle's checks, in order: card usable, visit allowed here, person
    insured (locally) on the visit date with an account."""
    today = beijing_date(now)
    at.card_check(session, today)
    visit = visit_at(at.counter, visit_type, visit_date, today)
    holdings = local_holdings(read_holder(session, at.holder_id, visit_date.year), visit_date)
    return CounterRead(visit, holdings, today.year)


def counter_read(
    session: Session,
    *,
    nonce: NonceClaim | None,
    at: AtCounter,
    visit_type: str,
    visit_date: dt.date,
    now: dt.datetime,
) -> CounterRead:
    """Pre-settle's one unit: the request nonce, then the counter's reads. The engine runs
    after it, outside the unit (:func:`estimate`): pre-settle writes nothing but its nonce,
    so only the reads need the transaction."""
    if nonce is not None:
        nonce.claim(session)  # first: a replayed request stops here
    return _at_the_counter(
        session,
        at=at,
        visit_type=visit_type,
        visit_date=visit_date,
        now=now,
    )


def estimate(read: CounterRead, lines: Sequence[ClaimLine]) -> Estimate:
    """The engine on what :func:`counter_read` read: the split a settle would make now."""
    visit_date = read.visit.visit_date
    # What a settle would spend: the accounts as after the roll-over, the visit's year's.
    holdings = spendable(as_rolled(read.holdings, read.this_year), visit_date.year)
    result = run_engine(
        lines=lines,
        person=holdings.person,
        visit=read.visit,
        policy=policies().for_date(visit_date),
        catalogue=catalogue(),
        year_to_date=holdings.year_to_date,
        balances=holdings.balances,
    )
    return Estimate(read.holdings.psn_no, result)


def record(
    session: Session,
    *,
    holdings: Holdings,
    fixmedins_code: str,
    mdtrt_id: str,
    visit: Visit,
    lines: Sequence[ClaimLine],
    now: dt.datetime,
) -> Settled:
    """Run the engine and write the settlement, balances, year's totals and ledger.

    The policy and the year's totals are the visit date's; the accounts are as they are now,
    under the account's lock: rolled over first if their year has ended, and the current-year
    account spent only by a visit of its year (settlement.rollover)."""
    year = visit.visit_date.year
    locked = holdings_to_spend(session, holdings, year)
    written, result = write_settlement(
        session,
        holdings=spendable(roll_over_due(session, locked, now=now), year),
        policy=policies().for_date(visit.visit_date),
        catalogue=catalogue(),
        setl_id=new_id("S", now),
        mdtrt_id=mdtrt_id,
        fixmedins_code=fixmedins_code,
        visit=visit,
        lines=lines,
        now=now,
    )
    return Settled(written, holdings.psn_no, result.explanation)


def settle(
    session: Session,
    *,
    keyed: KeyedRequest,
    nonce: NonceClaim | None,
    at: AtCounter,
    visit_type: str,
    visit_date: dt.date,
    lines: Sequence[ClaimLine],
    render: Render[Settled],
) -> Stored:
    """One local settlement in one unit (module docstring: how it stays cheap)."""
    if nonce is not None:
        nonce.claim(session)  # first: a replayed request stops here and stores nothing
    stored = claim_key(session, keyed)
    if stored is not None:
        return stored
    now = keyed.now
    read = _at_the_counter(
        session,
        at=at,
        visit_type=visit_type,
        visit_date=visit_date,
        now=now,
    )
    settled = record(
        session,
        holdings=read.holdings,
        fixmedins_code=at.counter.fixmedins_code,
        mdtrt_id=new_id("M", now),
        visit=read.visit,
        lines=lines,
        now=now,
    )
    return answer(session, keyed, render(settled))


def find_settlement(session: Session, *, fixmedins_code: str, setl_id: str) -> Settled:
    """A settlement of this institution. Another institution's answers exactly like a missing
    one: nothing leaks."""
    found = session.execute(
        select(SettlementRow, InsuredPersonRow.psn_no)
        .join(InsuredPersonRow, InsuredPersonRow.id == SettlementRow.person_id)
        .where(SettlementRow.setl_id == setl_id, SettlementRow.fixmedins_code == fixmedins_code)
    ).one_or_none()
    if found is None:
        raise SettlementNotFound("this institution has no settlement with this setl_id")
    row, psn_no = found
    return Settled(row, psn_no)


def cancel(
    session: Session,
    *,
    keyed: KeyedRequest,
    fixmedins_code: str,
    setl_id: str,
    reason: str,
    render: Render[Settled],
) -> Stored:
    """Cancel a local settlement in full: reversing ledger entries, what it took given back."""
    stored = claim_key(session, keyed)
    if stored is not None:
        return stored
    found = find_settlement(session, fixmedins_code=fixmedins_code, setl_id=setl_id)
    cancel_settlement(session, setl_id=setl_id, now=keyed.now)
    row = found.record
    assert isinstance(row, SettlementRow)
    row.cancel_reason = reason
    session.flush()
    return answer(session, keyed, render(found))
