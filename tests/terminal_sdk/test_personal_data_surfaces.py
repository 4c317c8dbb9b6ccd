"""The SDK's output surfaces show personal data only masked (sscard.masking): the APDU trace,
the printed receipt and the CLI's output. Each test plants a citizen id, a name, a phone number
and a card number where the surface could pick them up, drives the surface, and checks that no
raw value comes out and the masked forms do where the surface shows that kind. A card holds no
phone number, so the phone is planted in the gateway's answers only."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from cardkit import CARD_NO, CARD_SN, CITIZEN_ID
from fake_gateway import FakeGateway
from sdk_testkit import NAME, ExactLeCard, Pki, third_gen_card

from sscard import demo as sd
from sscard.masking import mask_card_no, mask_citizen_id, mask_name, mask_psn_no
from sscard.terminal_auth import demo_terminal
from terminal_sdk import MemoryReader, Receipt, SocialSecurityCard, cli

PHONE = "13912345678"
PSN_NO = "310000000000001"
SEED = "terminal-sdk-surfaces"


def _raw_spellings(*values: str) -> list[str]:
    """A value as text, and as the hex of its card encoding (ASCII or GBK)."""
    spellings = []
    for value in values:
        spellings += [value, value.encode("gbk").hex().upper()]
    return spellings


@pytest.mark.parametrize("t0", [False, True], ids=["T=1", "T=0"])
def test_apdu_trace_masks_the_card_number_and_hides_the_holder(
    reader: MemoryReader, pki: Pki, caplog: pytest.LogCaptureFixture, t0: bool
) -> None:
    caplog.set_level(logging.DEBUG, logger="terminal_sdk.apdu")
    reader.insert(ExactLeCard(third_gen_card(pki, t0_get_response=t0)))
    card = SocialSecurityCard.connect(reader)
    info = card.read_basic_info()
    assert (info.citizen_id, info.name, info.card_no) == (CITIZEN_ID, NAME, CARD_NO)
    dump = card.trace.dump()
    logged = "\n".join(record.getMessage() for record in caplog.records)
    for text in (dump, logged):
        for raw in _raw_spellings(CITIZEN_ID, NAME, CARD_NO):
            assert raw not in text, f"{raw!r} leaked"
        assert f"0709 <card_no {mask_card_no(CARD_NO)}>" in text
        assert CARD_SN in text  # the rest of EF05 stays readable for support
    assert mask_card_no(CARD_NO) == "A******78"


def test_receipt_prints_the_person_masked() -> None:
    answer = {
        "setl_id": "S1",
        "status": "settled",
        "medfee_sumamt": 1000,
        "fund_pay_sumamt": 700,
        "acct_pay": 300,
        "psn_cash_pay": 0,
        "psn_no": PSN_NO,
        "psn_name": NAME,
        "certno": CITIZEN_ID,
        "tel": PHONE,  # not a receipt field: never printed
        "card_no": CARD_NO,  # likewise
    }
    receipt = Receipt.from_json(answer)
    shown = [receipt.format(), receipt.format(chinese=False), str(receipt), repr(receipt)]
    for text in shown:
        for raw in (CITIZEN_ID, NAME, PHONE, CARD_NO, PSN_NO):
            assert raw not in text, f"{raw!r} leaked"
    text = receipt.format()
    assert f"人员编号 / Insured person no.: {mask_psn_no(PSN_NO)}" in text
    assert f"姓名 / Name: {mask_name(NAME)}" in text
    assert f"证件号码 / ID number: {mask_citizen_id(CITIZEN_ID)}" in text
    assert receipt.raw["certno"] == CITIZEN_ID  # the HIS keeps the whole answer for its records


def test_receipt_without_the_person_prints_no_person_lines() -> None:
    answer = {"medfee_sumamt": 10, "fund_pay_sumamt": 0, "acct_pay": 0, "psn_cash_pay": 10}
    assert "人员编号" not in Receipt.from_json(answer).format()


# -- the CLI ----------------------------------------------------------------------------------


@dataclass
class Run:
    code: int
    out: str
    err: str


def run(*argv: str) -> Run:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(argv), stdout=out, stderr=err)
    return Run(code, out.getvalue(), err.getvalue())


@pytest.fixture
def gateway(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGateway]:
    pki = sd.demo_pki(SEED)
    holder = sd.demo_card(SEED, 0).identity
    split = FakeGateway._split

    def split_naming_the_person(self: FakeGateway, claim: dict[str, Any]) -> dict[str, Any]:
        # As a national-interface answer would: the person named in setlinfo, and more.
        person = {"psn_no": PSN_NO, "psn_name": holder.name, "certno": holder.citizen_id}
        return {**split(self, claim), **person, "tel": PHONE, "card_no": holder.card_no}

    monkeypatch.setattr(FakeGateway, "_split", split_naming_the_person)
    terminal_id, secret = demo_terminal(SEED, 3)
    fake = FakeGateway(
        Pki(
            root=pki.root,
            ca=pki.issuing,
            card_key=sd.demo_card_key(SEED, 0),
            card_cert=sd.demo_card_certificate(SEED, 0, pki),
        ),
        terminal_id=terminal_id,
        secret=secret,
        master_key=sd.legacy_master_key(SEED),
    ).start()
    yield fake
    fake.stop()


def test_cli_prints_personal_data_masked(gateway: FakeGateway) -> None:
    holder = sd.demo_card(SEED, 0).identity
    read = run("read", "--reader", "memory", "--demo-card", "0", "--seed", SEED)
    visit = run("demo", "--gateway", gateway.url, "--terminal", "3", "--seed", SEED)
    assert (read.code, visit.code) == (cli.EXIT_OK, cli.EXIT_OK), visit.err
    for result in (read, visit):
        for raw in (holder.citizen_id, holder.name, holder.card_no, PHONE, PSN_NO):
            assert raw not in result.out + result.err, f"{raw!r} leaked"
        assert mask_citizen_id(holder.citizen_id) in result.out
        assert mask_name(holder.name) in result.out
        assert mask_card_no(holder.card_no) in result.out
    assert f"eligibility: psn_no {mask_psn_no(PSN_NO)}" in visit.out
    assert f"人员编号 / Insured person no.: {mask_psn_no(PSN_NO)}" in visit.out
    # Asked for explicitly, the card's whole record (iReadCardBas) is printed for the HIS.
    full = run("read", "--reader", "memory", "--demo-card", "0", "--seed", SEED, "--full")
    assert holder.citizen_id in full.out
