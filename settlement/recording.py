"""Record a settlement, or cancel one, in the caller's session (one unit of work each).

:func:`record_settlement` loads the person's accounts and year-to-date totals (locked FOR
UPDATE where the database can), runs the pure engine, and writes in the same transaction:
the settlement and its lines, the new balances and totals, and one balanced ledger
transaction. :func:`cancel_settlement` (撤销结算) posts the mirror ledger transaction, gives
back the account money and the accumulator amounts, and marks the settlement cancelled; a
partial refund is a cancel followed by a new settlement (DOMAIN §4).

Every rule that must hold under concurrency is also a database constraint (settlement.store):
a racing second settlement cannot overdraw an account (CHECK ≥ 0) or post twice (unique).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from settlement.catalogue import Catalogue
from settlement.claim import AccountBalances, ClaimLine, InsuredPerson, Visit, YearToDate
from settlement.engine import settle
from settlement.errors import PersonNotFound, SettlementAlreadyCancelled, SettlementNotFound
from settlement.ledger import post_transaction, reversal_postings, settlement_postings
from settlement.policy import PolicyBook
from settlement.result import SettlementResult
from settlement.store import (
    InsuredPersonRow,
    LedgerTransaction,
    PersonalAccount,
    SettlementLineRow,
    SettlementRow,
    SettlementStatus,
    YearToDateTotals,
)

__all__ = ["cancel_settlement", "record_settlement"]


def _person_and_account(session: Session, psn_no: str) -> tuple[InsuredPersonRow, PersonalAccount]:
    person = session.scalar(select(InsuredPersonRow).where(InsuredPersonRow.psn_no == psn_no))
    if person is None:
        raise PersonNotFound(f"no insured person with psn_no {psn_no[:4]}…")
    account = session.get(PersonalAccount, person.id, with_for_update=True)
    if account is None:
        raise PersonNotFound(f"insured person {psn_no[:4]}… has no personal account")
    return person, account


def _year_totals(session: Session, person_id: int, year: int) -> YearToDateTotals:
    totals = session.get(YearToDateTotals, (person_id, year), with_for_update=True)
    if totals is None:
        # First settlement of the year. Two racing first settlements both insert; the primary
        # key lets one win and the other fail with IntegrityError (the caller retries).
        totals = YearToDateTotals(
            person_id=person_id,
            year=year,
            self_pay_band_consumed_fen=0,
            deductible_consumed_fen=0,
            pooling_fund_paid_fen=0,
        )
        session.add(totals)
    return totals


def record_settlement(
    session: Session,
    *,
    policies: PolicyBook,
    catalogue: Catalogue,
    setl_id: str,
    mdtrt_id: str,
    psn_no: str,
    fixmedins_code: str,
    visit: Visit,
    lines: Sequence[ClaimLine],
    now: dt.datetime,
) -> SettlementResult:
    """Settle and write everything in the caller's transaction; return the engine's result."""
    person, account = _person_and_account(session, psn_no)
    totals = _year_totals(session, person.id, visit.visit_date.year)
    year_to_date = YearToDate(
        self_pay_band_consumed_fen=totals.self_pay_band_consumed_fen,
        deductible_consumed_fen=totals.deductible_consumed_fen,
        pooling_fund_paid_fen=totals.pooling_fund_paid_fen,
    )
    result = settle(
        lines=lines,
        person=InsuredPerson(retired=person.retired, birth_date=person.birth_date),
        visit=visit,
        policy=policies.for_date(visit.visit_date),
        catalogue=catalogue,
        year_to_date=year_to_date,
        balances=AccountBalances(
            current_year_fen=account.current_year_fen, past_years_fen=account.past_years_fen
        ),
    )
    after = result.year_to_date_after
    row = SettlementRow(
        setl_id=setl_id,
        mdtrt_id=mdtrt_id,
        person_id=person.id,
        fixmedins_code=fixmedins_code,
        insutype="310",
        visit_type=str(visit.visit_type),
        hospital_level=int(visit.hospital_level),
        visit_date=visit.visit_date,
        setl_time=now,
        policy_id=result.policy_id,
        status=SettlementStatus.SETTLED,
        medfee_sumamt=result.medfee_sumamt,
        fulamt_ownpay_amt=result.fulamt_ownpay_amt,
        preselfpay_amt=result.preselfpay_amt,
        inscp_scp_amt=result.inscp_scp_amt,
        act_pay_dedc=result.act_pay_dedc,
        hifp_pay=result.hifp_pay,
        pool_prop_selfpay=result.pool_prop_selfpay,
        hifob_pay=result.hifob_pay,
        fund_pay_sumamt=result.fund_pay_sumamt,
        acct_pay=result.acct_pay,
        acct_pay_current_year_fen=result.acct_detail.current_year_fen,
        acct_pay_past_years_fen=result.acct_detail.past_years_fen,
        psn_cash_pay=result.psn_cash_pay,
        balc=result.balc,
        self_pay_band_added_fen=(
            after.self_pay_band_consumed_fen - year_to_date.self_pay_band_consumed_fen
        ),
        deductible_added_fen=after.deductible_consumed_fen - year_to_date.deductible_consumed_fen,
    )
    session.add(row)
    session.flush()
    session.add_all(
        SettlementLineRow(
            settlement_id=row.id,
            line_no=number,
            catalogue_code=line.catalogue_code,
            quantity=line.quantity,
            unit_price_fen=line.unit_price_fen,
            amount_fen=line.quantity * line.unit_price_fen,
        )
        for number, line in enumerate(lines, start=1)
    )
    account.current_year_fen = result.balances_after.current_year_fen
    account.past_years_fen = result.balances_after.past_years_fen
    totals.self_pay_band_consumed_fen = after.self_pay_band_consumed_fen
    totals.deductible_consumed_fen = after.deductible_consumed_fen
    totals.pooling_fund_paid_fen = after.pooling_fund_paid_fen
    post_transaction(
        session,
        txn_id=f"settle:{setl_id}",
        kind="settle",
        postings=settlement_postings(result, psn_no=psn_no, fixmedins_code=fixmedins_code),
        posted_at=now,
        settlement_id=row.id,
    )
    return result


def cancel_settlement(session: Session, *, setl_id: str, now: dt.datetime) -> None:
    """Reverse a settlement with new ledger entries and give back what it took.

    The current-year part goes back to the current-year account if that account still
    belongs to the visit's year, else (after the year-end roll-over) to the past-years
    account, where the year-end roll-over would have put it.
    """
    row = session.scalar(
        select(SettlementRow).where(SettlementRow.setl_id == setl_id).with_for_update()
    )
    if row is None:
        raise SettlementNotFound(f"no settlement {setl_id}")
    if row.status is SettlementStatus.CANCELLED:
        raise SettlementAlreadyCancelled(f"settlement {setl_id} is already cancelled")
    account = session.get(PersonalAccount, row.person_id, with_for_update=True)
    totals = session.get(
        YearToDateTotals, (row.person_id, row.visit_date.year), with_for_update=True
    )
    assert account is not None
    assert totals is not None
    if account.account_year == row.visit_date.year:
        account.current_year_fen += row.acct_pay_current_year_fen
    else:
        account.past_years_fen += row.acct_pay_current_year_fen
    account.past_years_fen += row.acct_pay_past_years_fen
    totals.self_pay_band_consumed_fen -= row.self_pay_band_added_fen
    totals.deductible_consumed_fen -= row.deductible_added_fen
    totals.pooling_fund_paid_fen -= row.hifp_pay
    row.status = SettlementStatus.CANCELLED
    row.cancelled_at = now
    original = session.scalar(
        select(LedgerTransaction.txn_id).where(
            LedgerTransaction.settlement_id == row.id, LedgerTransaction.kind == "settle"
        )
    )
    assert original is not None
    post_transaction(
        session,
        txn_id=f"cancel:{setl_id}",
        kind="cancel",
        postings=reversal_postings(session, original),
        posted_at=now,
        settlement_id=row.id,
        reverses_txn_id=original,
    )
