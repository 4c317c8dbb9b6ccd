"""The ops surface (/v1/ops/summary and the /ops page) carries no personal data: it shows
aggregates only, so neither a raw nor a masked citizen id, name, phone number or card number
may appear in it, even when they were planted where an operator's figures come from (the
insured persons, the card registry, a cancellation's reason, a caller-chosen request id)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from gateway_testkit import Client, Signer
from settlement_api_testkit import Till, assert_ledger_balanced, load_insured_world, outpatient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from issuance.store import Card
from settlement.store import InsuredPersonRow
from sscard.masking import mask_card_no, mask_citizen_id, mask_phone

TOKEN = "ops-test-token-" + "y" * 32
PHONE = "13912345678"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"demo_world": "on", "ops_token": TOKEN}


@pytest.fixture
def world(engine: Engine) -> Iterator[Engine]:
    load_insured_world(engine)
    yield engine
    assert_ledger_balanced(engine)


async def test_ops_shows_no_personal_data(signer: Signer, world: Engine, client: Client) -> None:
    till = Till(signer)
    await till.read_card(0)
    await till.settled(outpatient())
    gone = await till.settled(outpatient(visit_type="emergency"))
    with Session(world) as session:
        people = session.scalars(select(InsuredPersonRow)).all()
        card_nos = list(session.scalars(select(Card.card_no)))
    holder = people[0]
    reason = f"patient {holder.name} {holder.citizen_id} phone {PHONE} card {card_nos[0]}"
    cancel = await till.signer.post(
        f"/v1/settlements/{gone['setl_id']}/cancel",
        {"reason": reason},
        extra_headers={"Idempotency-Key": till.new_key(), "X-Request-Id": PHONE},
    )
    assert cancel.status == 200, await cancel.text()

    bearer = {"Authorization": f"Bearer {TOKEN}"}
    summary = await client.get("/v1/ops/summary", headers=bearer)
    assert summary.status == 200
    page = await client.get("/ops")
    assert page.status == 200
    shown = (await summary.text()) + (await page.text())
    assert '"cancelled_count": 1' in shown or '"cancelled_count":1' in shown
    planted = [PHONE, mask_phone(PHONE)]
    for person in people:
        planted += [person.citizen_id, mask_citizen_id(person.citizen_id), person.name]
        planted += [person.psn_no]
    for card_no in card_nos:
        planted += [card_no, mask_card_no(card_no)]
    for value in planted:
        assert value not in shown, f"{value!r} shown"
