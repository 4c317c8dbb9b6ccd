"""The hub simulator's log (settlement.hub.serve.JsonLines): personal data leaves masked by the
project's one rule (sscard.masking), whether the hub's own code masked it first or not."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from settlement.crossprov import wire
from settlement.hub.app import create_app
from settlement.hub.serve import JsonLines

SEED = "hub-log-seed"
NOW = dt.datetime(2026, 6, 1, 2, 0, tzinfo=dt.UTC)
INSTITUTION = "H31000000001"
PSN_NO = "320000000000007"
CITIZEN_ID, NAME, PHONE, CARD_NO = "320102198001010018", "欧阳娜娜", "13912345678", "A12345678"


@pytest.fixture
def hub_log() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonLines())
    logger = logging.getLogger("settlement.hub")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


async def test_a_call_logs_the_masked_psn_no_and_nothing_else_personal(
    hub_log: io.StringIO,
) -> None:
    envelope = wire.HubRequest.build(
        "2207",
        msgid=wire.make_msgid(INSTITUTION, NOW, 1),
        insuplc_admdvs="320000",
        fixmedins_code=INSTITUTION,
        input={
            "psn_no": PSN_NO,
            # What a careless caller might add: the hub must not echo it into its log.
            "certno": CITIZEN_ID,
            "psn_name": NAME,
            "tel": PHONE,
            "card_no": CARD_NO,
            "mdtrt_id": "MDT-1",
            "visit_type": "outpatient",
            "hospital_level": 2,
            "visit_date": "2026-05-31",
            "filing_type": "resettled_retiree",
            "lines": [{"list_code": "DEMO-B-001", "qty": 1, "pric": "10.00"}],
        },
        at=NOW,
    ).to_json()
    app = create_app(seed=SEED, clock=lambda: NOW)
    async with (
        TestClient(TestServer(app)) as client,
        client.post("/hub/v1/2207", json=envelope) as response,
    ):
        assert response.status == 200
    text = hub_log.getvalue()
    for raw in (PSN_NO, CITIZEN_ID, NAME, PHONE, CARD_NO):
        assert raw not in text
    [call] = [line for line in _lines(hub_log) if line["event"] == "call"]
    assert call["psn_no"] == "32***********07"


def test_fields_and_text_are_masked_by_the_formatter(hub_log: io.StringIO) -> None:
    log = logging.getLogger("settlement.hub")
    planted = {"psn_no": PSN_NO, "certno": CITIZEN_ID, "psn_name": NAME, "tel": PHONE}
    log.warning(f"odd call from {PHONE}", extra={"hub": {**planted, "card_no": CARD_NO}})
    try:
        raise KeyError(f"no person {CITIZEN_ID}")
    except KeyError:
        log.exception("handler failed")
    text = hub_log.getvalue()
    for raw in (PSN_NO, CITIZEN_ID, NAME, PHONE, CARD_NO):
        assert raw not in text
    odd, failed = _lines(hub_log)
    assert odd["event"] == "odd call from *******5678"
    assert (odd["psn_no"], odd["certno"], odd["psn_name"], odd["tel"], odd["card_no"]) == (
        "32***********07",
        "320*************18",
        "欧*",
        "*******5678",
        "A******78",
    )
    assert "no person 320*************18" in failed["traceback"]
