"""Settlement: insured persons, accounts, year-to-date totals, settlements, idempotency keys
and the append-only ledger (settlement.store).

Revision ID: st0001
Revises:
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "st0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("settlement",)
depends_on: str | Sequence[str] | None = None

# Frozen copies of settlement.store.LEDGER_APPEND_ONLY_DDL / _DROP_DDL as of this revision: a
# migration never imports the models it migrates (they move on; this script must not).
_APPEND_ONLY = {
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
_APPEND_ONLY_DROP = {
    "sqlite": (
        "DROP TRIGGER IF EXISTS ledger_entries_no_update",
        "DROP TRIGGER IF EXISTS ledger_entries_no_delete",
    ),
    "postgresql": (
        "DROP TRIGGER IF EXISTS ledger_entries_no_change ON ledger_entries",
        "DROP FUNCTION IF EXISTS ledger_entries_append_only()",
    ),
}


def upgrade() -> None:
    op.create_table(
        "insured_persons",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("psn_no", sa.String(length=30), nullable=False),
        sa.Column("citizen_id", sa.String(length=18), nullable=False),
        sa.Column("name", sa.String(length=30), nullable=False),
        sa.Column("birth_date", sa.Date(), nullable=False),
        sa.Column("retired", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_insured_persons")),
        sa.UniqueConstraint("citizen_id", name=op.f("uq_insured_persons_citizen_id")),
        sa.UniqueConstraint("psn_no", name=op.f("uq_insured_persons_psn_no")),
    )
    op.create_table(
        "settlement_idempotency_keys",
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=False),
        sa.Column("request_sha256", sa.String(length=64), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "in_progress",
                "done",
                name="idempotency_status",
                native_enum=False,
                create_constraint=True,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("response_status", sa.SmallInteger(), nullable=True),
        sa.Column("response_body", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "(status = 'done') = (response_body IS NOT NULL AND response_status IS NOT NULL)",
            name=op.f("ck_settlement_idempotency_keys_done_has_response"),
        ),
        sa.CheckConstraint(
            "length(request_sha256) = 64",
            name=op.f("ck_settlement_idempotency_keys_request_hash_length"),
        ),
        sa.PrimaryKeyConstraint(
            "client_id", "idempotency_key", name=op.f("pk_settlement_idempotency_keys")
        ),
    )
    op.create_index(
        op.f("ix_settlement_idempotency_keys_expires_at"),
        "settlement_idempotency_keys",
        ["expires_at"],
        unique=False,
    )
    op.create_table(
        "insurances",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("insutype", sa.String(length=3), nullable=False),
        sa.Column("insuplc_admdvs", sa.String(length=6), nullable=False),
        sa.Column("psn_type", sa.String(length=10), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=False),
        sa.Column("valid_to", sa.Date(), nullable=True),
        sa.CheckConstraint("length(insuplc_admdvs) = 6", name=op.f("ck_insurances_admdvs_length")),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["insured_persons.id"],
            name=op.f("fk_insurances_person_id_insured_persons"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_insurances")),
        sa.UniqueConstraint("person_id", "insutype", name=op.f("uq_insurances_person_id_insutype")),
    )
    op.create_table(
        "personal_accounts",
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("account_year", sa.SmallInteger(), nullable=False),
        sa.Column("current_year_fen", sa.BigInteger(), nullable=False),
        sa.Column("past_years_fen", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "current_year_fen >= 0", name=op.f("ck_personal_accounts_current_year_not_negative")
        ),
        sa.CheckConstraint(
            "past_years_fen >= 0", name=op.f("ck_personal_accounts_past_years_not_negative")
        ),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["insured_persons.id"],
            name=op.f("fk_personal_accounts_person_id_insured_persons"),
        ),
        sa.PrimaryKeyConstraint("person_id", name=op.f("pk_personal_accounts")),
    )
    op.create_table(
        "settlements",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("setl_id", sa.String(length=40), nullable=False),
        sa.Column("mdtrt_id", sa.String(length=40), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("fixmedins_code", sa.String(length=12), nullable=False),
        sa.Column("insutype", sa.String(length=3), nullable=False),
        sa.Column("visit_type", sa.String(length=20), nullable=False),
        sa.Column("hospital_level", sa.SmallInteger(), nullable=False),
        sa.Column("visit_date", sa.Date(), nullable=False),
        sa.Column("setl_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("policy_id", sa.String(length=64), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "settled",
                "cancelled",
                name="settlement_status",
                native_enum=False,
                create_constraint=True,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("medfee_sumamt", sa.BigInteger(), nullable=False),
        sa.Column("fulamt_ownpay_amt", sa.BigInteger(), nullable=False),
        sa.Column("preselfpay_amt", sa.BigInteger(), nullable=False),
        sa.Column("inscp_scp_amt", sa.BigInteger(), nullable=False),
        sa.Column("act_pay_dedc", sa.BigInteger(), nullable=False),
        sa.Column("hifp_pay", sa.BigInteger(), nullable=False),
        sa.Column("pool_prop_selfpay", sa.BigInteger(), nullable=False),
        sa.Column("hifob_pay", sa.BigInteger(), nullable=False),
        sa.Column("fund_pay_sumamt", sa.BigInteger(), nullable=False),
        sa.Column("acct_pay", sa.BigInteger(), nullable=False),
        sa.Column("acct_pay_current_year_fen", sa.BigInteger(), nullable=False),
        sa.Column("acct_pay_past_years_fen", sa.BigInteger(), nullable=False),
        sa.Column("psn_cash_pay", sa.BigInteger(), nullable=False),
        sa.Column("balc", sa.BigInteger(), nullable=False),
        sa.Column("self_pay_band_added_fen", sa.BigInteger(), nullable=False),
        sa.Column("deductible_added_fen", sa.BigInteger(), nullable=False),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "acct_pay = acct_pay_current_year_fen + acct_pay_past_years_fen",
            name=op.f("ck_settlements_accounts_add_up"),
        ),
        sa.CheckConstraint("acct_pay >= 0", name=op.f("ck_settlements_acct_pay_not_negative")),
        sa.CheckConstraint(
            "acct_pay_current_year_fen >= 0",
            name=op.f("ck_settlements_acct_pay_current_year_fen_not_negative"),
        ),
        sa.CheckConstraint(
            "acct_pay_past_years_fen >= 0",
            name=op.f("ck_settlements_acct_pay_past_years_fen_not_negative"),
        ),
        sa.CheckConstraint(
            "act_pay_dedc >= 0", name=op.f("ck_settlements_act_pay_dedc_not_negative")
        ),
        sa.CheckConstraint("balc >= 0", name=op.f("ck_settlements_balc_not_negative")),
        sa.CheckConstraint(
            "act_pay_dedc = self_pay_band_added_fen + deductible_added_fen",
            name=op.f("ck_settlements_band_added_exact"),
        ),
        sa.CheckConstraint(
            "self_pay_band_added_fen >= 0",
            name=op.f("ck_settlements_self_pay_band_added_fen_not_negative"),
        ),
        sa.CheckConstraint(
            "deductible_added_fen >= 0",
            name=op.f("ck_settlements_deductible_added_fen_not_negative"),
        ),
        sa.CheckConstraint(
            "fulamt_ownpay_amt >= 0", name=op.f("ck_settlements_fulamt_ownpay_amt_not_negative")
        ),
        sa.CheckConstraint(
            "fund_pay_sumamt = hifp_pay + hifob_pay", name=op.f("ck_settlements_funds_add_up")
        ),
        sa.CheckConstraint(
            "fund_pay_sumamt >= 0", name=op.f("ck_settlements_fund_pay_sumamt_not_negative")
        ),
        sa.CheckConstraint("hifob_pay >= 0", name=op.f("ck_settlements_hifob_pay_not_negative")),
        sa.CheckConstraint("hifp_pay >= 0", name=op.f("ck_settlements_hifp_pay_not_negative")),
        sa.CheckConstraint(
            "hospital_level BETWEEN 1 AND 3", name=op.f("ck_settlements_hospital_level_known")
        ),
        sa.CheckConstraint(
            "inscp_scp_amt >= 0", name=op.f("ck_settlements_inscp_scp_amt_not_negative")
        ),
        sa.CheckConstraint(
            "medfee_sumamt = fund_pay_sumamt + acct_pay + psn_cash_pay",
            name=op.f("ck_settlements_split_exact"),
        ),
        sa.CheckConstraint(
            "medfee_sumamt >= 0", name=op.f("ck_settlements_medfee_sumamt_not_negative")
        ),
        sa.CheckConstraint(
            "pool_prop_selfpay >= 0", name=op.f("ck_settlements_pool_prop_selfpay_not_negative")
        ),
        sa.CheckConstraint(
            "preselfpay_amt >= 0", name=op.f("ck_settlements_preselfpay_amt_not_negative")
        ),
        sa.CheckConstraint(
            "psn_cash_pay >= 0", name=op.f("ck_settlements_psn_cash_pay_not_negative")
        ),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["insured_persons.id"],
            name=op.f("fk_settlements_person_id_insured_persons"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_settlements")),
        sa.UniqueConstraint("setl_id", name=op.f("uq_settlements_setl_id")),
    )
    op.create_index(
        "ix_settlements_fixmedins_code_setl_time",
        "settlements",
        ["fixmedins_code", "setl_time"],
        unique=False,
    )
    op.create_index(op.f("ix_settlements_person_id"), "settlements", ["person_id"], unique=False)
    op.create_table(
        "year_to_date_totals",
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("year", sa.SmallInteger(), nullable=False),
        sa.Column("self_pay_band_consumed_fen", sa.BigInteger(), nullable=False),
        sa.Column("deductible_consumed_fen", sa.BigInteger(), nullable=False),
        sa.Column("pooling_fund_paid_fen", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "deductible_consumed_fen >= 0",
            name=op.f("ck_year_to_date_totals_deductible_not_negative"),
        ),
        sa.CheckConstraint(
            "pooling_fund_paid_fen >= 0", name=op.f("ck_year_to_date_totals_fund_paid_not_negative")
        ),
        sa.CheckConstraint(
            "self_pay_band_consumed_fen >= 0", name=op.f("ck_year_to_date_totals_band_not_negative")
        ),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["insured_persons.id"],
            name=op.f("fk_year_to_date_totals_person_id_insured_persons"),
        ),
        sa.PrimaryKeyConstraint("person_id", "year", name=op.f("pk_year_to_date_totals")),
    )
    op.create_table(
        "ledger_transactions",
        sa.Column("txn_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("settlement_id", sa.Integer(), nullable=True),
        sa.Column("reverses_txn_id", sa.String(length=64), nullable=True),
        sa.Column("posted_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["reverses_txn_id"],
            ["ledger_transactions.txn_id"],
            name=op.f("fk_ledger_transactions_reverses_txn_id_ledger_transactions"),
        ),
        sa.ForeignKeyConstraint(
            ["settlement_id"],
            ["settlements.id"],
            name=op.f("fk_ledger_transactions_settlement_id_settlements"),
        ),
        sa.PrimaryKeyConstraint("txn_id", name=op.f("pk_ledger_transactions")),
        sa.UniqueConstraint(
            "kind", "settlement_id", name=op.f("uq_ledger_transactions_kind_settlement_id")
        ),
        sa.UniqueConstraint("reverses_txn_id", name=op.f("uq_ledger_transactions_reverses_txn_id")),
    )
    op.create_table(
        "settlement_lines",
        sa.Column("settlement_id", sa.Integer(), nullable=False),
        sa.Column("line_no", sa.SmallInteger(), nullable=False),
        sa.Column("catalogue_code", sa.String(length=50), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("unit_price_fen", sa.BigInteger(), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "amount_fen = quantity * unit_price_fen", name=op.f("ck_settlement_lines_amount_exact")
        ),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_settlement_lines_quantity_positive")),
        sa.CheckConstraint(
            "unit_price_fen >= 0", name=op.f("ck_settlement_lines_unit_price_not_negative")
        ),
        sa.ForeignKeyConstraint(
            ["settlement_id"],
            ["settlements.id"],
            name=op.f("fk_settlement_lines_settlement_id_settlements"),
        ),
        sa.PrimaryKeyConstraint("settlement_id", "line_no", name=op.f("pk_settlement_lines")),
    )
    op.create_table(
        "ledger_entries",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("txn_id", sa.String(length=64), nullable=False),
        sa.Column("account", sa.String(length=80), nullable=False),
        sa.Column(
            "side",
            sa.Enum(
                "debit",
                "credit",
                name="ledger_side",
                native_enum=False,
                create_constraint=True,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("amount_fen > 0", name=op.f("ck_ledger_entries_amount_positive")),
        sa.ForeignKeyConstraint(
            ["txn_id"],
            ["ledger_transactions.txn_id"],
            name=op.f("fk_ledger_entries_txn_id_ledger_transactions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_entries")),
    )
    op.create_index(op.f("ix_ledger_entries_account"), "ledger_entries", ["account"], unique=False)
    op.create_index(op.f("ix_ledger_entries_txn_id"), "ledger_entries", ["txn_id"], unique=False)

    for statement in _APPEND_ONLY.get(op.get_bind().dialect.name, ()):
        op.execute(statement)


def downgrade() -> None:
    for statement in _APPEND_ONLY_DROP.get(op.get_bind().dialect.name, ()):
        op.execute(statement)
    op.drop_index(op.f("ix_ledger_entries_txn_id"), table_name="ledger_entries")
    op.drop_index(op.f("ix_ledger_entries_account"), table_name="ledger_entries")
    op.drop_table("ledger_entries")
    op.drop_table("settlement_lines")
    op.drop_table("ledger_transactions")
    op.drop_table("year_to_date_totals")
    op.drop_index(op.f("ix_settlements_person_id"), table_name="settlements")
    op.drop_index("ix_settlements_fixmedins_code_setl_time", table_name="settlements")
    op.drop_table("settlements")
    op.drop_table("personal_accounts")
    op.drop_table("insurances")
    op.drop_index(
        op.f("ix_settlement_idempotency_keys_expires_at"), table_name="settlement_idempotency_keys"
    )
    op.drop_table("settlement_idempotency_keys")
    op.drop_table("insured_persons")
