"""GatewayClient: signed HTTP to the settlement gateway, with retries only where they are safe.

::

    async with GatewayClient("https://gw.example", terminal_id, secret) as client:
        session = await client.authenticate_card(card)          # challenge → card → response
        receipt = await client.settle(session, claim)            # Idempotency-Key inside

Every request is signed with :mod:`sscard.terminal_auth` (HMAC-SM3, a fresh nonce and
timestamp per *attempt*: the gateway accepts a nonce once, so a retry is re-signed, while the
Idempotency-Key stays the same for the whole logical operation).

Retries (bounded by :class:`RetryPolicy`, exponential backoff with full jitter):

* a connection that could not be made (nothing was sent): any request;
* 503 / 429 with Retry-After (the gateway did no work: it sheds load before any handler, and
  a handler that hits an unavailable database rolls back): any request but the card's answer
  to a challenge;
* the answer lost after the request left (timeout, connection cut, 502/504 from a proxy):
  only GETs and POSTs that carry an Idempotency-Key, whose repeat the gateway answers with
  the stored first outcome; 409 IDEMPOTENCY_KEY_IN_USE (the first is still running) likewise;
* whenever the answer carries Retry-After, the retry waits exactly that long, and a
  Retry-After longer than ``RetryPolicy.max_retry_after_s`` is not waited for at all: the
  error is raised (its ``retryable`` and ``retry_after_s`` say the caller may try later);
* never the card's answer to a challenge (``/v1/card-auth/response``) once it may have been
  sent: a challenge is single-use, so a lost answer means a fresh challenge and a fresh proof.

When a keyed operation's outcome stays unknown after the retries, :class:`OutcomeUnknown`
carries a :class:`PendingOperation`; :meth:`GatewayClient.resume` sends it again, with the same
key, later (after the network is back, after the card was reinserted and authenticated again).
A request without a key whose answer was lost (a POST that is not a query, such as the card's
answer to a challenge) ends as :class:`AnswerLost`, which is not ``retryable``: it may have
taken effect, and nothing makes a repeat harmless.

:class:`terminal_sdk.sync_client.SyncGatewayClient` offers the same calls to HIS code that
is not async (it runs a private event loop in a thread and the card on the caller's).
:class:`PendingOperation` lives in :mod:`terminal_sdk.pending`, below both this module and
:mod:`terminal_sdk.problems` (whose :class:`OutcomeUnknown` carries one), and is re-exported
here.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import random
import secrets
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from types import TracebackType
from typing import Any, Final, Protocol, Self, TypeVar
from urllib.parse import urlencode, urlsplit

import aiohttp
from yarl import URL

from sscard.terminal_auth import signed_headers
from terminal_sdk.card import SocialSecurityCard
from terminal_sdk.card_auth import CardAuthProof, challenge_request, prove
from terminal_sdk.pending import PendingOperation
from terminal_sdk.problems import (
    AnswerLost,
    CertificateUnknown,
    GatewayProblem,
    GatewayUnreachable,
    OutcomeUnknown,
    problem_from_response,
)
from terminal_sdk.receipt import Receipt

__all__ = [
    "CardRunner",
    "CardSession",
    "Challenge",
    "Claim",
    "Eligibility",
    "FeeLine",
    "GatewayClient",
    "GatewayResponse",
    "PendingOperation",
    "RetryPolicy",
    "new_idempotency_key",
]

_log = logging.getLogger(__name__)
_T = TypeVar("_T")
_R = TypeVar("_R")

DEFAULT_TIMEOUT_S: Final = 15.0
DEFAULT_CONNECT_TIMEOUT_S: Final = 5.0
HEADER_IDEMPOTENCY_KEY: Final = "Idempotency-Key"
HEADER_CARD_SESSION: Final = "X-Card-Session"
_JSON: Final = "application/json"
# 502/504 come from a proxy in front of the gateway: the request may have reached it.
_PROXY_LOST_ANSWER: Final = frozenset({502, 504})
_BUSY: Final = frozenset({429, 503})
# Certificates this client has delivered in full, so later visits send only their SM3.
_KNOWN_CERTIFICATES_MAX: Final = 4096
CARD_AUTH_CHALLENGE_PATH: Final = "/v1/card-auth/challenge"
CARD_AUTH_RESPONSE_PATH: Final = "/v1/card-auth/response"


def new_idempotency_key() -> str:
    """A fresh Idempotency-Key for one logical operation (a UUID4, 36 chars)."""
    return str(uuid.uuid4())


# -- value types ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard to try. ``max_attempts`` counts the first try; a Retry-After longer than
    ``max_retry_after_s`` is not waited for (the clerk is better told the gateway is busy)."""

    max_attempts: int = 4
    base_delay_s: float = 0.2
    max_delay_s: float = 4.0
    max_retry_after_s: float = 30.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.base_delay_s < 0 or self.max_delay_s < self.base_delay_s:
            raise ValueError("need 0 <= base_delay_s <= max_delay_s")

    def backoff_s(self, retry: int) -> float:
        """Full jitter (uniform in [0, base·2^(retry-1)], capped): terminals that lost the
        gateway together do not come back in step."""
        ceiling = min(self.max_delay_s, self.base_delay_s * (2 ** (retry - 1)))
        return random.uniform(0.0, ceiling)  # noqa: S311 - jitter, not a secret


NO_RETRY: Final = RetryPolicy(max_attempts=1)


@dataclass(frozen=True, slots=True)
class GatewayResponse:
    """A 2xx answer: ``body`` is the decoded JSON (None for an empty body)."""

    status: int
    body: Any
    headers: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Challenge:
    challenge_id: str
    challenge: bytes
    expires_in_s: int


@dataclass(frozen=True, slots=True, repr=False)
class CardSession:
    """The gateway's proof that this card was present at this terminal, for the settlement
    routes (``X-Card-Session``). ``token`` is a bearer secret: it is never logged or shown."""

    token: str
    card_sn: str
    generation: int
    expires_in_s: int
    terminal_id: str
    obtained_at: float = field(default_factory=time.monotonic)

    @property
    def expired(self) -> bool:
        return time.monotonic() >= self.obtained_at + self.expires_in_s

    def __repr__(self) -> str:
        return (
            f"CardSession(card_sn={self.card_sn}, generation={self.generation}, "
            f"terminal_id={self.terminal_id}, expires_in_s={self.expires_in_s})"
        )


@dataclass(frozen=True, slots=True)
class FeeLine:
    """One fee line: a catalogue code, a quantity and a unit price in fen."""

    code: str
    quantity: int
    unit_price_fen: int

    def __post_init__(self) -> None:
        for name in ("quantity", "unit_price_fen"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative int")

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "quantity": self.quantity, "unit_price_fen": self.unit_price_fen}


@dataclass(frozen=True, slots=True)
class Claim:
    """What a visit costs: ``visit_type`` is outpatient | emergency | inpatient | pharmacy,
    ``visit_date`` ISO (YYYY-MM-DD)."""

    visit_type: str
    visit_date: str
    lines: tuple[FeeLine, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "visit_type": self.visit_type,
            "visit_date": self.visit_date,
            "lines": [line.to_json() for line in self.lines],
        }


@dataclass(frozen=True, slots=True)
class Eligibility:
    """The person query (1101) as the gateway answered it; ``raw`` is the whole answer."""

    raw: Mapping[str, Any]

    def get(self, name: str, default: Any = None) -> Any:
        return self.raw.get(name, default)


class CardRunner(Protocol):
    """Runs a blocking card operation for async code (default: :func:`asyncio.to_thread`)."""

    def __call__(self, operation: Callable[[], _T], /) -> Awaitable[_T]: ...


async def _to_thread(operation: Callable[[], _T]) -> _T:
    return await asyncio.to_thread(operation)


class _Kind(enum.Enum):
    """What went wrong with one attempt; decides whether it may be retried."""

    NOT_SENT = "not sent"  # no connection was made
    BUSY = "busy"  # 429/503 with Retry-After: the gateway did no work
    LOST_ANSWER = "lost answer"  # sent, answer lost (timeout, cut, 502/504)
    KEY_IN_USE = "key in use"  # 409: the first request with this key still runs
    REFUSED = "refused"  # a definite answer: never retried


@dataclass(frozen=True, slots=True)
class _Failure:
    """A failed attempt: its kind, the error, and whether the request may have taken effect."""

    kind: _Kind
    error: GatewayProblem
    maybe_done: bool


# -- the client ----------------------------------------------------------------------------------


class GatewayClient:
    """Async client of one gateway, signing as one terminal. One aiohttp session (connection
    pool, keep-alive) per client; use it as an async context manager or call :meth:`close`.

    ``session`` lets an application share its own :class:`aiohttp.ClientSession` (the client
    then does not close it).
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
        session: aiohttp.ClientSession | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"gateway URL must be http(s)://host[:port][/prefix]: {base_url!r}")
        if parts.query or parts.fragment:
            raise ValueError("gateway URL must not carry a query or fragment")
        self.base_url = f"{parts.scheme}://{parts.netloc}"
        # What the gateway sees as the path (and what is signed) includes any prefix.
        self._prefix = parts.path.rstrip("/")
        self.terminal_id = terminal_id
        self._secret = secret
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=connect_timeout_s)
        self.retry = retry if retry is not None else RetryPolicy()
        self._session = session
        self._owns_session = session is None
        self._clock = clock
        self._sleep = sleep
        self._known_certificates: OrderedDict[bytes, None] = OrderedDict()

    # -- lifecycle ----------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None and self._owns_session:
            await session.close()

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # Created on first use: aiohttp binds a session to the running loop.
            self._session = aiohttp.ClientSession(
                timeout=self._timeout,
                connector=aiohttp.TCPConnector(limit=16, keepalive_timeout=30),
                headers={"User-Agent": "ssc-terminal-sdk/0.1"},
            )
            self._owns_session = True
        return self._session

    # -- the one request path -----------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        query: Mapping[str, str] | None = None,
        card_session: CardSession | None = None,
        idempotency_key: str | None = None,
        retry_after_send: bool | None = None,
        retry_when_busy: bool = True,
    ) -> GatewayResponse:
        """Send one signed request, retrying where safe; a 2xx answer or a GatewayProblem.

        ``retry_after_send`` defaults to "GET, or a POST with an Idempotency-Key";
        ``retry_when_busy`` (429/503 with Retry-After) is off only for the card's answer.
        """
        method = method.upper()
        target = self._prefix + path + (f"?{urlencode(dict(query))}" if query else "")
        raw = (
            b""
            if body is None
            else json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        )
        if retry_after_send is None:
            retry_after_send = method in ("GET", "HEAD") or idempotency_key is not None
        extra: dict[str, str] = {}
        if raw:
            extra["Content-Type"] = _JSON
        if idempotency_key is not None:
            extra[HEADER_IDEMPOTENCY_KEY] = idempotency_key
        if card_session is not None:
            extra[HEADER_CARD_SESSION] = card_session.token

        def pending() -> PendingOperation | None:
            if idempotency_key is None or body is None:
                return None
            return PendingOperation(method, path, body, idempotency_key, card_session is not None)

        # True once an attempt may have reached the gateway without us learning the outcome.
        maybe_done = False
        attempt = 0
        while True:
            attempt += 1
            outcome = await self._attempt(method, target, raw, extra)
            if isinstance(outcome, GatewayResponse):
                return outcome
            error = outcome.error
            maybe_done = maybe_done or outcome.maybe_done
            retryable = {
                _Kind.NOT_SENT: True,
                _Kind.BUSY: retry_when_busy,
                _Kind.LOST_ANSWER: retry_after_send,
                # The first request with this key is still running: ask again shortly.
                _Kind.KEY_IN_USE: idempotency_key is not None,
                # A definite refusal. After an earlier attempt that may have gone through it
                # does not settle the question, so _give_up keeps OutcomeUnknown.
                _Kind.REFUSED: False,
            }[outcome.kind]
            # The gateway's Retry-After is obeyed whenever it sent one (busy, a key in use);
            # a wait longer than the policy allows is the clerk's to decide, not ours.
            retry_after = error.retry_after_s
            if retry_after is not None and retry_after > self.retry.max_retry_after_s:
                retryable = False
            if not retryable or attempt >= self.retry.max_attempts:
                raise self._give_up(error, maybe_done, pending(), repeatable=retry_after_send)
            delay = retry_after if retry_after is not None else self.retry.backoff_s(attempt)
            _log.info(
                "gateway %s %s: %s, attempt %d of %d, retrying in %.2f s",
                method,
                path,
                error.code,
                attempt,
                self.retry.max_attempts,
                delay,
            )
            await self._sleep(delay)

    async def _attempt(
        self, method: str, target: str, raw: bytes, extra: Mapping[str, str]
    ) -> GatewayResponse | _Failure:
        """One try, classified for the retry rules."""

        async def sign(
            request: aiohttp.ClientRequest, send: aiohttp.ClientHandlerType
        ) -> aiohttp.ClientResponse:
            # Signed per transmission, not per call: aiohttp itself resends an idempotent
            # request once when a kept-alive connection turns out closed, and the gateway
            # accepts a nonce only once (REQUEST_REPLAYED otherwise).
            request.headers.update(self._sign(method, target, raw, extra))
            return await send(request)

        try:
            async with self._http().request(
                method,
                URL(self.base_url + target, encoded=True),
                data=raw if raw else None,
                headers=dict(extra),
                allow_redirects=False,
                middlewares=(sign,),
            ) as answer:
                payload = await answer.read()
                status = answer.status
                answer_headers = dict(answer.headers)
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            # The TCP (or TLS) connection was never made: nothing was sent.
            detail = f"{type(exc).__name__}: {exc}"
            return _Failure(_Kind.NOT_SENT, GatewayUnreachable(detail=detail), False)
        except (aiohttp.ClientError, TimeoutError) as exc:
            detail = f"{type(exc).__name__} after the request was sent: {exc}"
            return _Failure(_Kind.LOST_ANSWER, GatewayUnreachable(detail=detail), True)
        if 200 <= status < 300:
            return GatewayResponse(status, _decode(payload), answer_headers)
        retry_after = _retry_after_s(answer_headers.get("Retry-After"))
        error = problem_from_response(status, _decode_lenient(payload), retry_after_s=retry_after)
        return _classify(status, error)

    @staticmethod
    def _give_up(
        error: GatewayProblem,
        maybe_done: bool,
        pending: PendingOperation | None,
        *,
        repeatable: bool,
    ) -> GatewayProblem:
        if maybe_done and pending is not None:
            unknown = OutcomeUnknown(detail=f"last error: {error.code}: {error.detail}")
            unknown.pending = pending
            unknown.__cause__ = error
            return unknown
        if maybe_done and not repeatable:
            # Sent with no key to make a repeat harmless: not retryable as it stands.
            lost = AnswerLost(detail=f"last error: {error.code}: {error.detail}")
            lost.__cause__ = error
            return lost
        return error

    def _sign(
        self, method: str, target: str, raw: bytes, extra: Mapping[str, str]
    ) -> dict[str, str]:
        # token_urlsafe(24) is 32 chars of [A-Za-z0-9_-]: inside the nonce alphabet. Version 2
        # signs the card session and the Idempotency-Key too, so nothing between here and the
        # gateway can send this signature with another card's session or another key.
        return signed_headers(
            self._secret,
            self.terminal_id,
            method,
            target,
            raw,
            timestamp=int(self._clock()),
            nonce=secrets.token_urlsafe(24),
            card_session=extra.get(HEADER_CARD_SESSION),
            idempotency_key=extra.get(HEADER_IDEMPOTENCY_KEY),
        )

    async def get(self, path: str, *, query: Mapping[str, str] | None = None) -> Any:
        return (await self.request("GET", path, query=query)).body

    async def resume(
        self, pending: PendingOperation, card_session: CardSession | None = None
    ) -> Any:
        """Send a pending keyed operation again (same body, same Idempotency-Key): the gateway
        answers with the first outcome if it happened, or does it now, once. Operations that
        act for a cardholder need a card session (a fresh one after the card was reinserted)."""
        if pending.needs_card_session and card_session is None:
            raise ValueError("this operation acts for a cardholder: pass a card session")
        answer = await self.request(
            pending.method,
            pending.path,
            body=pending.body,
            card_session=card_session,
            idempotency_key=pending.idempotency_key,
        )
        return answer.body

    # -- card authentication ------------------------------------------------------------------

    async def request_challenge(self, card_sn: str, generation: int) -> Challenge:
        # Asking again is harmless (an unused challenge just expires), so this POST may be
        # retried even when the first answer was lost.
        body = (
            await self.request(
                "POST",
                CARD_AUTH_CHALLENGE_PATH,
                body={"card_sn": card_sn, "generation": generation},
                retry_after_send=True,
            )
        ).body
        return Challenge(
            challenge_id=str(body["challenge_id"]),
            challenge=bytes.fromhex(body["challenge"]),
            expires_in_s=int(body["expires_in_s"]),
        )

    async def send_card_proof(
        self, challenge: Challenge, proof: CardAuthProof, *, certificate_known: bool = False
    ) -> CardSession:
        """POST the card's answer. Never retried once it may have left: it is single-use."""
        body = (
            await self.request(
                "POST",
                CARD_AUTH_RESPONSE_PATH,
                body=proof.to_request(challenge.challenge_id, certificate_known=certificate_known),
                retry_after_send=False,
                retry_when_busy=False,
            )
        ).body
        if proof.certificate_sm3 is not None:
            self._remember_certificate(proof.certificate_sm3)
        return CardSession(
            token=str(body["card_session"]),
            card_sn=str(body["card_sn"]),
            generation=int(body["generation"]),
            expires_in_s=int(body["expires_in_s"]),
            terminal_id=self.terminal_id,
        )

    def certificate_known(self, proof_or_sm3: CardAuthProof | bytes | None) -> bool:
        """True if this client has delivered this certificate in full before."""
        sm3_value = (
            proof_or_sm3.certificate_sm3
            if isinstance(proof_or_sm3, CardAuthProof)
            else proof_or_sm3
        )
        return sm3_value is not None and sm3_value in self._known_certificates

    def _remember_certificate(self, digest: bytes) -> None:
        self._known_certificates[digest] = None
        self._known_certificates.move_to_end(digest)
        while len(self._known_certificates) > _KNOWN_CERTIFICATES_MAX:
            self._known_certificates.popitem(last=False)

    def _forget_certificate(self, digest: bytes | None) -> None:
        if digest is not None:
            self._known_certificates.pop(digest, None)

    async def authenticate_card(
        self, card: SocialSecurityCard, *, run_card: CardRunner = _to_thread
    ) -> CardSession:
        """Challenge → the card proves → response → a :class:`CardSession`.

        A third-generation card sends its certificate in full the first time this client
        sees it and only its SM3 afterwards. If the gateway answers CERT_UNKNOWN (it does not
        have it: a restart, another replica), the flow runs once more with the full
        certificate and a fresh challenge (the first one is spent).
        """
        ask = await run_card(lambda: challenge_request(card))
        card_sn, generation = str(ask["card_sn"]), int(ask["generation"])
        for full_certificate in (False, True):
            challenge = await self.request_challenge(card_sn, generation)
            proof = await run_card(partial(prove, card, challenge.challenge, self.terminal_id))
            known = not full_certificate and self.certificate_known(proof)
            try:
                return await self.send_card_proof(challenge, proof, certificate_known=known)
            except CertificateUnknown:
                self._forget_certificate(proof.certificate_sm3)
                if not known:
                    raise  # it had the whole certificate: retrying cannot help
        raise AssertionError("unreachable")  # pragma: no cover

    # -- the Settlement API (docs/CONTRACTS.md) ----------------------------------------------

    async def eligibility(self, session: CardSession) -> Eligibility:
        # A query without side effects: POST only because it carries the card session.
        answer = await self.request(
            "POST", "/v1/eligibility", body={}, card_session=session, retry_after_send=True
        )
        return Eligibility(dict(answer.body or {}))

    async def pre_settle(self, session: CardSession, claim: Claim) -> Receipt:
        """The split as it would be (no side effects, so it may be retried freely)."""
        answer = await self.request(
            "POST",
            "/v1/settlements/pre-settle",
            body=claim.to_json(),
            card_session=session,
            retry_after_send=True,
        )
        data = dict(answer.body)
        data.pop("setl_id", None)  # an estimate is not a settlement, whatever it carries
        return Receipt.from_json(data)

    async def settle(
        self, session: CardSession, claim: Claim, *, idempotency_key: str | None = None
    ) -> Receipt:
        """Settle ``claim``. Pass your own ``idempotency_key`` (stored with your order before
        the call) to be able to recover the outcome after a crash of your own program."""
        answer = await self.request(
            "POST",
            "/v1/settlements",
            body=claim.to_json(),
            card_session=session,
            idempotency_key=idempotency_key or new_idempotency_key(),
        )
        return Receipt.from_json(answer.body)

    async def cancel_settlement(
        self, setl_id: str, reason: str, *, idempotency_key: str | None = None
    ) -> Mapping[str, Any]:
        """Cancel a settlement in full (reversing entries); the gateway's answer as sent."""
        answer = await self.request(
            "POST",
            f"/v1/settlements/{_segment(setl_id)}/cancel",
            body={"reason": reason},
            idempotency_key=idempotency_key or new_idempotency_key(),
        )
        return dict(answer.body or {})

    async def get_settlement(self, setl_id: str) -> Receipt:
        return Receipt.from_json(await self.get(f"/v1/settlements/{_segment(setl_id)}"))

    async def list_settlements(self, date: str) -> list[Receipt]:
        """This institution's settlements of one day (YYYY-MM-DD)."""
        receipts: list[Receipt] = []
        query = {"date": date}
        while True:
            body = await self.get("/v1/settlements", query=query)
            receipts.extend(Receipt.from_json(row) for row in body.get("items", ()))
            cursor = body.get("next_cursor")
            if not cursor:
                return receipts
            query = {"date": date, "cursor": str(cursor)}

    async def admit(self, session: CardSession, admission_date: str) -> str:
        """Inpatient admission → admission_id. Keyed: a lost answer cannot admit twice."""
        answer = await self.request(
            "POST",
            "/v1/admissions",
            body={"admission_date": admission_date},
            card_session=session,
            idempotency_key=new_idempotency_key(),
        )
        return str(answer.body["admission_id"])

    async def upload_fee_lines(self, admission_id: str, lines: Sequence[FeeLine]) -> Any:
        answer = await self.request(
            "POST",
            f"/v1/admissions/{_segment(admission_id)}/fee-lines",
            body={"lines": [line.to_json() for line in lines]},
            idempotency_key=new_idempotency_key(),
        )
        return answer.body

    async def discharge(
        self,
        session: CardSession,
        admission_id: str,
        discharge_date: str,
        *,
        idempotency_key: str | None = None,
    ) -> Receipt:
        answer = await self.request(
            "POST",
            f"/v1/admissions/{_segment(admission_id)}/discharge",
            body={"discharge_date": discharge_date},
            card_session=session,
            idempotency_key=idempotency_key or new_idempotency_key(),
        )
        return Receipt.from_json(answer.body)


def _classify(status: int, error: GatewayProblem) -> _Failure:
    if status in _BUSY and error.retry_after_s is not None:
        return _Failure(_Kind.BUSY, error, False)
    if status in _PROXY_LOST_ANSWER:
        return _Failure(_Kind.LOST_ANSWER, error, True)
    if error.code == "IDEMPOTENCY_KEY_IN_USE":
        return _Failure(_Kind.KEY_IN_USE, error, True)
    return _Failure(_Kind.REFUSED, error, False)


def _segment(value: str) -> str:
    # Ids go into the path: refuse anything that would change the route (or the signature).
    if not value or not all(ch.isalnum() or ch in "-_." for ch in value):
        raise ValueError(f"not a valid id: {value!r}")
    return value


def _decode(payload: bytes) -> Any:
    if not payload:
        return None
    try:
        return json.loads(payload)
    except ValueError as exc:
        raise GatewayProblem(code="BAD_ANSWER", detail="the gateway's answer is not JSON") from exc


def _decode_lenient(payload: bytes) -> Any:
    try:
        return json.loads(payload) if payload else None
    except ValueError:
        return None


def _retry_after_s(value: str | None) -> float | None:
    # Seconds only: the gateway sends delta-seconds; an HTTP-date from a proxy is ignored.
    if value is None or not (value.strip().isascii() and value.strip().isdigit()):
        return None
    return float(int(value.strip()))
