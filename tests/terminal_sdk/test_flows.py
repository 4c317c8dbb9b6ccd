"""Flows against the fake gateway: an outpatient visit to its receipt, a card pulled out before
and during the settlement, recovery with the same Idempotency-Key, cancel, pharmacy."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from fake_gateway import DROP_AFTER_WORK, SECRET, TERMINAL_ID, FakeGateway, problem
from sdk_testkit import PIN, WRONG_PIN, Pki, third_gen_card

from terminal_sdk import (
    CardRemoved,
    Claim,
    FeeLine,
    GatewayClient,
    MemoryReader,
    OutcomeUnknown,
    RetryPolicy,
    RouteUnavailable,
    SettlementRejected,
    SocialSecurityCard,
    WrongPin,
    flows,
    outpatient_visit,
    pharmacy_purchase,
    recover_settlement,
)

LINES = (FeeLine("DEMO-A-002", 1, 2500), FeeLine("DEMO-A-001", 2, 1850))


async def no_sleep(_: float) -> None:
    return None


@pytest.fixture
async def client(fake: FakeGateway) -> AsyncIterator[GatewayClient]:
    retry = RetryPolicy(max_attempts=2)
    async with GatewayClient(fake.url, TERMINAL_ID, SECRET, retry=retry, sleep=no_sleep) as c:
        yield c


@pytest.fixture
def card(reader: MemoryReader, pki: Pki) -> SocialSecurityCard:
    reader.insert(third_gen_card(pki))
    return SocialSecurityCard.connect(reader)


async def test_outpatient_visit_to_receipt(
    client: GatewayClient, fake: FakeGateway, card: SocialSecurityCard
) -> None:
    visit = await outpatient_visit(client, card, LINES, pin=PIN, visit_date="2025-06-01")
    receipt = visit.receipt
    assert receipt.setl_id == "S00000001"
    assert (receipt.medfee_sumamt, receipt.fund_pay_sumamt) == (6200, 4340)
    assert receipt.acct_pay + receipt.psn_cash_pay == 1860
    assert visit.estimate.is_estimate
    assert visit.estimate.medfee_sumamt == receipt.medfee_sumamt
    assert visit.eligibility.get("psn_no") == "310000000000001"
    sent = json.loads(fake.calls("POST /v1/settlements")[0].body)
    assert sent == {
        "visit_type": "outpatient",
        "visit_date": "2025-06-01",
        "lines": [
            {"code": "DEMO-A-002", "quantity": 1, "unit_price_fen": 2500},
            {"code": "DEMO-A-001", "quantity": 2, "unit_price_fen": 1850},
        ],
    }
    assert fake.calls("POST /v1/settlements")[0].headers["Idempotency-Key"] == visit.idempotency_key
    assert "¥62.00" in receipt.format()


async def test_wrong_pin_stops_before_the_gateway(
    client: GatewayClient, fake: FakeGateway, card: SocialSecurityCard
) -> None:
    with pytest.raises(WrongPin) as wrong:
        await outpatient_visit(client, card, LINES, pin=WRONG_PIN)
    assert wrong.value.tries_left == 2
    assert fake.seen == []


async def test_card_pulled_before_the_settlement_charges_nothing(
    client: GatewayClient, fake: FakeGateway, card: SocialSecurityCard, reader: MemoryReader
) -> None:
    fake.script["POST /v1/settlements/pre-settle"] = [reader.remove]
    with pytest.raises(CardRemoved, match="removed during the transaction"):
        await outpatient_visit(client, card, LINES)
    assert fake.calls("POST /v1/settlements") == []
    assert fake.settlements == {}


async def test_card_pulled_during_the_settlement_outcome_is_recovered_after_reinsertion(
    client: GatewayClient,
    fake: FakeGateway,
    card: SocialSecurityCard,
    reader: MemoryReader,
    pki: Pki,
) -> None:
    # The clerk pulls the card while the settlement is on its way, and the network loses
    # every answer: the SDK cannot know whether it happened, and says so.
    fake.on_settle = reader.remove
    fake.script["POST /v1/settlements"] = [DROP_AFTER_WORK, DROP_AFTER_WORK]
    with pytest.raises(OutcomeUnknown) as unknown:
        await outpatient_visit(client, card, LINES, visit_date="2025-06-01")
    pending = unknown.value.pending
    assert pending is not None
    assert len(fake.settlements) == 1  # it did happen, once
    with pytest.raises(CardRemoved):
        card.check_present()

    # Reinserted: the card authenticates again; the same key brings back the first outcome.
    fake.on_settle = None
    reader.insert(third_gen_card(pki))
    receipt = await recover_settlement(client, pending, SocialSecurityCard.connect(reader))
    assert receipt.setl_id == "S00000001"
    assert len(fake.settlements) == 1
    keys = {c.headers["Idempotency-Key"] for c in fake.calls("POST /v1/settlements")}
    assert keys == {pending.idempotency_key}


async def test_recovery_with_a_live_session_needs_no_card(
    client: GatewayClient, fake: FakeGateway, card: SocialSecurityCard
) -> None:
    fake.script["POST /v1/settlements"] = [DROP_AFTER_WORK, DROP_AFTER_WORK]
    session = await client.authenticate_card(card)
    with pytest.raises(OutcomeUnknown) as unknown:
        await client.settle(session, Claim("outpatient", "2025-06-01", LINES))
    assert unknown.value.pending is not None
    receipt = await recover_settlement(client, unknown.value.pending, session=session)
    assert receipt.setl_id == "S00000001"
    with pytest.raises(ValueError, match="reinserted card"):
        await recover_settlement(client, unknown.value.pending)


async def test_pharmacy_purchase_and_cancel(
    client: GatewayClient, fake: FakeGateway, card: SocialSecurityCard
) -> None:
    visit = await pharmacy_purchase(client, card, LINES[1:])
    assert json.loads(fake.calls("POST /v1/settlements")[0].body)["visit_type"] == "pharmacy"
    assert visit.receipt.setl_id is not None
    cancelled = await flows.cancel(client, visit.receipt.setl_id, "returned")
    assert cancelled is not None
    assert cancelled.status == "cancelled"


async def test_settlement_problems_surface_typed(
    client: GatewayClient, fake: FakeGateway, card: SocialSecurityCard
) -> None:
    fake.script["POST /v1/settlements/pre-settle"] = [problem(422, "UNKNOWN_CATALOGUE_CODE")]
    with pytest.raises(SettlementRejected) as rejected:
        await outpatient_visit(client, card, LINES)
    assert rejected.value.code == "UNKNOWN_CATALOGUE_CODE"
    assert fake.calls("POST /v1/settlements") == []


async def test_a_gateway_without_settlement_says_so(pki: Pki, reader: MemoryReader) -> None:
    fake = FakeGateway(pki, settlement_routes=False).start()
    try:
        reader.insert(third_gen_card(pki))
        card = SocialSecurityCard.connect(reader)
        async with GatewayClient(fake.url, TERMINAL_ID, SECRET) as client:
            session = await client.authenticate_card(card)
            with pytest.raises(RouteUnavailable) as unavailable:
                await client.eligibility(session)
        assert unavailable.value.status == 404
    finally:
        fake.stop()
