"""9001 sign-in and 9002 sign-out (签到/签退): a ``sign_no`` per institution, operator and
device, required on every later envelope (gateway.fsi.calls.SignInGuard) and refused after its
sign-out or expiry (the ``fsi_sign_in_ttl_s`` setting)."""

from __future__ import annotations

import secrets
from functools import partial
from typing import Any

from pydantic import Field
from sqlalchemy.orm import Session

from gateway.errors import ErrorCode, GatewayError
from gateway.fsi.calls import FsiCall, InputModel, SignInGuard, ok, parse_input, run_work
from gateway.fsi.store import FsiSignIn, operator_enabled
from gateway.fsi.views import time_text
from gateway.state import SETTINGS
from settlement.keyed import Answer, Stored

__all__ = ["sign_in", "sign_out"]


class SignInInput(InputModel):
    opter_no: str = Field("", max_length=30)
    mac: str = Field("", max_length=40)
    ip: str = Field("", max_length=60)


class SignOutInput(InputModel):
    sign_no: str = Field(min_length=1, max_length=30)
    opter_no: str = Field("", max_length=30)


def _sign_in_unit(
    session: Session, *, fixmedins_code: str, opter: str, dev_no: str, now_s: int, ttl_s: int
) -> str:
    if not operator_enabled(session, fixmedins_code, opter):
        raise GatewayError(
            ErrorCode.FSI_OPERATOR_UNKNOWN, "opter is not a registered operator of this institution"
        )
    sign_no = secrets.token_hex(12).upper()  # 24 characters, 96 random bits
    session.add(
        FsiSignIn(
            sign_no=sign_no,
            fixmedins_code=fixmedins_code,
            opter=opter,
            dev_no=dev_no,
            signed_in_at_s=now_s,
            expires_at_s=now_s + ttl_s,
            signed_out_at_s=None,
        )
    )
    session.flush()
    return sign_no


def _sign_in_answer(call: FsiCall, sign_no: str) -> Answer:
    return ok(call, {"signinoutb": {"sign_time": time_text(call.now), "sign_no": sign_no}})


async def sign_in(call: FsiCall) -> Stored:
    body = parse_input(SignInInput, call.input, node="signIn")
    opter = call.envelope.opter
    if body.opter_no and body.opter_no != opter:
        raise GatewayError(ErrorCode.FSI_ENVELOPE_INVALID, "signIn.opter_no is not the opter")
    work = partial(
        _sign_in_unit,
        fixmedins_code=call.counter.fixmedins_code,
        opter=opter,
        dev_no=call.envelope.dev_no,
        now_s=int(call.now.timestamp()),
        ttl_s=call.app[SETTINGS].fsi_sign_in_ttl_s,
    )
    return await run_work(call, work, partial(_sign_in_answer, call))


def _sign_out_unit(session: Session, *, guard: SignInGuard) -> None:
    row = session.get(FsiSignIn, guard.sign_no, with_for_update=True)
    assert row is not None  # the guard read it in this transaction
    row.signed_out_at_s = guard.now_s
    session.flush()


def _sign_out_answer(call: FsiCall, _done: Any) -> Answer:
    return ok(call, {"signoutoutb": {"sign_time": time_text(call.now)}})


async def sign_out(call: FsiCall) -> Stored:
    body = parse_input(SignOutInput, call.input, node="signOut")
    guard = call.guard
    assert guard is not None
    if body.sign_no != guard.sign_no:
        raise GatewayError(
            ErrorCode.FSI_SIGN_NO_INVALID, "signOut.sign_no is not the envelope's sign_no"
        )
    # The guard checks the sign-in first (still valid, this operator and device), then it ends.
    return await run_work(
        call, partial(_sign_out_unit, guard=guard), partial(_sign_out_answer, call)
    )
