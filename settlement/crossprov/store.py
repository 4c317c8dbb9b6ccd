"""Tables of cross-province settlement, on the settlement package's MetaData (migrated by
``settlement/migrations/versions/st0003_cross_province.py``).

* ``crossprov_filings``: filings (备案) registered at the gateway;
* ``remote_settlements``: one row per hub call that may move money (settle or its cancel),
  written as ``intent`` BEFORE the call; its ``msgid`` is unique, so a message is never sent
  for two purposes, and its status walks the state machine of :mod:`.remote`;
* ``hub_reversals``: the durable reversal queue (冲正, 2601) for outcomes that are unknown,
  claimed by lease so that several workers and a restart are safe; it also holds each
  cancelled (or cancelling) settlement's *cancel check* (``oinfno`` the cancel's infno), leased
  to the request sending the cancel and resolved by the reversal task when its outcome is
  unknown (settlement.crossprov.remote).

The database holds the rules: a confirmed settlement has its verbatim ``setlinfo`` and exact
amounts (``medfee_sumamt = fund_pay_sumamt + acct_pay + psn_cash_pay``); a referral filing has
its validity and target institution; one reversal per message.
"""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from dbkit import UtcDateTime
from settlement.store import BigId, SettlementBase

__all__ = [
    "FilingRow",
    "FilingType",
    "HubReversalRow",
    "RemoteSettlementRow",
    "RemoteStatus",
    "ReversalStatus",
]


def _enum(cls: type[enum.StrEnum], name: str) -> Enum:
    # The values, with a named CHECK, on every backend (as settlement.store does).
    return Enum(
        cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=20,
        validate_strings=True,
        values_callable=lambda members: [member.value for member in members],
    )


class FilingType(enum.StrEnum):
    RESETTLED_RETIREE = "resettled_retiree"  # 异地安置退休
    LONG_TERM_RESIDENT = "long_term_resident"  # 异地长期居住
    REFERRAL = "referral"  # 转诊转院: its own validity and target institution
    EMERGENCY = "emergency"  # 急诊抢救: counts as filed without a record

    @property
    def temporary(self) -> bool:
        """Temporary cases, for which the insured place may pay less (DOMAIN §5 [weak])."""
        return self in (FilingType.REFERRAL, FilingType.EMERGENCY)


class FilingRow(SettlementBase):
    """A filing (备案) of a person insured elsewhere, for settling in Shanghai."""

    __tablename__ = "crossprov_filings"
    __table_args__ = (
        CheckConstraint("valid_to IS NULL OR valid_to >= valid_from", name="validity_ordered"),
        CheckConstraint(
            "filing_type != 'referral' OR (valid_to IS NOT NULL "
            "AND target_fixmedins_code IS NOT NULL)",
            name="referral_bounded",
        ),
        CheckConstraint("length(insuplc_admdvs) = 6", name="admdvs_length"),
        Index("ix_crossprov_filings_psn_no", "psn_no", "valid_from"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    filing_id: Mapped[str] = mapped_column(String(40), unique=True)
    psn_no: Mapped[str] = mapped_column(String(30))
    insuplc_admdvs: Mapped[str] = mapped_column(String(6))
    filing_type: Mapped[FilingType] = mapped_column(_enum(FilingType, "filing_type"))
    valid_from: Mapped[dt.date] = mapped_column(Date)
    valid_to: Mapped[dt.date | None] = mapped_column(Date)
    # A referral names the institution it refers the patient to (NULL: any in Shanghai).
    target_fixmedins_code: Mapped[str | None] = mapped_column(String(12))
    registered_by: Mapped[str] = mapped_column(String(12))  # institution that registered it
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())


class RemoteStatus(enum.StrEnum):
    INTENT = "intent"  # written before the call; outcome not known yet
    CONFIRMED = "confirmed"  # the hub settled it: setlinfo stored, ledger posted
    FAILED = "failed"  # the hub refused, or nothing was sent: nothing posted
    UNKNOWN = "unknown"  # no answer: queued for reversal
    REVERSED = "reversed"  # the hub confirmed the reversal: nothing stands on either side
    CANCELLED = "cancelled"  # confirmed, then cancelled at the hub (2208/2103/2305)


class RemoteSettlementRow(SettlementBase):
    """One settle message to the hub, from intent to its outcome.

    Amounts are int fen parsed from the hub's ``setlinfo`` (stored verbatim beside them and
    never recomputed); NULL until confirmed.
    """

    __tablename__ = "remote_settlements"
    __table_args__ = (
        CheckConstraint(
            "(status IN ('confirmed', 'cancelled')) = (setlinfo_json IS NOT NULL)",
            name="confirmed_has_setlinfo",
        ),
        CheckConstraint(
            "setlinfo_json IS NULL OR (setl_id IS NOT NULL AND medfee_sumamt IS NOT NULL "
            "AND fund_pay_sumamt IS NOT NULL AND acct_pay IS NOT NULL "
            "AND psn_cash_pay IS NOT NULL AND setl_time IS NOT NULL)",
            name="confirmed_has_amounts",
        ),
        CheckConstraint(
            "medfee_sumamt IS NULL OR medfee_sumamt = fund_pay_sumamt + acct_pay + psn_cash_pay",
            name="split_exact",
        ),
        CheckConstraint(
            "fund_pay_sumamt IS NULL OR (fund_pay_sumamt >= 0 AND acct_pay >= 0 "
            "AND psn_cash_pay >= 0)",
            name="amounts_not_negative",
        ),
        CheckConstraint(
            "(status = 'cancelled') = (cancelled_at IS NOT NULL)", name="cancelled_has_time"
        ),
        Index("ix_remote_settlements_status_created_at", "status", "created_at"),
        Index("ix_remote_settlements_insuplc_admdvs_setl_time", "insuplc_admdvs", "setl_time"),
        Index("ix_remote_settlements_fixmedins_code_created_at", "fixmedins_code", "created_at"),
        # A stay's discharges through the hub (gateway.crossprov: mdtrt_id is the admission id).
        Index("ix_remote_settlements_fixmedins_code_mdtrt_id", "fixmedins_code", "mdtrt_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    msgid: Mapped[str] = mapped_column(String(30), unique=True)  # 报文 ID, reused on retry
    infno: Mapped[str] = mapped_column(String(4))  # 2207 / 2102 / 2304
    route: Mapped[str] = mapped_column(String(20))
    status: Mapped[RemoteStatus] = mapped_column(_enum(RemoteStatus, "remote_status"))
    psn_no: Mapped[str] = mapped_column(String(30))
    insuplc_admdvs: Mapped[str] = mapped_column(String(6))
    fixmedins_code: Mapped[str] = mapped_column(String(12))
    mdtrt_id: Mapped[str] = mapped_column(String(40))
    visit_type: Mapped[str] = mapped_column(String(20))
    visit_date: Mapped[dt.date] = mapped_column(Date)
    filing_type: Mapped[str] = mapped_column(String(20))
    # The Idempotency-Key that asked for it: released when the outcome is unknown (or the row
    # is found stale after a crash), so the terminal's retry settles afresh.
    client_id: Mapped[str | None] = mapped_column(String(64))
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    request_json: Mapped[str] = mapped_column(Text)  # the input sent, verbatim
    setlinfo_json: Mapped[str | None] = mapped_column(Text)  # the hub's answer, verbatim
    setl_id: Mapped[str | None] = mapped_column(String(40), unique=True)
    setl_time: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())
    medfee_sumamt: Mapped[int | None] = mapped_column(BigInteger)
    fund_pay_sumamt: Mapped[int | None] = mapped_column(BigInteger)
    acct_pay: Mapped[int | None] = mapped_column(BigInteger)
    psn_cash_pay: Mapped[int | None] = mapped_column(BigInteger)
    err_code: Mapped[str | None] = mapped_column(String(40))
    err_msg: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    resolved_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())
    # The cancel (2208/2103/2305) message: written before the cancel call and reused by every
    # retry of it, so the hub (idempotent by msgid) cancels once.
    cancel_msgid: Mapped[str | None] = mapped_column(String(30), unique=True)
    cancel_json: Mapped[str | None] = mapped_column(Text)  # the cancellation setlinfo
    cancel_reason: Mapped[str | None] = mapped_column(String(200))
    cancelled_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())


class ReversalStatus(enum.StrEnum):
    PENDING = "pending"  # due at next_attempt_at; a worker holding the lease is sending 2601
    DONE = "done"  # the hub confirmed: the message stands on neither side


class HubReversalRow(SettlementBase):
    """The durable reversal queue (冲正队列): one row per settle message whose outcome is
    unknown (``oinfno`` its settle infno), or per settlement being cancelled (``oinfno`` the
    cancel's infno: the cancel check of ``remote_settlements.cancel_msgid``)."""

    __tablename__ = "hub_reversals"
    __table_args__ = (
        CheckConstraint("attempts >= 0", name="attempts_not_negative"),
        CheckConstraint("(status = 'done') = (done_at IS NOT NULL)", name="done_has_time"),
        Index("ix_hub_reversals_status_next_attempt_at", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    omsgid: Mapped[str] = mapped_column(ForeignKey("remote_settlements.msgid"), unique=True)
    oinfno: Mapped[str] = mapped_column(String(4))
    insuplc_admdvs: Mapped[str] = mapped_column(String(6))
    status: Mapped[ReversalStatus] = mapped_column(_enum(ReversalStatus, "reversal_status"))
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())
    last_error: Mapped[str | None] = mapped_column(String(200))
    # The hub's answer: True when it had committed the settle and undid it now.
    hub_reversed: Mapped[bool | None] = mapped_column(Boolean)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    done_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())
