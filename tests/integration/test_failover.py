"""A database failover under load: a PostgreSQL primary with a synchronous streaming standby,
run by Patroni with etcd (pgcluster.patroni_pair: the test's own cluster on free ports under a
temporary directory), two gateway replicas behind haproxy, terminals settling through it.
Midway the primary is stopped (its Patroni gets SIGTERM: postgres shuts down fast, the leader
key is given up); Patroni promotes the standby, and:

* the gateways find the new primary by themselves: their database URL names both nodes with
  ``target_session_attrs=read-write`` (libpq connects to the one that takes writes), and the
  pool drops connections to the old one at their first failure or idle ping (gateway.db);
* a settlement caught in the switch answers 503 DB_UNAVAILABLE with Retry-After, never a
  500, and is either committed whole (then on the standby too: synchronous replication) or
  not at all, so the terminal's retry with the same Idempotency-Key settles it exactly once;
* afterwards every settlement the terminals saw confirmed is in the ledger once, nothing
  else was settled, the ledger sums to zero and every institution's reconciliation matches.

It prints the time to recover (stop → the first confirmed settlement after the last failed
answer), the promotion time, and how many requests got 503. Those depend on the terminals'
retry pace: here a retry follows 100 ms after a failure, faster than Retry-After asks, so
the outage is seen at that resolution.

Why Patroni and not ``pg_ctl promote``: Patroni and etcd are Debian packages, run unprivileged
here (as the ``postgres`` user when the test runs as root), and a pair comes up in seconds;
a home-made promote would test a failover nobody runs in production (DESIGN §2).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from haproxykit import Haproxy, start_haproxy
from pgcluster import CannotStart, PatroniNode, PatroniPair, cannot_start, patroni_pair
from replicakit import (
    Replica,
    Tally,
    Terminal,
    card_session,
    check_books,
    local_holders,
    reconcile,
    replicas,
    settle_until_confirmed,
    visit,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(400)]

TILLS = 8
SETTLEMENTS = 400
STOP_AFTER = 100  # confirmed settlements before the primary is stopped
# The statuses a terminal may see during the switch, and must retry: nothing else.
RETRYABLE = {"201", "503 DB_UNAVAILABLE", "503 OVERLOADED", "409 IDEMPOTENCY_KEY_IN_USE"}


@dataclass
class World:
    pair: PatroniPair
    a: Replica
    b: Replica
    proxy: Haproxy
    http: aiohttp.ClientSession


@contextlib.contextmanager
def _started(what: str) -> Iterator[None]:
    try:
        yield
    except CannotStart as exc:
        cannot_start(f"{what}: {exc}")


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        with _started("Patroni pair"):
            pair = stack.enter_context(patroni_pair())
        a, b = stack.enter_context(replicas(tmp_path, pair.url()))
        with _started("haproxy"):
            proxy = stack.enter_context(start_haproxy(tmp_path, [("a", a.port), ("b", b.port)]))
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=4 * TILLS)) as http:
            print(f"\nworld up in {time.monotonic() - started:.1f} s")
            yield World(pair, a, b, proxy, http)


class _Promotion:
    """Watches, in a thread, for the standby to take writes; notes when it did."""

    def __init__(self, standby: PatroniNode) -> None:
        self.standby = standby
        self.at: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.is_set():
            if self.standby.accepts_writes():
                self.at = time.monotonic()
                return
            time.sleep(0.05)

    def join(self, timeout_s: float) -> None:
        self._thread.join(timeout_s)
        self._stop.set()


async def test_the_primary_fails_over_under_load_and_nothing_is_lost(world: World) -> None:
    pair = world.pair
    primary, standby = pair.primary(), pair.sync_standby()
    assert primary is not None
    assert standby is not None
    assert primary is not standby

    tills = []
    for n, h in enumerate(local_holders(TILLS, start=200)):
        terminal = Terminal(world.http, world.proxy.url, 40 + 2 * n)  # hospitals 20..27
        tills.append((terminal, await card_session(terminal, h)))
    keys = [f"failover-{i:04d}" for i in range(SETTLEMENTS)]
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(SETTLEMENTS):
        queue.put_nowait(i)
    tally = Tally()
    promotion = _Promotion(standby)
    stopped_at: list[float] = []

    async def stop_primary() -> None:
        assert primary is not None
        stopped_at.append(time.monotonic())
        promotion.start()
        # Patroni's orderly stop of the primary node, as a host shutdown would do it.
        await asyncio.to_thread(primary.stop)

    stopper: list[asyncio.Task[None]] = []

    async def till(terminal: Terminal, token: str) -> None:
        while not queue.empty():
            i = queue.get_nowait()
            await settle_until_confirmed(
                terminal, token, keys[i], visit(1_000 + 11 * i), tally, deadline_s=120
            )
            if len(tally.confirmed) >= STOP_AFTER and not stopper:
                stopper.append(asyncio.create_task(stop_primary()))

    started = time.monotonic()
    await asyncio.gather(*(till(terminal, token) for terminal, token in tills))
    driven_s = time.monotonic() - started
    assert stopper, "the run ended before the primary was stopped"
    await stopper[0]
    promotion.join(30)

    # The standby took over; the gateways found it without a restart.
    assert promotion.at is not None, "the standby was never promoted"
    assert pair.primary() is standby
    assert world.a.process is not None
    assert world.a.process.poll() is None
    assert world.b.process is not None
    assert world.b.process.poll() is None

    # What the terminals saw during the switch: 503 DB_UNAVAILABLE with Retry-After (or a
    # busy gateway, or a key still held by a settle in flight), never a 500 or a dropped call.
    assert tally.unexpected == []
    kinds = tally.by_kind()
    assert set(kinds) <= RETRYABLE, kinds
    unavailable = [a for a in tally.attempts if a.code == "DB_UNAVAILABLE"]
    assert unavailable, f"no settlement felt the failover: {kinds}"
    assert all(a.retry_after for a in unavailable)

    # Nothing lost, nothing twice, the books balance, every institution reconciles.
    with pair.connect() as db:
        check_books(db, tally, keys)
    await reconcile(world.http, world.proxy.url, tally)

    stop = stopped_at[0]
    last_failure = max(a.answered_at for a in tally.failures() if a.answered_at >= stop)
    recovered = min(
        a.answered_at for a in tally.attempts if a.status == 201 and a.answered_at > last_failure
    )
    recovery_s = recovered - stop
    promotion_s = promotion.at - stop
    print(
        f"\nfailover: {SETTLEMENTS} settlements by {TILLS} terminals in {driven_s:.1f} s; "
        f"primary {primary.name} stopped after {STOP_AFTER}; standby {standby.name} took "
        f"writes after {promotion_s:.2f} s; service recovered after {recovery_s:.2f} s; "
        f"{len(unavailable)} answers 503 DB_UNAVAILABLE; all attempts {kinds}"
    )
    # Patroni hands over within a few loop_waits; far less than its ttl (20 s).
    assert recovery_s < 20, recovery_s
