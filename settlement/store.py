"""Tables the settlement package owns (SQLAlchemy 2.0 typed models on their own MetaData).

The gateway's Alembic environment migrates :data:`metadata` beside the other packages'
(branch ``settlement``, scripts in ``settlement/migrations/versions``); a test compares the
migrated schema with these models. Nothing here knows about HTTP or the gateway, and no
foreign key points into another package's tables (institutions are referred to by their
national code, ``fixmedins_code``).

The database, not application ``if``\\ s, holds the rules that must never break:

* amounts are int fen with ``CHECK (… >= 0)``; balances cannot go negative, so an account
  cannot be overdrawn even by two racing settlements;
* a settlement row satisfies ``medfee_sumamt = fund_pay_sumamt + acct_pay + psn_cash_pay``;
* an idempotency key is unique per client, and a ledger transaction is unique per
  (kind, settlement), so a settlement takes effect once and is cancelled at most once;
* ledger entries are append-only: ``amount_fen > 0``, and triggers refuse UPDATE and DELETE
  (SQLite and PostgreSQL). Each transaction sums to zero (debits = credits): asserted by
  :func:`settlement.ledger.post_transaction` and checked by
  :func:`settlement.ledger.unbalanced_transactions` (a cross-row rule no CHECK can state).
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Final

from sqlalchemy import (
    DDL,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    Enum,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    event,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from dbkit import UtcDateTime, new_metadata

__all__ = [
    "LEDGER_APPEND_ONLY_DDL",
    "AccountRollover",
    "AdmissionFeeLineRow",
    "AdmissionRow",
    "AdmissionStatus",
    "IdempotencyKey",
    "IdempotencyStatus",
    "Insurance",
    "InsuredPersonRow",
    "LedgerEntry",
    "LedgerSide",
    "LedgerTransaction",
    "PersonalAccount",
    "ReconciliationRun",
    "RolloverYear",
    "SettlementLineRow",
    "SettlementRow",
    "SettlementStatus",
    "YearToDateTotals",
    "metadata",
]

# Constraint names from the project's one naming convention, so migrations can name them.
metadata: Final = new_metadata()

# A 64-bit id on PostgreSQL; SQLite only auto-increments a column declared INTEGER.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class SettlementBase(DeclarativeBase):
    metadata = metadata


def _enum(cls: type[enum.StrEnum], name: str) -> Enum:
    # Stores the VALUES ("in_progress"), with a named CHECK listing them on every backend.
    return Enum(
        cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=20,
        validate_strings=True,
        values_callable=lambda members: [member.value for member in members],
    )


class InsuredPersonRow(SettlementBase):
    """An insured person (参保人). Personal data: never logged unmasked."""

    __tablename__ = "insured_persons"

    id: Mapped[int] = mapped_column(primary_key=True)
    psn_no: Mapped[str] = mapped_column(String(30), unique=True)  # 人员编号
    citizen_id: Mapped[str] = mapped_column(String(18), unique=True)  # 社会保障号码
    name: Mapped[str] = mapped_column(String(30))
    birth_date: Mapped[dt.date] = mapped_column(Date)
    retired: Mapped[bool] = mapped_column(Boolean)  # 退休
    # The card registry's cardholder id (what a card session names). No foreign key: the
    # registry belongs to the issuance package (see the module docstring). NULL for a person
    # who has no card yet.
    holder_id: Mapped[int | None] = mapped_column(BigInteger, unique=True)


class Insurance(SettlementBase):
    """A person's insurance (参保信息): type and insured place."""

    __tablename__ = "insurances"
    __table_args__ = (
        UniqueConstraint("person_id", "insutype"),
        CheckConstraint("length(insuplc_admdvs) = 6", name="admdvs_length"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("insured_persons.id"))
    insutype: Mapped[str] = mapped_column(String(3))  # 险种, 310 职工基本医疗保险
    insuplc_admdvs: Mapped[str] = mapped_column(String(6))  # 参保地 (GB/T 2260), 310000
    psn_type: Mapped[str] = mapped_column(String(10))  # 人员类别, national code
    valid_from: Mapped[dt.date] = mapped_column(Date)
    valid_to: Mapped[dt.date | None] = mapped_column(Date)


class PersonalAccount(SettlementBase):
    """Personal account balances (个人账户): 当年账户 and 历年账户, in fen. ``account_year``
    is the year the current-year balance belongs to (at year end it rolls into past years)."""

    __tablename__ = "personal_accounts"
    __table_args__ = (
        CheckConstraint("current_year_fen >= 0", name="current_year_not_negative"),
        CheckConstraint("past_years_fen >= 0", name="past_years_not_negative"),
        # The year-end roll-over walks the accounts still in an ended year in this order
        # (settlement.rollover); a settle never changes account_year except when it rolls.
        Index("ix_personal_accounts_account_year_person_id", "account_year", "person_id"),
    )

    person_id: Mapped[int] = mapped_column(ForeignKey("insured_persons.id"), primary_key=True)
    account_year: Mapped[int] = mapped_column(SmallInteger)
    current_year_fen: Mapped[int] = mapped_column(BigInteger)
    past_years_fen: Mapped[int] = mapped_column(BigInteger)


class YearToDateTotals(SettlementBase):
    """A person's accumulators for one calendar year (年度累计), in fen."""

    __tablename__ = "year_to_date_totals"
    __table_args__ = (
        CheckConstraint("self_pay_band_consumed_fen >= 0", name="band_not_negative"),
        CheckConstraint("deductible_consumed_fen >= 0", name="deductible_not_negative"),
        CheckConstraint("pooling_fund_paid_fen >= 0", name="fund_paid_not_negative"),
    )

    person_id: Mapped[int] = mapped_column(ForeignKey("insured_persons.id"), primary_key=True)
    year: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    self_pay_band_consumed_fen: Mapped[int] = mapped_column(BigInteger)
    deductible_consumed_fen: Mapped[int] = mapped_column(BigInteger)
    pooling_fund_paid_fen: Mapped[int] = mapped_column(BigInteger)


class AccountRollover(SettlementBase):
    """One year-end roll-over (结转) of one personal account: what was left in the current-year
    account of ``from_year`` moved to the past-years account when ``to_year`` began
    (settlement.rollover). The primary key is the guard that makes it happen once: two
    workers, or a settle and the year-end job, rolling the same account race here and one
    wins. ``amount_fen`` may be 0 (nothing was left; no ledger transaction then)."""

    __tablename__ = "account_rollovers"
    __table_args__ = (
        CheckConstraint("amount_fen >= 0", name="amount_not_negative"),
        CheckConstraint("to_year > from_year", name="forwards"),
    )

    person_id: Mapped[int] = mapped_column(ForeignKey("insured_persons.id"), primary_key=True)
    from_year: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    to_year: Mapped[int] = mapped_column(SmallInteger)
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    rolled_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())


class RolloverYear(SettlementBase):
    """A finished year-end roll-over: no account is left in ``year`` or before. Written once
    (primary key) by whichever run found nothing left; ``accounts`` and ``amount_fen`` are the
    year's :class:`AccountRollover` rows (``from_year = year``) at that moment."""

    __tablename__ = "rollover_years"
    __table_args__ = (
        CheckConstraint("accounts >= 0", name="accounts_not_negative"),
        CheckConstraint("amount_fen >= 0", name="amount_not_negative"),
    )

    year: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    accounts: Mapped[int] = mapped_column(BigInteger)
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    completed_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())


class SettlementStatus(enum.StrEnum):
    SETTLED = "settled"
    CANCELLED = "cancelled"  # reversed by new ledger entries, never edited away


_SETTLEMENT_AMOUNTS: Final = (
    "medfee_sumamt",
    "fulamt_ownpay_amt",
    "preselfpay_amt",
    "inscp_scp_amt",
    "act_pay_dedc",
    "hifp_pay",
    "pool_prop_selfpay",
    "hifob_pay",
    "fund_pay_sumamt",
    "acct_pay",
    "acct_pay_current_year_fen",
    "acct_pay_past_years_fen",
    "psn_cash_pay",
    "balc",
    "self_pay_band_added_fen",
    "deductible_added_fen",
)


# The partial index's condition (migration st0004 writes the same string).
CANCELLED_ONLY: Final = "cancelled_at IS NOT NULL"


class SettlementRow(SettlementBase):
    """One settlement (结算) with its ``setlinfo`` amounts in fen."""

    __tablename__ = "settlements"
    __table_args__ = (
        *(
            CheckConstraint(f"{column} >= 0", name=f"{column}_not_negative")
            for column in _SETTLEMENT_AMOUNTS
        ),
        CheckConstraint(
            "medfee_sumamt = fund_pay_sumamt + acct_pay + psn_cash_pay", name="split_exact"
        ),
        CheckConstraint("fund_pay_sumamt = hifp_pay + hifob_pay", name="funds_add_up"),
        CheckConstraint(
            "acct_pay = acct_pay_current_year_fen + acct_pay_past_years_fen",
            name="accounts_add_up",
        ),
        CheckConstraint(
            "act_pay_dedc = self_pay_band_added_fen + deductible_added_fen",
            name="band_added_exact",
        ),
        CheckConstraint("hospital_level BETWEEN 1 AND 3", name="hospital_level_known"),
        Index("ix_settlements_fixmedins_code_setl_time", "fixmedins_code", "setl_time"),
        # The operations dashboard's day of settlements and of cancellations, every
        # institution at once (gateway.ops.activity). Few settlements are ever cancelled, so
        # only cancelled rows are indexed: a settle adds no entry to that index. Both
        # databases use it for a range on cancelled_at, which implies IS NOT NULL.
        Index("ix_settlements_setl_time", "setl_time"),
        Index(
            "ix_settlements_cancelled_at",
            "cancelled_at",
            sqlite_where=text(CANCELLED_ONLY),
            postgresql_where=text(CANCELLED_ONLY),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    setl_id: Mapped[str] = mapped_column(String(40), unique=True)  # 结算 ID
    mdtrt_id: Mapped[str] = mapped_column(String(40))  # 就诊 ID
    person_id: Mapped[int] = mapped_column(ForeignKey("insured_persons.id"), index=True)
    fixmedins_code: Mapped[str] = mapped_column(String(12))  # 定点医药机构编号
    insutype: Mapped[str] = mapped_column(String(3))
    visit_type: Mapped[str] = mapped_column(String(20))
    hospital_level: Mapped[int] = mapped_column(SmallInteger)
    visit_date: Mapped[dt.date] = mapped_column(Date)
    setl_time: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    policy_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[SettlementStatus] = mapped_column(_enum(SettlementStatus, "settlement_status"))
    medfee_sumamt: Mapped[int] = mapped_column(BigInteger)
    fulamt_ownpay_amt: Mapped[int] = mapped_column(BigInteger)
    preselfpay_amt: Mapped[int] = mapped_column(BigInteger)
    inscp_scp_amt: Mapped[int] = mapped_column(BigInteger)
    act_pay_dedc: Mapped[int] = mapped_column(BigInteger)
    hifp_pay: Mapped[int] = mapped_column(BigInteger)
    pool_prop_selfpay: Mapped[int] = mapped_column(BigInteger)
    hifob_pay: Mapped[int] = mapped_column(BigInteger)
    fund_pay_sumamt: Mapped[int] = mapped_column(BigInteger)
    acct_pay: Mapped[int] = mapped_column(BigInteger)
    acct_pay_current_year_fen: Mapped[int] = mapped_column(BigInteger)
    acct_pay_past_years_fen: Mapped[int] = mapped_column(BigInteger)
    psn_cash_pay: Mapped[int] = mapped_column(BigInteger)
    balc: Mapped[int] = mapped_column(BigInteger)
    # What this settlement added to the year's accumulators, so a cancel can take it back
    # without re-running the policy (which may have changed since).
    self_pay_band_added_fen: Mapped[int] = mapped_column(BigInteger)
    deductible_added_fen: Mapped[int] = mapped_column(BigInteger)
    cancelled_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())
    cancel_reason: Mapped[str | None] = mapped_column(String(200))


class SettlementLineRow(SettlementBase):
    """One fee line of a settlement (费用明细)."""

    __tablename__ = "settlement_lines"
    __table_args__ = (
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("unit_price_fen >= 0", name="unit_price_not_negative"),
        CheckConstraint("amount_fen = quantity * unit_price_fen", name="amount_exact"),
    )

    settlement_id: Mapped[int] = mapped_column(ForeignKey("settlements.id"), primary_key=True)
    line_no: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    catalogue_code: Mapped[str] = mapped_column(String(50))
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price_fen: Mapped[int] = mapped_column(BigInteger)
    amount_fen: Mapped[int] = mapped_column(BigInteger)


class AdmissionStatus(enum.StrEnum):
    OPEN = "open"  # 在院: fee lines may be uploaded
    DISCHARGED = "discharged"  # 出院结算 done: settled, no more fee lines


# The admission CHECKs (migration st0005 writes the same strings).
ADMISSION_DISCHARGED_HAS_SETTLEMENT: Final = (
    "(status = 'discharged') = (setl_id IS NOT NULL OR remote_msgid IS NOT NULL)"
)
ADMISSION_ONE_SETTLEMENT: Final = "setl_id IS NULL OR remote_msgid IS NULL"


class AdmissionRow(SettlementBase):
    """A registered visit (就诊登记): an inpatient stay (住院登记, 2401) or an outpatient visit
    registered before its fees (门诊挂号, 2201; ``visit_type``). Fee lines accumulate while it
    is open; its settlement (2304 at discharge, 2207) settles them all at once and links it:
    ``setl_id`` for a local one, ``remote_msgid`` (the ``remote_settlements`` message) for one
    through the national hub, exactly one of them once closed (``discharged``)."""

    __tablename__ = "admissions"
    __table_args__ = (
        CheckConstraint(ADMISSION_DISCHARGED_HAS_SETTLEMENT, name="discharged_has_settlement"),
        CheckConstraint(ADMISSION_ONE_SETTLEMENT, name="one_settlement"),
        CheckConstraint("line_count >= 0", name="line_count_not_negative"),
        Index("ix_admissions_fixmedins_code_admission_date", "fixmedins_code", "admission_date"),
        # A unique index rather than a UNIQUE constraint: SQLite can add an index to a table
        # that has rows and dependants, but a constraint only by rebuilding the table (st0005).
        Index("uq_admissions_remote_msgid", "remote_msgid", unique=True),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    admission_id: Mapped[str] = mapped_column(String(40), unique=True)  # 就诊 ID (mdtrt_id)
    person_id: Mapped[int] = mapped_column(ForeignKey("insured_persons.id"), index=True)
    fixmedins_code: Mapped[str] = mapped_column(String(12))
    admission_date: Mapped[dt.date] = mapped_column(Date)
    # "inpatient" (a stay, 2401) or "outpatient" (a registered outpatient visit, 2201); each
    # use case opens only its own kind (st0007: every older row is a stay).
    visit_type: Mapped[str] = mapped_column(
        String(16), default="inpatient", server_default="inpatient"
    )
    status: Mapped[AdmissionStatus] = mapped_column(_enum(AdmissionStatus, "admission_status"))
    # Lines on the visit now (uploaded, less a cancelled batch's): the bound on a visit is
    # checked against it under the row lock.
    line_count: Mapped[int] = mapped_column(Integer)
    setl_id: Mapped[str | None] = mapped_column(ForeignKey("settlements.setl_id"), unique=True)
    # A discharge through the hub (2304): its msgid (settlement.crossprov.wire.make_msgid, 30
    # characters). Not a row of ``settlements`` (docs/cross-province.md), so no setl_id; set in
    # the transaction that books the hub's confirmation. No foreign key: remote_settlements
    # lives in settlement.crossprov, which a create_all of this module alone would not know.
    remote_msgid: Mapped[str | None] = mapped_column(String(30))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    # A stay's discharge (出院, 2402, st0008): recorded on the open stay, or by its settlement
    # at discharge; cleared by 2405. None: not discharged yet (and every outpatient visit).
    discharge_date: Mapped[dt.date | None] = mapped_column(Date)


class AdmissionFeeLineRow(SettlementBase):
    """One uploaded fee line of a registered visit (住院费用明细 2301, 门诊费用明细 2204)."""

    __tablename__ = "admission_fee_lines"
    __table_args__ = (
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("unit_price_fen >= 0", name="unit_price_not_negative"),
    )

    admission_id: Mapped[int] = mapped_column(ForeignKey("admissions.id"), primary_key=True)
    line_no: Mapped[int] = mapped_column(Integer, primary_key=True)
    catalogue_code: Mapped[str] = mapped_column(String(50))
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price_fen: Mapped[int] = mapped_column(BigInteger)
    # The upload's batch (收费批次号 chrg_bchno) and the HIS's own line number (费用明细流水号
    # feedetl_sn), when the national interface sent them: a batch is cancelled as a whole
    # (2205, 2302) while the visit is open.
    chrg_bchno: Mapped[str | None] = mapped_column(String(30))
    feedetl_sn: Mapped[str | None] = mapped_column(String(30))


class ReconciliationRun(SettlementBase):
    """One reconciliation request (3201 totals or 3202 details) and its outcome, kept so that
    operations can list a day's mismatches. ``figures`` is the JSON answer, verbatim."""

    __tablename__ = "reconciliation_runs"
    __table_args__ = (Index("ix_reconciliation_runs_stmt_date_matched", "stmt_date", "matched"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    fixmedins_code: Mapped[str] = mapped_column(String(12))
    stmt_date: Mapped[dt.date] = mapped_column(Date)
    clr_type: Mapped[str] = mapped_column(String(2))
    kind: Mapped[str] = mapped_column(String(10))  # "totals" (3201) or "details" (3202)
    matched: Mapped[bool] = mapped_column(Boolean)
    figures: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())


class IdempotencyStatus(enum.StrEnum):
    IN_PROGRESS = "in_progress"
    DONE = "done"


class IdempotencyKey(SettlementBase):
    """An ``Idempotency-Key`` (DOMAIN §7), scoped to the client identity. The primary key is
    the guard: two workers inserting the same (client_id, idempotency_key) race in the
    database and exactly one wins. Kept at least 24 h (``expires_at``)."""

    __tablename__ = "settlement_idempotency_keys"
    __table_args__ = (
        CheckConstraint("length(request_sha256) = 64", name="request_hash_length"),
        CheckConstraint(
            "(status = 'done') = (response_body IS NOT NULL AND response_status IS NOT NULL)",
            name="done_has_response",
        ),
    )

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)  # terminal / institution
    idempotency_key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_sha256: Mapped[str] = mapped_column(String(64))  # hex digest of the canonical body
    status: Mapped[IdempotencyStatus] = mapped_column(
        _enum(IdempotencyStatus, "idempotency_status")
    )
    response_status: Mapped[int | None] = mapped_column(SmallInteger)
    response_body: Mapped[str | None] = mapped_column(Text)  # the first response, verbatim
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), index=True)


class LedgerTransaction(SettlementBase):
    """One balanced ledger transaction (记账凭证). ``(kind, settlement_id)`` is unique, so a
    settlement is posted once and reversed at most once."""

    __tablename__ = "ledger_transactions"
    __table_args__ = (UniqueConstraint("kind", "settlement_id"),)

    txn_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))  # "settle", "cancel", …
    settlement_id: Mapped[int | None] = mapped_column(ForeignKey("settlements.id"))
    reverses_txn_id: Mapped[str | None] = mapped_column(
        ForeignKey("ledger_transactions.txn_id"), unique=True
    )
    posted_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())


class LedgerSide(enum.StrEnum):
    DEBIT = "debit"
    CREDIT = "credit"


class LedgerEntry(SettlementBase):
    """One line of a transaction: an account, a side and a positive amount in fen.
    Append-only: see :data:`LEDGER_APPEND_ONLY_DDL`."""

    __tablename__ = "ledger_entries"
    __table_args__ = (CheckConstraint("amount_fen > 0", name="amount_positive"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    txn_id: Mapped[str] = mapped_column(ForeignKey("ledger_transactions.txn_id"), index=True)
    account: Mapped[str] = mapped_column(String(80), index=True)
    side: Mapped[LedgerSide] = mapped_column(_enum(LedgerSide, "ledger_side"))
    amount_fen: Mapped[int] = mapped_column(BigInteger)


# Triggers that make ledger_entries append-only, per dialect. The migration runs the same
# statements; create_all (tests) runs them through the DDL events below.
LEDGER_APPEND_ONLY_DDL: Final = {
    "sqlite": (
        "CREATE TRIGGER ledger_entries_no_update BEFORE UPDATE ON ledger_entries "
        "BEGIN SELECT RAISE(ABORT, 'ledger entries are append-only'); END",
        "CREATE TRIGGER ledger_entries_no_delete BEFORE DELETE ON ledger_entries "
        "BEGIN SELECT RAISE(ABORT, 'ledger entries are append-only'); END",
    ),
    "postgresql": (
        "CREATE FUNCTION ledger_entries_append_only() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'ledger entries are append-only'; END $$",
        "CREATE TRIGGER ledger_entries_no_change BEFORE UPDATE OR DELETE ON ledger_entries "
        "FOR EACH ROW EXECUTE FUNCTION ledger_entries_append_only()",
    ),
}
LEDGER_APPEND_ONLY_DROP_DDL: Final = {
    "sqlite": (
        "DROP TRIGGER IF EXISTS ledger_entries_no_update",
        "DROP TRIGGER IF EXISTS ledger_entries_no_delete",
    ),
    "postgresql": (
        "DROP TRIGGER IF EXISTS ledger_entries_no_change ON ledger_entries",
        "DROP FUNCTION IF EXISTS ledger_entries_append_only()",
    ),
}

for _dialect, _statements in LEDGER_APPEND_ONLY_DDL.items():
    for _statement in _statements:
        event.listen(
            LedgerEntry.__table__,
            "after_create",
            DDL(_statement).execute_if(dialect=_dialect),  # type: ignore[no-untyped-call]
        )
for _dialect, _statements in LEDGER_APPEND_ONLY_DROP_DDL.items():
    for _statement in _statements:
        event.listen(
            LedgerEntry.__table__,
            "before_drop",
            DDL(_statement).execute_if(dialect=_dialect),  # type: ignore[no-untyped-call]
        )
