"""SyncGatewayClient: the gateway client and the visit flows for code that is not async.

Most HIS integrations are not async. :class:`SyncGatewayClient` runs a
:class:`~terminal_sdk.client.GatewayClient` on a private event loop in a daemon thread and
blocks each call until its result; card operations run on the *caller's* thread, because a
PC/SC handle belongs to the thread that opened it. It sits above both the async client and
:mod:`terminal_sdk.flows` (it offers the flows too), so neither of those imports it: the
SDK's modules form layers with no circle (pyproject.toml, contract ``sdk-layers``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import queue
import threading
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any, Self, TypeVar

from terminal_sdk import flows
from terminal_sdk.card import SocialSecurityCard
from terminal_sdk.client import (
    DEFAULT_CONNECT_TIMEOUT_S,
    DEFAULT_TIMEOUT_S,
    CardRunner,
    CardSession,
    Claim,
    Eligibility,
    FeeLine,
    GatewayClient,
    GatewayResponse,
    RetryPolicy,
)
from terminal_sdk.flows import VisitOutcome
from terminal_sdk.pending import PendingOperation
from terminal_sdk.receipt import Receipt

__all__ = ["SyncGatewayClient"]

_T = TypeVar("_T")
_R = TypeVar("_R")


class SyncGatewayClient:
    """:class:`GatewayClient` for code that is not async (most HIS integrations).

    A private event loop runs in a daemon thread; each call blocks until its result. Card
    operations run on the calling thread, where the reader was opened. Thread-safe in the
    sense that calls from several threads are serialised per call by the loop.
    """

    def __init__(
        self,
        base_url: str,
        terminal_id: str,
        secret: bytes,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
        retry: RetryPolicy | None = None,
    ) -> None:
        # The client first: a bad URL raises before any thread exists.
        self.client = GatewayClient(
            base_url,
            terminal_id,
            secret,
            timeout_s=timeout_s,
            connect_timeout_s=connect_timeout_s,
            retry=retry,
        )
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="ssc-gateway-client", daemon=True
        )
        self._thread.start()
        self._closed = False

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self.client.close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def run(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        """Run any coroutine of the async client on the private loop and wait for it."""
        if self._closed:
            coroutine.close()
            raise RuntimeError("the client is closed")
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    def run_with_card(self, make: Callable[[CardRunner], Coroutine[Any, Any, _T]]) -> _T:
        """Run an async flow whose card operations come back to this (the calling) thread."""
        jobs: queue.SimpleQueue[tuple[Callable[[], Any], concurrent.futures.Future[Any]] | None]
        jobs = queue.SimpleQueue()

        def run_here(operation: Callable[[], _R]) -> Awaitable[_R]:
            done: concurrent.futures.Future[_R] = concurrent.futures.Future()
            jobs.put((operation, done))
            return asyncio.wrap_future(done)

        if self._closed:
            raise RuntimeError("the client is closed")
        outer = asyncio.run_coroutine_threadsafe(make(run_here), self._loop)
        outer.add_done_callback(lambda _: jobs.put(None))
        try:
            while (job := jobs.get()) is not None:
                operation, done = job
                try:
                    done.set_result(operation())
                except BaseException as exc:  # handed to the flow, which decides
                    done.set_exception(exc)
            return outer.result()
        except BaseException:
            outer.cancel()
            raise

    @property
    def terminal_id(self) -> str:
        return self.client.terminal_id

    def request(self, method: str, path: str, **options: Any) -> GatewayResponse:
        return self.run(self.client.request(method, path, **options))

    def authenticate_card(self, card: SocialSecurityCard) -> CardSession:
        return self.run_with_card(lambda run: self.client.authenticate_card(card, run_card=run))

    def eligibility(self, session: CardSession) -> Eligibility:
        return self.run(self.client.eligibility(session))

    def pre_settle(self, session: CardSession, claim: Claim) -> Receipt:
        return self.run(self.client.pre_settle(session, claim))

    def settle(
        self, session: CardSession, claim: Claim, *, idempotency_key: str | None = None
    ) -> Receipt:
        return self.run(self.client.settle(session, claim, idempotency_key=idempotency_key))

    def cancel_settlement(
        self, setl_id: str, reason: str, *, idempotency_key: str | None = None
    ) -> Mapping[str, Any]:
        return self.run(
            self.client.cancel_settlement(setl_id, reason, idempotency_key=idempotency_key)
        )

    def get_settlement(self, setl_id: str) -> Receipt:
        return self.run(self.client.get_settlement(setl_id))

    def list_settlements(self, date: str) -> list[Receipt]:
        return self.run(self.client.list_settlements(date))

    def resume(self, pending: PendingOperation, card_session: CardSession | None = None) -> Any:
        return self.run(self.client.resume(pending, card_session))

    # Flows (terminal_sdk.flows), with the card driven from this thread.

    def outpatient_visit(
        self, card: SocialSecurityCard, lines: Sequence[FeeLine], **options: Any
    ) -> VisitOutcome:
        return self.run_with_card(
            lambda run: flows.outpatient_visit(self.client, card, lines, run_card=run, **options)
        )

    def pharmacy_purchase(
        self, card: SocialSecurityCard, lines: Sequence[FeeLine], **options: Any
    ) -> VisitOutcome:
        return self.run_with_card(
            lambda run: flows.pharmacy_purchase(self.client, card, lines, run_card=run, **options)
        )

    def inpatient_admission(self, card: SocialSecurityCard, **options: Any) -> str:
        return self.run_with_card(
            lambda run: flows.inpatient_admission(self.client, card, run_card=run, **options)
        )

    def inpatient_discharge(
        self, card: SocialSecurityCard, admission_id: str, **options: Any
    ) -> Receipt:
        return self.run_with_card(
            lambda run: flows.inpatient_discharge(
                self.client, card, admission_id, run_card=run, **options
            )
        )

    def cancel(self, setl_id: str, reason: str, **options: Any) -> Receipt | None:
        return self.run(flows.cancel(self.client, setl_id, reason, **options))

    def recover_settlement(
        self,
        pending: PendingOperation,
        card: SocialSecurityCard | None = None,
        *,
        session: CardSession | None = None,
    ) -> Receipt:
        return self.run_with_card(
            lambda run: flows.recover_settlement(
                self.client, pending, card, session=session, run_card=run
            )
        )
