"""The live ops page's data: the summary's settlements hour by hour (Beijing time, from the
database, every route) and the drill-down from a figure to the institutions behind it
(GET /v1/ops/settlements/by-institution), and what a rejection code means. SQLite and
PostgreSQL; the fake clock's T0 is 2027-01-15 08:00 UTC, 16:00 in Beijing."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from gateway_testkit import (
    HOSPITAL,
    OTHER_TERMINAL,
    PHARMACY,
    SECRETS,
    Client,
    FakeClock,
    Signer,
    assert_problem,
)
from settlement_api_testkit import (
    OUTPATIENT_LINES,
    PHARMACY_LINES,
    TODAY,
    Till,
    assert_ledger_balanced,
    load_insured_world,
    outpatient,
)
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from gateway.ops import drilldown, hourly
from gateway.ops.drilldown import Scope, settlements_by_institution

TOKEN = "ops-drilldown-token-" + "z" * 32
BEARER = {"Authorization": f"Bearer {TOKEN}"}
DAY = dt.date.fromisoformat(TODAY)
NOW = dt.datetime(2027, 1, 15, 8, tzinfo=dt.UTC)
HOUR = 16  # NOW in Beijing


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"demo_world": "on", "ops_token": TOKEN}


@pytest.fixture
def world(engine: Engine) -> Iterator[Engine]:
    load_insured_world(engine)
    yield engine
    assert_ledger_balanced(engine)


@pytest.fixture
async def visits(
    signer: Signer, client: Client, clock: FakeClock, world: Engine
) -> dict[str, dict[str, Any]]:
    """At 16:xx two outpatient visits at the hospital (one cancelled since) and one emergency;
    at 18:xx a purchase at the pharmacy."""
    hospital = Till(signer)
    await hospital.read_card(0)
    kept = await hospital.settled(outpatient())
    cancelled = await hospital.settled(outpatient(OUTPATIENT_LINES[:1]))
    emergency = await hospital.settled(outpatient(visit_type="emergency"))
    answer = await hospital.post(
        f"/v1/settlements/{cancelled['setl_id']}/cancel", {"reason": "x"}, key="drill-cancel"
    )
    assert answer.status == 200
    clock.now_s += 2 * 3600
    pharmacy = Till(Signer(client, clock, OTHER_TERMINAL, SECRETS[OTHER_TERMINAL]))
    await pharmacy.read_card(0)
    drug = await pharmacy.settled(outpatient(PHARMACY_LINES, visit_type="pharmacy"))
    return {"kept": kept, "cancelled": cancelled, "emergency": emergency, "drug": drug}


def _read(engine: Engine, query: Any, *args: Any, **kwargs: Any) -> Any:
    with Session(engine) as session:
        return query(session, *args, **kwargs)


# --- hour by hour --------------------------------------------------------------------------------


async def test_the_summary_has_the_days_settlements_hour_by_hour(
    client: Client, visits: dict[str, dict[str, Any]], world: Engine
) -> None:
    response = await client.get(f"/v1/ops/summary?date={TODAY}", headers=BEARER)
    assert response.status == 200
    summary = await response.json()
    hours = summary["hourly"]
    assert [row["hour"] for row in hours] == list(range(24))
    busy = {row["hour"]: row for row in hours if row["count"] or row["cancelled_count"]}
    assert set(busy) == {HOUR, HOUR + 2}
    assert busy[HOUR]["count"] == 2  # kept + emergency; the cancelled one apart
    assert busy[HOUR]["cancelled_count"] == 1
    assert busy[HOUR]["medfee_sumamt"] == (
        visits["kept"]["medfee_sumamt"] + visits["emergency"]["medfee_sumamt"]
    )
    assert busy[HOUR + 2]["count"] == 1
    assert busy[HOUR + 2]["medfee_sumamt"] == visits["drug"]["medfee_sumamt"]
    # The hours add up to the day's total row.
    total = summary["settlements"]["total"]
    assert sum(row["count"] for row in hours) == total["count"]
    assert sum(row["medfee_sumamt"] for row in hours) == total["medfee_sumamt"]
    assert sum(row["cancelled_count"] for row in hours) == total["cancelled_count"]
    # Another day: 24 empty hours.
    other = _read(world, hourly.hourly_settlements, DAY - dt.timedelta(days=1))
    assert len(other) == 24
    assert not any(row.count or row.cancelled_count for row in other)


def test_remote_settlements_are_placed_in_their_hour(world: Engine) -> None:
    from settlement.crossprov.store import RemoteSettlementRow, RemoteStatus

    def message(n: int, status: RemoteStatus, at: dt.datetime, medfee: int) -> RemoteSettlementRow:
        return RemoteSettlementRow(
            msgid=f"H31000099001{n:018d}",
            infno="2207",
            route="cross_province",
            status=status,
            psn_no=f"32{n:013d}",
            insuplc_admdvs="320000",
            fixmedins_code=HOSPITAL,
            mdtrt_id=f"M{n}",
            visit_type="outpatient",
            visit_date=DAY,
            filing_type="long_term_resident",
            request_json="{}",
            setlinfo_json="{}",
            setl_id=f"S{n}",
            setl_time=at,
            medfee_sumamt=medfee,
            fund_pay_sumamt=medfee // 2,
            acct_pay=0,
            psn_cash_pay=medfee - medfee // 2,
            created_at=at,
            cancelled_at=at if status is RemoteStatus.CANCELLED else None,
        )

    early = dt.datetime(2027, 1, 14, 16, 30, tzinfo=dt.UTC)  # 00:30 on DAY in Beijing
    late = dt.datetime(2027, 1, 15, 15, 59, tzinfo=dt.UTC)  # 23:59 on DAY in Beijing
    with Session(world) as session, session.begin():
        session.add_all(
            [
                message(1, RemoteStatus.CONFIRMED, early, 1_000),
                message(2, RemoteStatus.CONFIRMED, late, 2_000),
                message(3, RemoteStatus.CANCELLED, late, 4_000),
                message(4, RemoteStatus.CONFIRMED, late + dt.timedelta(minutes=2), 8_000),
            ]
        )
    rows = {row.hour: row for row in _read(world, hourly.hourly_settlements, DAY)}
    assert (rows[0].count, rows[0].medfee_sumamt) == (1, 1_000)
    assert (rows[23].count, rows[23].medfee_sumamt, rows[23].cancelled_count) == (1, 2_000, 1)
    assert sum(row.count for row in rows.values()) == 2  # message 4 is the next day's

    # The drill-down finds the same, by route.
    breakdown = _read(world, settlements_by_institution, Scope(DAY, route="cross_province"))
    [only] = breakdown.institutions
    assert (only.fixmedins_code, only.count, only.medfee_sumamt, only.cancelled_count) == (
        HOSPITAL,
        2,
        3_000,
        1,
    )
    assert _read(world, settlements_by_institution, Scope(DAY, route="local")).institutions == []


# --- drill-down ----------------------------------------------------------------------------------


async def _drill(client: Client, query: str, **headers: str) -> Any:
    return await client.get(f"/v1/ops/settlements/by-institution{query}", headers=headers)


async def test_the_institutions_behind_a_figure(
    client: Client, visits: dict[str, dict[str, Any]]
) -> None:
    whole = await _drill(client, f"?date={TODAY}", **BEARER)
    assert whole.status == 200
    assert whole.headers["Cache-Control"] == "no-store"
    body = await whole.json()
    assert (body["route"], body["visit_type"], body["hour"]) == ("all", "all", None)
    assert body["institution_count"] == 2
    assert body["others"] is None
    by_code = {row["fixmedins_code"]: row for row in body["institutions"]}
    hospital, pharmacy = by_code[HOSPITAL], by_code[PHARMACY]
    assert (hospital["name"], hospital["kind"]) == ("Test Hospital", "hospital")
    assert (hospital["count"], hospital["cancelled_count"]) == (2, 1)
    assert hospital["medfee_sumamt"] == (
        visits["kept"]["medfee_sumamt"] + visits["emergency"]["medfee_sumamt"]
    )
    assert (pharmacy["count"], pharmacy["medfee_sumamt"]) == (1, visits["drug"]["medfee_sumamt"])
    # The busiest first.
    assert [row["fixmedins_code"] for row in body["institutions"]] == [HOSPITAL, PHARMACY]

    outpatient_only = await (
        await _drill(client, f"?date={TODAY}&route=local&visit_type=outpatient", **BEARER)
    ).json()
    [row] = outpatient_only["institutions"]
    assert (row["fixmedins_code"], row["count"], row["cancelled_count"]) == (HOSPITAL, 1, 1)
    assert row["medfee_sumamt"] == visits["kept"]["medfee_sumamt"]

    at_six = await (await _drill(client, f"?date={TODAY}&hour={HOUR + 2}", **BEARER)).json()
    assert [row["fixmedins_code"] for row in at_six["institutions"]] == [PHARMACY]
    nothing = await (await _drill(client, f"?date={TODAY}&hour=3", **BEARER)).json()
    assert (nothing["institution_count"], nothing["institutions"]) == (0, [])


async def test_the_rest_is_summed_beyond_the_top(
    visits: dict[str, dict[str, Any]], world: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(drilldown, "TOP_INSTITUTIONS", 1)
    breakdown = _read(world, settlements_by_institution, Scope(DAY))
    [top] = breakdown.institutions
    assert top.fixmedins_code == HOSPITAL
    assert breakdown.others is not None
    assert (breakdown.others.fixmedins_code, breakdown.others.count) == ("others", 1)
    assert breakdown.others.medfee_sumamt == visits["drug"]["medfee_sumamt"]
    assert breakdown.institution_count == 2


@pytest.mark.parametrize(
    "query",
    [
        "?route=elsewhere",
        "?visit_type=Outpatient",
        "?visit_type=" + "x" * 21,
        "?hour=24",
        "?hour=-1",
        "?hour=1.5",
        "?hour=%D9%A3",  # "٣", an Arabic-Indic three: not an ASCII digit (issue 17)
        "?date=2027-13-01",
    ],
)
async def test_bad_parameters_are_422_and_change_nothing(
    client: Client, world: Engine, query: str
) -> None:
    await assert_problem(await _drill(client, query, **BEARER), 422, "VALIDATION_FAILED")


async def test_the_drill_down_takes_the_ops_token(client: Client, world: Engine) -> None:
    await assert_problem(await _drill(client, ""), 401, "OPS_UNAUTHORIZED")
    wrong = {"Authorization": "Bearer " + "w" * 40}
    await assert_problem(await _drill(client, "", **wrong), 401, "OPS_UNAUTHORIZED")


# --- what a rejection code means -----------------------------------------------------------------


async def test_rejections_say_what_their_code_means(client: Client, world: Engine) -> None:
    assert (await client.get("/v1/settlements/none")).status == 401  # unsigned
    summary = await (await client.get("/v1/ops/summary", headers=BEARER)).json()
    missing = next(row for row in summary["rejections"] if row["code"] == "SIGNATURE_MISSING")
    assert missing["status"] == 401
    assert missing["title"]
    assert missing["message"]
    assert missing["message_zh"]
