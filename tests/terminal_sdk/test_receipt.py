"""Receipts: int fen in, yuan out, national field names, Chinese labels, a split that adds up."""

from __future__ import annotations

import pytest

from terminal_sdk import Receipt, yuan

ANSWER = {
    "setl_id": "S1",
    "status": "settled",
    "medfee_sumamt": 12345,
    "fulamt_ownpay_amt": 345,
    "hifp_pay": 8000,
    "hifob_pay": 0,
    "fund_pay_sumamt": 8000,
    "acct_pay": 3000,
    "psn_cash_pay": 1345,
    "psn_part_amt": 4345,
    "balc": 99,
    "setldetail": [{"fund_pay_type": "310100", "fund_name": "统筹基金", "fund_payamt": 8000}],
}


def test_yuan_is_exact() -> None:
    assert [yuan(f) for f in (0, 5, 100, 12345, -5, 10**15 + 1)] == [
        "0.00",
        "0.05",
        "1.00",
        "123.45",
        "-0.05",
        "10000000000000.01",
    ]
    with pytest.raises(TypeError):
        yuan(1.5)  # type: ignore[arg-type]


def test_receipt_decodes_and_prints_in_yuan_with_chinese_labels() -> None:
    receipt = Receipt.from_json(ANSWER)
    assert receipt.setl_id == "S1"
    assert receipt.setldetail[0].amount_fen == 8000
    assert receipt.amounts()["medfee_sumamt"] == 12345
    text = receipt.format()
    assert "医疗费总额 / Total medical fees: ¥123.45" in text
    assert "个人现金支出 / Patient pays in cash: ¥13.45" in text
    assert "统筹基金 (310100): ¥80.00" in text
    assert "医疗费总额" not in receipt.format(chinese=False)
    assert "medfee_sumamt: ¥123.45" in receipt.format(chinese=False, english=False)
    assert str(receipt) == text


def test_a_receipt_that_does_not_add_up_is_refused() -> None:
    with pytest.raises(ValueError, match="does not add up"):
        Receipt.from_json(ANSWER | {"psn_cash_pay": 1346})
    with pytest.raises(ValueError, match="lacks acct_pay"):
        Receipt.from_json({k: v for k, v in ANSWER.items() if k != "acct_pay"})
    with pytest.raises(ValueError, match="int fen"):
        Receipt.from_json(ANSWER | {"balc": 0.99})


def test_an_estimate_has_no_settlement_id() -> None:
    estimate = Receipt.from_json({k: v for k, v in ANSWER.items() if k != "setl_id"})
    assert estimate.is_estimate
    assert estimate.format().startswith("预结算 Estimate")
