"""A settlement's outcome, named after the national interface's ``setlinfo`` fields.

Every amount here is int fen (the national interface sends yuan with two decimals; render
with :func:`settlement.money.format_yuan`). :meth:`SettlementResult.check_invariants` states
the postconditions the engine asserts on every result.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Final

from settlement.claim import AccountBalances, YearToDate
from settlement.policy import BenefitCategory

__all__ = [
    "FUND_POOLING",
    "FUND_SUPPLEMENTARY",
    "AccountPayment",
    "FundPayment",
    "SettlementResult",
]

# National fund_pay_type codes in setldetail [code: HIS integrations agree].
FUND_POOLING: Final = ("310100", "职工基本医疗保险统筹基金 pooling fund")
# Shanghai's 附加基金 (above the annual cap) reported as the national employees' large-expense
# subsidy, its nearest national fund type [weak: our mapping].
FUND_SUPPLEMENTARY: Final = ("310300", "职工大额医疗费用补助 (附加基金) supplementary fund")


@dataclass(frozen=True, slots=True)
class FundPayment:
    """One ``setldetail`` row: what one fund pays."""

    fund_pay_type: str
    fund_name: str
    amount_fen: int


@dataclass(frozen=True, slots=True)
class AccountPayment:
    """``acct_pay`` split by account."""

    current_year_fen: int  # 当年账户
    past_years_fen: int  # 历年账户

    @property
    def total_fen(self) -> int:
        return self.current_year_fen + self.past_years_fen


@dataclass(frozen=True, slots=True)
class SettlementResult:
    """The split of one claim (all int fen).

    Identities (asserted by :meth:`check_invariants`)::

        medfee_sumamt   = fulamt_ownpay_amt + preselfpay_amt + inscp_scp_amt
        inscp_scp_amt   = acct_detail.current_year_fen + act_pay_dedc + hifp_pay + hifob_pay
                          + pool_prop_selfpay
        fund_pay_sumamt = hifp_pay + hifob_pay = sum(setldetail)
        acct_pay        = acct_detail.current_year_fen + acct_detail.past_years_fen
        medfee_sumamt   = fund_pay_sumamt + acct_pay + psn_cash_pay
        psn_part_amt    = acct_pay + psn_cash_pay
    """

    policy_id: str
    benefit_category: BenefitCategory
    medfee_sumamt: int  # 医疗费总额
    fulamt_ownpay_amt: int  # 全自费金额 (丙 items)
    preselfpay_amt: int  # 先行自付金额 (first part of 乙 items)
    inscp_scp_amt: int  # 符合政策范围金额
    act_pay_dedc: int  # 实际支付起付线: 自负段 (outpatient rules) or 起付线 (inpatient rules)
    hifp_pay: int  # 统筹基金支出
    pool_prop_selfpay: int  # 统筹支付比例内自付: the patient's share beside the funds
    hifob_pay: int  # 附加基金 above the annual cap
    fund_pay_sumamt: int  # 基金支付总额
    psn_part_amt: int  # 个人负担总金额
    acct_pay: int  # 个人账户支出
    acct_detail: AccountPayment
    psn_cash_pay: int  # 个人现金支出
    balc: int  # 余额: both accounts after this settlement
    setldetail: tuple[FundPayment, ...]
    explanation: tuple[str, ...]  # one line per step, Chinese term + English
    year_to_date_after: YearToDate
    balances_after: AccountBalances

    def check_invariants(self, *, year_to_date: YearToDate, balances: AccountBalances) -> None:
        """Assert the identities above, no negative amount, balances never overdrawn, and
        accumulators that only grow. ``year_to_date`` and ``balances`` are the inputs."""
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, int) and not isinstance(value, bool):
                assert value >= 0, (field.name, value)
        current, past = self.acct_detail.current_year_fen, self.acct_detail.past_years_fen
        assert current >= 0
        assert past >= 0
        assert self.medfee_sumamt == (
            self.fulamt_ownpay_amt + self.preselfpay_amt + self.inscp_scp_amt
        )
        assert self.inscp_scp_amt == (
            current + self.act_pay_dedc + self.hifp_pay + self.hifob_pay + self.pool_prop_selfpay
        )
        assert self.fund_pay_sumamt == self.hifp_pay + self.hifob_pay
        assert self.fund_pay_sumamt == sum(row.amount_fen for row in self.setldetail)
        assert all(row.amount_fen > 0 for row in self.setldetail)
        assert self.acct_pay == current + past
        assert self.medfee_sumamt == self.fund_pay_sumamt + self.acct_pay + self.psn_cash_pay
        assert self.psn_part_amt == self.acct_pay + self.psn_cash_pay
        assert current <= balances.current_year_fen
        assert past <= balances.past_years_fen
        after = self.balances_after
        assert after.current_year_fen == balances.current_year_fen - current
        assert after.past_years_fen == balances.past_years_fen - past
        assert self.balc == after.total_fen
        ytd = self.year_to_date_after
        assert ytd.self_pay_band_consumed_fen >= year_to_date.self_pay_band_consumed_fen
        assert ytd.deductible_consumed_fen >= year_to_date.deductible_consumed_fen
        assert ytd.pooling_fund_paid_fen == year_to_date.pooling_fund_paid_fen + self.hifp_pay
        # The band and the deductible grow by exactly what this settlement applied.
        assert self.act_pay_dedc == (
            ytd.self_pay_band_consumed_fen
            - year_to_date.self_pay_band_consumed_fen
            + ytd.deductible_consumed_fen
            - year_to_date.deductible_consumed_fen
        )
