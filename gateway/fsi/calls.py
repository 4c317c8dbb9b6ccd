"""What every transaction handler of the national door gets and does: the call (envelope,
institution, clock, sign-in guard, msgid key), running a unit once per msgid, rendering the
output envelope inside the unit (so the stored answer is the envelope, replayed byte for
byte)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, Final, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, ValidationError
from sqlalchemy.orm import Session

from gateway.errors import ErrorCode, GatewayError
from gateway.fsi import envelope
from gateway.fsi.envelope import Envelope
from gateway.fsi.store import find_sign_in
from gateway.settlement_api.calls import run_keyed
from settlement.counter.ports import Counter, NonceClaim
from settlement.keyed import Answer, KeyedRequest, Render, Stored, answer, claim_key

__all__ = [
    "CLIENT_PREFIX",
    "FsiCall",
    "Handler",
    "InputModel",
    "SignInGuard",
    "guarded",
    "keyed_work",
    "ok",
    "parse_input",
    "run",
    "run_estimate",
]

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

# The door's msgid key space in the idempotency store: beside /v1's Idempotency-Keys (scoped
# to the bare institution code), never mixed with them.
CLIENT_PREFIX: Final = "fsi:"


class InputModel(BaseModel):
    """Base of a transaction's ``input`` (or its ``data`` node): unknown fields ignored (the
    spec has many this gateway does not use), types as JSON gives them."""

    model_config = ConfigDict(extra="ignore", frozen=True)


@dataclass(frozen=True, slots=True)
class SignInGuard:
    """The envelope's sign-in, checked first inside the unit that does the work (the door's
    NonceClaim: one primary-key read, no extra transaction). The sign_no must be this
    institution's, operator's and device's, not signed out, not expired."""

    sign_no: str
    fixmedins_code: str
    opter: str
    dev_no: str
    now_s: int

    def claim(self, session: Session) -> None:
        found = find_sign_in(session, self.sign_no) if self.sign_no else None
        if (
            found is None
            or found.fixmedins_code != self.fixmedins_code
            or found.opter != self.opter
            or found.dev_no != self.dev_no
        ):
            raise GatewayError(
                ErrorCode.FSI_SIGN_NO_INVALID,
                "sign_no is not a sign-in of this institution, operator and device",
            )
        if found.signed_out_at_s is not None:
            raise GatewayError(ErrorCode.FSI_SIGN_NO_INVALID, "this sign_no was signed out")
        if self.now_s >= found.expires_at_s:
            raise GatewayError(ErrorCode.FSI_SIGN_NO_INVALID, "this sign_no has expired")


@dataclass(frozen=True, slots=True)
class FsiCall:
    """One envelope, parsed and authenticated as far as its transport profile goes."""

    app: web.Application
    envelope: Envelope
    input: Mapping[str, Any]
    counter: Counter
    received_at: dt.datetime
    now: dt.datetime
    keyed: KeyedRequest
    # None for sign-in (9001): it is what makes a sign_no.
    guard: SignInGuard | None

    @property
    def infno(self) -> int:
        return int(self.envelope.infno)

    def require_guard(self) -> NonceClaim:
        assert self.guard is not None
        return self.guard


Handler = Callable[[FsiCall], Awaitable[Stored]]


def parse_input(model: type[M], raw: Mapping[str, Any], *, node: str | None = "data") -> M:
    """The transaction's input: under ``node`` when the client sent it there (most), else
    the input itself (clients that leave the node out, DOMAIN §4)."""
    value: object = raw.get(node, raw) if node is not None else raw
    if not isinstance(value, Mapping):
        raise GatewayError(ErrorCode.FSI_ENVELOPE_INVALID, f"input.{node} must be an object")
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise GatewayError(
            ErrorCode.FSI_ENVELOPE_INVALID, "input: " + envelope.field_errors(exc)
        ) from None


def ok(call: FsiCall, output: Mapping[str, Any] | None, warn_msg: str | None = None) -> Answer:
    """A success envelope; the Answer's status is the transaction's infno (the HTTP status is
    always 200), which a reversal (2601) reads to check ``oinfno``."""
    body = envelope.render(
        received_at=call.received_at,
        now=call.now,
        infcode=envelope.INFCODE_OK,
        output=output,
        warn_msg=warn_msg,
    )
    return Answer(call.infno, body)


def keyed_work(
    session: Session,
    *,
    keyed: KeyedRequest,
    guard: NonceClaim | None,
    work: Callable[[Session], T],
    render: Render[T],
) -> Stored:
    """A use case that stores no answer of its own, under the envelope's msgid: the sign-in,
    the key, the work and its rendered envelope in one transaction."""
    if guard is not None:
        guard.claim(session)
    stored = claim_key(session, keyed)
    if stored is not None:
        return stored
    return answer(session, keyed, render(work(session)))


def guarded(
    session: Session,
    *,
    guard: NonceClaim,
    unit: Callable[..., Stored],
    **inputs: Any,
) -> Stored:
    """A keyed use case that takes no request nonce, behind the sign-in check (first)."""
    guard.claim(session)
    return unit(session, **inputs)


async def run(
    call: FsiCall, unit: Callable[..., Stored], *, fast: bool = False, durable: bool = True
) -> Stored:
    """``unit(session, keyed=…)`` once per msgid (shared with /v1: run_keyed)."""
    return await run_keyed(call.app, call.keyed, unit, fast=fast, durable=durable)


async def run_work(call: FsiCall, work: Callable[[Session], T], render: Render[T]) -> Stored:
    """A use case with no key of its own: its work and envelope under the msgid."""
    return await run(call, partial(keyed_work, guard=call.guard, work=work, render=render))


async def run_estimate(call: FsiCall, work: Callable[[Session], T], render: Render[T]) -> Stored:
    """A pre-settle (2101, 2206): its reads, estimate and envelope under the msgid, written
    as /v1's pre-settle writes its request nonce: group-committed, beside the writer queue,
    not durable. It changes nothing but the msgid, so a power cut may lose that (never a
    crash); a resend then computes the same estimate again. (As an ordinary write it cost a
    durable commit of its own on the writer queue per settlement, which /v1 does not pay:
    loadtest.bench settle --door fsi.)"""
    unit = partial(keyed_work, guard=call.guard, work=work, render=render)
    return await run(call, unit, fast=True, durable=False)
