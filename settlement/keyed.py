"""A request under an idempotency key, inside one unit of work: claim the key, do the work,
store the answer, all in the work's own transaction.

Why the answer is stored in the unit
    Claiming the key, the work (a settlement, a cancel, fee lines) and the stored answer commit
    together or not at all: an acknowledged settlement is durable (the commit precedes the
    answer), a failed one leaves nothing behind (not even its key: the retry runs afresh), and
    a crash between "money moved" and "answer stored" cannot happen.

Why the door renders it (:data:`Render`)
    The answer is stored exactly as the door sent it and replayed byte for byte: an HIS that
    compares a retry's answer with the first (or hashes it) sees the same bytes. Each door
    (the ``/v1`` JSON API, the national envelope) has its own key space and its own format, so
    the use case takes a renderer from the door and stores what it returns; the use case
    itself never knows a format or a status line. Storing a door-neutral result and rendering
    it on every replay would make a replay depend on the renderer's version of the day.

In progress is detected beside the key row, since the row is only ever seen committed: on
PostgreSQL by a transaction-scoped advisory lock taken without waiting
(``pg_try_advisory_xact_lock``): another worker or replica running the same key answers 409
at once instead of queueing on the row; SQLite runs one write transaction at a time, so there
the second request simply runs after the first and replays its answer. (The gateway also keeps
a per-worker set of running keys, for the same 409 without a transaction.)
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from dbkit import as_utc
from settlement.errors import IdempotencyKeyInUse, IdempotencyKeyReused
from settlement.idempotency import finish_request, lookup_request, store_response
from settlement.store import IdempotencyKey, IdempotencyStatus

__all__ = [
    "Answer",
    "KeyedRequest",
    "Render",
    "Stored",
    "advisory_lock_id",
    "answer",
    "answer_owned",
    "claim_key",
    "request_sha256",
    "stored_answer",
]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Answer:
    """What a door answers: a status (the door's own: HTTP for ``/v1``) and the body, verbatim."""

    status: int
    body: str


# A door's rendering of a use case's outcome; called inside the unit, so its answer is stored
# in the same transaction as the work.
Render = Callable[[T], Answer]


@dataclass(frozen=True, slots=True)
class Stored:
    """An idempotent answer: the first answer, verbatim, and whether this is a replay."""

    status: int
    body: str
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class KeyedRequest:
    client_id: str  # the terminal's institution: keys are scoped to it
    idempotency_key: str
    request_hash: str
    now: dt.datetime


def request_sha256(operation: str, subject: object, body: Any) -> str:
    """Fingerprint of a request for key comparison: the operation (a door's method and path,
    or its transaction code), who it acts for (the cardholder, not the card-session token,
    which changes when the card is read again), and the canonical JSON of the body."""
    canonical = json.dumps(
        {"op": operation, "subject": subject, "body": body},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=str,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def advisory_lock_id(client_id: str, idempotency_key: str) -> int:
    """The PostgreSQL advisory lock (one signed 64-bit key space) guarding a running key."""
    digest = hashlib.sha256(f"idempotency\n{client_id}\n{idempotency_key}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def claim_key(session: Session, keyed: KeyedRequest) -> Stored | None:
    """Make this unit the key's only runner; the stored answer if the key was already done.

    Nothing is written yet: the key row is inserted with the answer by :func:`answer`, in this
    same transaction (settlement.idempotency, "one transaction instead")."""
    lock_id = None
    if session.get_bind().dialect.name == "postgresql":
        lock_id = advisory_lock_id(keyed.client_id, keyed.idempotency_key)
    outcome = lookup_request(
        session,
        client_id=keyed.client_id,
        idempotency_key=keyed.idempotency_key,
        request_sha256=keyed.request_hash,
        now=keyed.now,
        advisory_lock_id=lock_id,  # PostgreSQL: taken in the lookup's own statement
    )
    if outcome is None:
        return None
    assert outcome.response_status is not None
    assert outcome.response_body is not None
    return Stored(outcome.response_status, outcome.response_body, replayed=True)


def answer(session: Session, keyed: KeyedRequest, answered: Answer) -> Stored:
    """Store the answer under the key (after :func:`claim_key` found it new) and return it."""
    store_response(
        session,
        client_id=keyed.client_id,
        idempotency_key=keyed.idempotency_key,
        request_sha256=keyed.request_hash,
        now=keyed.now,
        response_status=answered.status,
        response_body=answered.body,
    )
    return Stored(answered.status, answered.body)


def answer_owned(session: Session, keyed: KeyedRequest, answered: Answer) -> Stored:
    """Store the answer of a request that claimed its key in an earlier transaction
    (settlement.idempotency.begin_request: the flows through the hub) and return it."""
    finish_request(
        session,
        client_id=keyed.client_id,
        idempotency_key=keyed.idempotency_key,
        response_status=answered.status,
        response_body=answered.body,
    )
    return Stored(answered.status, answered.body)


def stored_answer(session: Session, keyed: KeyedRequest) -> Stored | None:
    """The key's stored answer, read only (no claim, nothing written): for a flow that looks
    before it starts (a settlement through the hub), so a retry of a request already answered
    is answered again before anything else is checked, as :func:`claim_key` answers it. An
    expired key reads as new (the claim that follows replaces it)."""
    row = session.get(IdempotencyKey, (keyed.client_id, keyed.idempotency_key))
    if row is None:
        return None
    if as_utc(row.expires_at) <= keyed.now:
        return None
    if row.request_sha256 != keyed.request_hash:
        raise IdempotencyKeyReused(
            "this Idempotency-Key was already used for a different request; use a new key"
        )
    if row.status is IdempotencyStatus.IN_PROGRESS:
        raise IdempotencyKeyInUse(
            "the first request with this Idempotency-Key is still running; retry shortly"
        )
    assert row.response_status is not None
    assert row.response_body is not None
    return Stored(row.response_status, row.response_body, replayed=True)
