"""Cancelling a cross-province settlement whose cancel outcome is unknown, in process against
the REAL hub simulator (a `python -m settlement.hub` child, faults switched at run time): the
reversal task resolves the cancel by itself (5201, then 2601 when the hub never saw it), books
the cancellation exactly once when the hub did cancel, leaves the settlement settled when it did
not (a new cancel then works), and a terminal retry racing the task never posts twice.
SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from card_auth_testkit import NEW_ACTIVE
from crossprov_testkit import load_jiangsu_world
from gateway_testkit import HOSPITAL, assert_problem
from prometheus_client import REGISTRY
from settlement_api_testkit import Till, outpatient
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from gateway.crossprov.hub import HUB, run_reversals_once
from gateway.state import CLOCK, DATABASE
from settlement.crossprov import wire
from settlement.crossprov.store import (
    HubReversalRow,
    RemoteSettlementRow,
    RemoteStatus,
    ReversalStatus,
)
from settlement.ledger import account_balance_fen, unbalanced_transactions
from settlement.store import (
    IdempotencyKey,
    IdempotencyStatus,
    LedgerTransaction,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from hubproc import HubProcess, start_hub

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

RECEIVABLE = "receivable:province:320000"
# The hub refuses visits after its own (real) today; the gateway's clock is a fixed fake one.
VISIT_DATE = dt.datetime.now(wire.BEIJING).date() - dt.timedelta(days=1)


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[HubProcess]:
    with start_hub(tmp_path, seed="gw-cancel") as process:
        yield process


@pytest.fixture
def settings_overrides(hub: HubProcess) -> dict[str, Any]:
    return {
        "demo_world": "on",
        "hub_url": hub.url,
        "hub_retries": 1,
        "hub_timeout_ms": 5_000,
        "hub_reversal_poll_s": 600,  # the tests run the reversal rounds themselves
        "reconciliation_ops_institutions": HOSPITAL,
    }


@pytest.fixture
def world(engine: Engine) -> Engine:
    return load_jiangsu_world(engine)


class _DeafEvent(asyncio.Event):
    def set(self) -> None:
        pass


@pytest.fixture
async def till(signer: Any, world: Engine, client: Any) -> Till:
    # The app's own reversal task is muted (its poll is 600 s and its wake-up deaf): the
    # tests run the rounds themselves, so that nothing races with their assertions unasked.
    client.app[HUB].wake = _DeafEvent()
    till = Till(signer)
    await till.read_card(NEW_ACTIVE)
    return till


def _row(engine: Engine) -> RemoteSettlementRow:
    with Session(engine) as session:
        (row,) = session.scalars(select(RemoteSettlementRow)).all()
        session.expunge_all()
        return row


def _check(engine: Engine) -> HubReversalRow:
    with Session(engine) as session:
        (check,) = session.scalars(select(HubReversalRow)).all()
        session.expunge_all()
        return check


def _cancel_postings(engine: Engine) -> int:
    with Session(engine) as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(LedgerTransaction)
                .where(LedgerTransaction.kind == "hub_cancel")
            )
            or 0
        )


def _clearing_path(settled: dict[str, Any]) -> str:
    # Cleared by the hub's settle day (Beijing), which is the real one, not the fake clock's.
    day = settled["setlinfo"]["setl_time"][:10]
    return f"/v1/crossprov/clearing?insuplc_admdvs=320000&begin={day}&end={day}"


async def _round(app: web.Application) -> int:
    return await run_reversals_once(app[HUB], app[DATABASE], app[CLOCK])


async def _cancel(till: Till, setl_id: str, key: str) -> Any:
    return await till.post(
        f"/v1/settlements/{setl_id}/cancel", {"reason": "entered twice"}, key=key
    )


async def _settled_then_unknown_cancel(till: Till, hub: HubProcess, fault: str) -> dict[str, Any]:
    settled = await till.settled(outpatient(visit_date=VISIT_DATE.isoformat()))
    assert settled["route"] == "cross_province"
    if fault == "drop":
        hub.set_faults(drop_after_commit_ratio=1.0)  # the hub cancels; no answer arrives
    else:
        hub.set_faults(error_5xx_ratio=1.0)  # 503 before processing: nothing cancelled
    response = await _cancel(till, settled["setl_id"], "c-1")
    await assert_problem(response, 503, "HUB_UNAVAILABLE")
    hub.clear_faults()
    return settled


def _resolutions(outcome: str) -> float:
    sample = REGISTRY.get_sample_value("ssc_hub_cancel_resolutions_total", {"outcome": outcome})
    return sample or 0.0


def _past_backoff(client: Any, clock: Any) -> None:
    clock.now_s += client.app[HUB].backoff(0).total_seconds() + 0.5


async def test_an_unknown_cancel_the_hub_did_is_booked_by_the_task_once(
    till: Till, world: Engine, hub: HubProcess, client: Any, clock: Any
) -> None:
    settled = await _settled_then_unknown_cancel(till, hub, "drop")
    row = _row(world)
    assert row.status is RemoteStatus.CONFIRMED
    assert row.cancel_msgid is not None
    assert hub.query(row.cancel_msgid)["status"] == "cancelled"  # the hub did cancel
    check = _check(world)
    assert (check.status, check.oinfno) == (ReversalStatus.PENDING, "2208")
    # The terminal never retries. Before the check is due, the task leaves it alone, and the
    # clearing statement counts the message as unresolved rather than differing ...
    assert await _round(client.app) == 0
    assert _row(world).status is RemoteStatus.CONFIRMED
    doubt = await (await till.get(_clearing_path(settled))).json()
    assert (doubt["unresolved_count"], doubt["mismatches"], doubt["matched"]) == (1, [], False)
    # ... then asks the hub and books the cancellation.
    before = _resolutions("cancelled")
    _past_backoff(client, clock)
    assert await _round(client.app) == 1
    assert _resolutions("cancelled") == before + 1
    row = _row(world)
    assert row.status is RemoteStatus.CANCELLED
    assert row.cancel_json is not None
    assert '"orig_setl_id"' in row.cancel_json
    assert _check(world).status is ReversalStatus.DONE
    assert _cancel_postings(world) == 1
    with Session(world) as session:
        assert account_balance_fen(session, RECEIVABLE) == 0
        assert unbalanced_transactions(session) == []
    assert await _round(client.app) == 0  # nothing left to do
    shown = await till.get(f"/v1/settlements/{settled['setl_id']}")
    assert (await shown.json())["status"] == "cancelled"
    # The clearing statement agrees with the hub message by message.
    body = await (await till.get(_clearing_path(settled))).json()
    assert (body["unresolved_count"], body["mismatches"], body["matched"]) == (0, [], True)
    assert (body["settled"]["count"], body["cancelled"]["count"]) == (0, 1)
    # A retry that comes after all is told the truth, and posts nothing.
    await assert_problem(
        await _cancel(till, settled["setl_id"], "c-1"), 409, "SETTLEMENT_ALREADY_CANCELLED"
    )
    assert _cancel_postings(world) == 1


async def test_an_unknown_cancel_the_hub_never_did_leaves_the_settlement_settled(
    till: Till, world: Engine, hub: HubProcess, client: Any, clock: Any
) -> None:
    settled = await _settled_then_unknown_cancel(till, hub, "5xx")
    first_cancel_msgid = _row(world).cancel_msgid
    assert first_cancel_msgid is not None
    assert hub.query(first_cancel_msgid)["status"] == "none"
    before = _resolutions("not_cancelled")
    _past_backoff(client, clock)
    assert await _round(client.app) == 1
    assert _resolutions("not_cancelled") == before + 1
    row = _row(world)
    assert (row.status, row.cancel_msgid) == (RemoteStatus.CONFIRMED, None)
    check = _check(world)
    assert (check.status, check.hub_reversed) == (ReversalStatus.DONE, False)
    # The msgid is tombstoned at the hub: a delayed copy of that cancel can never commit.
    assert hub.query(first_cancel_msgid)["status"] == "reversed"
    assert hub.query(settled["msgid"])["status"] == "settled"
    assert _cancel_postings(world) == 0
    with Session(world) as session:
        assert account_balance_fen(session, RECEIVABLE) == (
            settled["fund_pay_sumamt"] + settled["acct_pay"]
        )
    # The terminal's retry (same key, released) cancels afresh under a new msgid.
    again = await _cancel(till, settled["setl_id"], "c-1")
    assert again.status == 200, await again.text()
    assert (await again.json())["status"] == "cancelled"
    row = _row(world)
    assert row.status is RemoteStatus.CANCELLED
    assert row.cancel_msgid not in (None, first_cancel_msgid)
    assert hub.query(settled["msgid"])["status"] == "cancelled"
    assert _cancel_postings(world) == 1


async def test_a_terminal_retry_while_the_task_resolves_waits_and_nothing_posts_twice(
    till: Till, world: Engine, hub: HubProcess, client: Any, clock: Any
) -> None:
    settled = await _settled_then_unknown_cancel(till, hub, "drop")
    _past_backoff(client, clock)
    # The task's 5201 is slow: the terminal's retry arrives while the task holds the cancel.
    hub.set_faults(latency_ms=3_000)
    resolving = asyncio.create_task(_round(client.app))
    for _ in range(200):
        if _check(world).lease_owner is not None:
            break
        await asyncio.sleep(0.02)
    assert _check(world).lease_owner == client.app[HUB].owner
    waiting = await _cancel(till, settled["setl_id"], "c-1")
    await assert_problem(waiting, 503, "HUB_UNAVAILABLE")
    assert int(waiting.headers["Retry-After"]) >= 1
    assert await resolving == 1
    hub.clear_faults()
    assert _row(world).status is RemoteStatus.CANCELLED
    assert _cancel_postings(world) == 1


async def test_a_terminal_retry_first_books_it_and_the_task_finds_nothing_to_do(
    till: Till, world: Engine, hub: HubProcess, client: Any, clock: Any
) -> None:
    settled = await _settled_then_unknown_cancel(till, hub, "drop")
    cancel_msgid = _row(world).cancel_msgid
    retried = await _cancel(till, settled["setl_id"], "c-1")
    assert retried.status == 200, await retried.text()
    assert _row(world).cancel_msgid == cancel_msgid  # the same msgid: the hub's stored answer
    _past_backoff(client, clock)
    assert await _round(client.app) == 0
    assert _cancel_postings(world) == 1
    replay = await _cancel(till, settled["setl_id"], "c-1")
    assert replay.headers.get("Idempotent-Replayed") == "true"


async def test_a_retry_and_the_task_at_once_post_the_cancellation_once(
    till: Till, world: Engine, hub: HubProcess, client: Any, clock: Any
) -> None:
    settled = await _settled_then_unknown_cancel(till, hub, "drop")
    _past_backoff(client, clock)
    retried, _ = await asyncio.gather(_cancel(till, settled["setl_id"], "c-1"), _round(client.app))
    # Whoever took the lease first did the work; the other kept off (503 while the task held
    # it) or, coming after the task had booked it, was told the truth (409).
    answered = await retried.json()
    assert (retried.status, answered.get("code")) in (
        (200, None),
        (503, "HUB_UNAVAILABLE"),
        (409, "SETTLEMENT_ALREADY_CANCELLED"),
    ), answered
    assert _row(world).status is RemoteStatus.CANCELLED
    assert _cancel_postings(world) == 1
    assert hub.query(settled["msgid"])["status"] == "cancelled"
    with Session(world) as session:
        assert account_balance_fen(session, RECEIVABLE) == 0


class _Crash(Exception):
    pass


class _DiesMidCancel:
    """The worker dies during its cancel call: after the hub's answer (``forward``) or before
    anything left. Once only; every other call goes to the real hub."""

    def __init__(self, real: Any, *, forward: bool) -> None:
        self.real = real
        self.forward = forward
        self.armed = True

    async def post(self, infno: str, envelope: Any, timeout_s: float) -> Any:
        if self.armed and infno in wire.CANCEL_INFNOS:
            self.armed = False
            if self.forward:
                await self.real.post(infno, envelope, timeout_s)
            raise _Crash
        return await self.real.post(infno, envelope, timeout_s)


async def _cancel_that_dies(till: Till, client: Any, *, forward: bool) -> dict[str, Any]:
    settled = await till.settled(outpatient(visit_date=VISIT_DATE.isoformat()))
    hub_client = client.app[HUB].client
    hub_client.transport = _DiesMidCancel(hub_client.transport, forward=forward)
    response = await _cancel(till, settled["setl_id"], "c-dead")
    assert response.status == 500  # as if the worker was killed: nothing committed after
    return settled


def _stranded(engine: Engine) -> list[IdempotencyStatus]:
    with Session(engine) as session:
        return list(
            session.scalars(
                select(IdempotencyKey.status).where(IdempotencyKey.idempotency_key == "c-dead")
            )
        )


async def test_a_cancel_whose_worker_died_after_the_hub_answered_is_booked_and_its_key_answered(
    till: Till, world: Engine, hub: HubProcess, client: Any, clock: Any
) -> None:
    settled = await _cancel_that_dies(till, client, forward=True)
    assert hub.query(settled["msgid"])["status"] == "cancelled"
    assert _row(world).status is RemoteStatus.CONFIRMED
    assert _stranded(world) == [IdempotencyStatus.IN_PROGRESS]
    # The dead request's lease keeps everyone off, its own retry included, until it runs out.
    await assert_problem(await _cancel(till, settled["setl_id"], "c-other"), 503, "HUB_UNAVAILABLE")
    assert await _round(client.app) == 0
    clock.now_s += client.app[HUB].lease.total_seconds() + 1
    assert await _round(client.app) == 1
    assert _row(world).status is RemoteStatus.CANCELLED
    assert _cancel_postings(world) == 1
    assert _stranded(world) == [IdempotencyStatus.DONE]
    # The terminal's retry with the dead request's key gets the answer it never received.
    retried = await _cancel(till, settled["setl_id"], "c-dead")
    assert retried.status == 200, await retried.text()
    assert retried.headers.get("Idempotent-Replayed") == "true"
    assert (await retried.json())["status"] == "cancelled"
    assert _cancel_postings(world) == 1


async def test_a_cancel_whose_worker_died_before_sending_is_not_done_and_its_key_freed(
    till: Till, world: Engine, hub: HubProcess, client: Any, clock: Any
) -> None:
    settled = await _cancel_that_dies(till, client, forward=False)
    dead_msgid = _row(world).cancel_msgid
    assert dead_msgid is not None
    clock.now_s += client.app[HUB].lease.total_seconds() + 1
    assert await _round(client.app) == 1
    row = _row(world)
    assert (row.status, row.cancel_msgid) == (RemoteStatus.CONFIRMED, None)
    assert hub.query(dead_msgid)["status"] == "reversed"  # tombstoned: it can never commit
    assert _stranded(world) == []
    retried = await _cancel(till, settled["setl_id"], "c-dead")
    assert retried.status == 200, await retried.text()
    assert retried.headers.get("Idempotent-Replayed") is None  # cancelled afresh
    assert _row(world).cancel_msgid not in (None, dead_msgid)
    assert _cancel_postings(world) == 1
