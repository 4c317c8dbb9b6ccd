"""The settlement as the counter prints it: the split in fen, shown in yuan.

Field names are those of the national interface's ``setlinfo`` (the gateway sends them in
integer fen, docs/CONTRACTS.md); :meth:`Receipt.format` renders yuan with two decimals and,
optionally, the Chinese labels a patient reads on a receipt::

    receipt = Receipt.from_json(answer)
    print(receipt.format(chinese=True))

Money is never a float here: ``yuan(12345) == "123.45"`` is string arithmetic on int fen.

Who was settled is printed masked (:mod:`sscard.masking`, the project's one rule): a receipt
is paper that leaves the counter. The answer's ``psn_no``, ``psn_name`` and ``certno`` (the
national setlinfo's names) are kept only in their masked forms; ``raw``, the whole answer for
the HIS's own records, is never printed or shown in a repr.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from sscard.masking import mask_citizen_id, mask_name, mask_psn_no

__all__ = ["FundPayment", "Receipt", "yuan"]

#: setlinfo amount fields in receipt order, with their national Chinese labels.
AMOUNT_LABELS: Final[tuple[tuple[str, str, str], ...]] = (
    ("medfee_sumamt", "医疗费总额", "Total medical fees"),
    ("fulamt_ownpay_amt", "全自费金额", "Fully self-paid items"),
    ("preselfpay_amt", "先行自付金额", "Self-paid first part"),
    ("inscp_scp_amt", "符合政策范围金额", "Within policy scope"),
    ("act_pay_dedc", "实际支付起付线", "Deductible applied"),
    ("hifp_pay", "统筹基金支出", "Pooling fund"),
    ("hifob_pay", "附加基金支出", "Supplementary fund"),
    ("pool_prop_selfpay", "统筹支付比例内自付", "Co-payment within pooling"),
    ("fund_pay_sumamt", "基金支付总额", "Funds pay in total"),
    ("acct_pay", "个人账户支出", "Personal account pays"),
    ("psn_cash_pay", "个人现金支出", "Patient pays in cash"),
    ("psn_part_amt", "个人负担总金额", "Patient's share in total"),
    ("balc", "账户余额", "Account balance after"),
)
_REQUIRED: Final = ("medfee_sumamt", "fund_pay_sumamt", "acct_pay", "psn_cash_pay")
#: The settled person, as the receipt prints it: (field, Chinese label, English label).
HOLDER_LABELS: Final[tuple[tuple[str, str, str], ...]] = (
    ("psn_no", "人员编号", "Insured person no."),
    ("psn_name", "姓名", "Name"),
    ("certno", "证件号码", "ID number"),
)


def yuan(fen: int) -> str:
    """``12345`` → ``"123.45"``, ``-5`` → ``"-0.05"``: exact, no float on the way."""
    if isinstance(fen, bool) or not isinstance(fen, int):
        raise TypeError("amounts are int fen")
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(fen), 100)
    return f"{sign}{whole}.{cents:02d}"


def _fen(data: Mapping[str, Any], name: str) -> int | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be int fen, got {type(value).__name__}")
    return value


@dataclass(frozen=True, slots=True)
class FundPayment:
    """One ``setldetail`` row: what one fund pays."""

    fund_pay_type: str
    amount_fen: int
    fund_name: str = ""


@dataclass(frozen=True, slots=True)
class Receipt:
    """One settlement (or, with ``setl_id`` None, a pre-settlement estimate), in fen.

    The four amounts every answer has are plain ints and satisfy
    ``medfee_sumamt == fund_pay_sumamt + acct_pay + psn_cash_pay`` (checked on decoding: a
    receipt that does not add up is not printed). The others are None when the gateway did not
    send them. ``raw`` keeps the whole answer for the HIS's own records.
    """

    setl_id: str | None
    medfee_sumamt: int
    fund_pay_sumamt: int
    acct_pay: int
    psn_cash_pay: int
    fulamt_ownpay_amt: int | None = None
    preselfpay_amt: int | None = None
    inscp_scp_amt: int | None = None
    act_pay_dedc: int | None = None
    hifp_pay: int | None = None
    hifob_pay: int | None = None
    pool_prop_selfpay: int | None = None
    psn_part_amt: int | None = None
    balc: int | None = None
    setldetail: tuple[FundPayment, ...] = ()
    status: str | None = None
    visit_type: str | None = None
    setl_time: str | None = None
    psn_no_masked: str | None = None
    psn_name_masked: str | None = None
    certno_masked: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Receipt:
        """Decode a settlement answer; ValueError if an amount is missing, not int fen, or the
        split does not add up."""
        amounts: dict[str, int | None] = {name: _fen(data, name) for name, _, _ in AMOUNT_LABELS}
        missing = [name for name in _REQUIRED if amounts[name] is None]
        if missing:
            raise ValueError(f"settlement answer lacks {', '.join(missing)}")
        details = []
        for row in data.get("setldetail") or ():
            if not isinstance(row, Mapping):
                raise ValueError("setldetail rows must be objects")
            amount = _fen(row, "amount_fen")
            if amount is None:
                amount = _fen(row, "fund_payamt")
            if amount is None:
                raise ValueError("setldetail row without an amount")
            kind, name = str(row.get("fund_pay_type", "")), str(row.get("fund_name", ""))
            details.append(FundPayment(kind, amount, name))
        setl_id = data.get("setl_id")
        receipt = cls(
            setl_id=str(setl_id) if setl_id is not None else None,
            medfee_sumamt=_required(amounts, "medfee_sumamt"),
            fund_pay_sumamt=_required(amounts, "fund_pay_sumamt"),
            acct_pay=_required(amounts, "acct_pay"),
            psn_cash_pay=_required(amounts, "psn_cash_pay"),
            fulamt_ownpay_amt=amounts["fulamt_ownpay_amt"],
            preselfpay_amt=amounts["preselfpay_amt"],
            inscp_scp_amt=amounts["inscp_scp_amt"],
            act_pay_dedc=amounts["act_pay_dedc"],
            hifp_pay=amounts["hifp_pay"],
            hifob_pay=amounts["hifob_pay"],
            pool_prop_selfpay=amounts["pool_prop_selfpay"],
            psn_part_amt=amounts["psn_part_amt"],
            balc=amounts["balc"],
            setldetail=tuple(details),
            status=_optional_str(data, "status"),
            visit_type=_optional_str(data, "visit_type"),
            setl_time=_optional_str(data, "setl_time"),
            psn_no_masked=_masked(data, "psn_no", mask_psn_no),
            psn_name_masked=_masked(data, "psn_name", mask_name),
            certno_masked=_masked(data, "certno", mask_citizen_id),
            raw=dict(data),
        )
        if receipt.medfee_sumamt != (
            receipt.fund_pay_sumamt + receipt.acct_pay + receipt.psn_cash_pay
        ):
            # Printing a receipt whose parts do not add up would tell the patient a wrong sum.
            raise ValueError("settlement split does not add up to medfee_sumamt")
        return receipt

    @property
    def is_estimate(self) -> bool:
        return self.setl_id is None

    def amounts(self) -> dict[str, int]:
        """The setlinfo amounts the gateway sent, in receipt order (int fen)."""
        shown: dict[str, int] = {}
        for name, _, _ in AMOUNT_LABELS:
            value = getattr(self, name)
            if value is not None:
                shown[name] = value
        return shown

    def format(self, *, chinese: bool = True, english: bool = True) -> str:
        """A plain-text receipt in yuan: one line per amount, labels in Chinese and/or
        English (national field names when both are off)."""
        title = "结算单 Settlement receipt" if not self.is_estimate else "预结算 Estimate"
        lines = [title]
        langs = (chinese, english)
        if self.setl_id is not None:
            lines.append(_line(("结算ID", "Settlement id", "setl_id"), self.setl_id, langs))
        if self.status is not None:
            lines.append(_line(("状态", "Status", "status"), self.status, langs))
        for name, zh, en in HOLDER_LABELS:
            shown = getattr(self, f"{name}_masked")
            if shown is not None:
                lines.append(_line((zh, en, name), shown, langs))
        for name, zh, en in AMOUNT_LABELS:
            value = getattr(self, name)
            if value is not None:
                lines.append(_line((zh, en, name), f"¥{yuan(value)}", langs))
        for row in self.setldetail:
            label = row.fund_name or row.fund_pay_type
            lines.append(f"  · {label} ({row.fund_pay_type}): ¥{yuan(row.amount_fen)}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()


def _required(amounts: Mapping[str, int | None], name: str) -> int:
    value = amounts[name]
    assert value is not None
    return value


def _optional_str(data: Mapping[str, Any], name: str) -> str | None:
    value = data.get(name)
    return None if value is None else str(value)


def _masked(data: Mapping[str, Any], name: str, mask: Callable[[str], str]) -> str | None:
    value = data.get(name)
    return None if value is None else mask(str(value))


def _line(labels: tuple[str, str, str], value: str, langs: tuple[bool, bool]) -> str:
    zh, en, name = labels
    parts = [p for p, on in ((zh, langs[0]), (en, langs[1])) if on] or [name]
    return f"  {' / '.join(parts)}: {value}"
