"""Idempotency keys (DOMAIN §7, IETF httpapi ``Idempotency-Key`` draft), kept in the database.

The caller runs two short transactions around the real work::

    outcome = begin_request(session, client_id=…, idempotency_key=…, request_sha256=…, now=…)
    # commit: the IN_PROGRESS row is now visible to every worker and replica
    if outcome.replay: answer outcome.response_status / outcome.response_body verbatim
    else: do the work, then finish_request(...) in the work's own transaction
    # work failed with no answer to store (database down, crash caught): release_request(...)

The primary key (client_id, idempotency_key) decides races: of two workers inserting the same
key, exactly one wins; the other sees the winner's row and gets IDEMPOTENCY_KEY_IN_USE (409)
until it is done, then the stored response. The same key with another request body gets
IDEMPOTENCY_KEY_REUSED (422). Keys live at least ``DEFAULT_TTL`` (24 h); an expired key is
treated as new.

One transaction instead (the settlement API's hot path): when the work and its answer commit
together, the IN_PROGRESS row is never visible to anyone else, so writing it first and
updating it last is two writes of one row for nothing. :func:`lookup_request` (one
primary-key read: replay, 422, 409 or "new") and :func:`store_response` (one INSERT of the
DONE row, after the work) do the same job in the work's transaction; the caller must make
sure no other transaction runs the same key meanwhile (the gateway: one writer at a time on
SQLite, a transaction-scoped advisory lock on PostgreSQL). Racing inserts still meet the
primary key: the loser fails with IntegrityError and nothing it did is committed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Final

from sqlalchemy import BigInteger, Boolean, Table, delete, literal_column
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dbkit import DriverInsert, DriverSQL, as_utc
from settlement.errors import IdempotencyKeyInUse, IdempotencyKeyReused
from settlement.store import IdempotencyKey, IdempotencyStatus

__all__ = [
    "DEFAULT_TTL",
    "IdempotencyOutcome",
    "begin_request",
    "finish_request",
    "lookup_request",
    "release_request",
    "store_response",
]

DEFAULT_TTL: Final = dt.timedelta(hours=24)
MAX_KEY_LENGTH: Final = 255


@dataclass(frozen=True, slots=True)
class IdempotencyOutcome:
    replay: bool  # True: answer with the stored response, do nothing else
    response_status: int | None = None
    response_body: str | None = None


def begin_request(
    session: Session,
    *,
    client_id: str,
    idempotency_key: str,
    request_sha256: str,
    now: dt.datetime,
    ttl: dt.timedelta = DEFAULT_TTL,
) -> IdempotencyOutcome:
    """Claim the key for this request, or tell the caller what the first request got."""
    assert 1 <= len(idempotency_key) <= MAX_KEY_LENGTH
    assert len(request_sha256) == 64
    assert now.tzinfo is not None
    try:
        with session.begin_nested():  # a SAVEPOINT: losing the race keeps the outer transaction
            session.add(
                IdempotencyKey(
                    client_id=client_id,
                    idempotency_key=idempotency_key,
                    request_sha256=request_sha256,
                    status=IdempotencyStatus.IN_PROGRESS,
                    created_at=now,
                    expires_at=now + ttl,
                )
            )
        return IdempotencyOutcome(replay=False)
    except IntegrityError:
        pass
    existing = session.get(IdempotencyKey, (client_id, idempotency_key), populate_existing=True)
    assert existing is not None
    if as_utc(existing.expires_at) <= now:
        session.execute(
            delete(IdempotencyKey).where(
                IdempotencyKey.client_id == client_id,
                IdempotencyKey.idempotency_key == idempotency_key,
            )
        )
        session.expunge(existing)
        return begin_request(
            session,
            client_id=client_id,
            idempotency_key=idempotency_key,
            request_sha256=request_sha256,
            now=now,
            ttl=ttl,
        )
    if existing.request_sha256 != request_sha256:
        raise IdempotencyKeyReused(
            "this Idempotency-Key was already used for a different request; use a new key"
        )
    if existing.status is IdempotencyStatus.IN_PROGRESS:
        raise IdempotencyKeyInUse(
            "the first request with this Idempotency-Key is still running; retry shortly"
        )
    return IdempotencyOutcome(
        replay=True, response_status=existing.response_status, response_body=existing.response_body
    )


_KEYS: Final[Table] = IdempotencyKey.__table__  # type: ignore[assignment]
# The row read on every settle, on the driver's cursor (dbkit.DriverSQL); each
# column's type converts what is read (SQLite's datetime text, the status enum).
_LOOKUP: Final = DriverSQL(
    "SELECT request_sha256, status, expires_at, response_status, response_body "
    "FROM settlement_idempotency_keys WHERE client_id = ? AND idempotency_key = ?",
    binds=(_KEYS.c.client_id, _KEYS.c.idempotency_key),
    results=(
        _KEYS.c.request_sha256,
        _KEYS.c.status,
        _KEYS.c.expires_at,
        _KEYS.c.response_status,
        _KEYS.c.response_body,
    ),
)

# PostgreSQL: the advisory lock and the lookup in one statement (one row whatever is found).
_LOCK_AND_LOOKUP: Final = DriverSQL(
    "SELECT pg_try_advisory_xact_lock(?), k.request_sha256, k.status, k.expires_at, "
    "k.response_status, k.response_body FROM (SELECT 1) AS one "
    "LEFT JOIN settlement_idempotency_keys AS k ON k.client_id = ? AND k.idempotency_key = ?",
    binds=(literal_column("0", BigInteger()), _KEYS.c.client_id, _KEYS.c.idempotency_key),
    results=(
        literal_column("0", Boolean()),
        _KEYS.c.request_sha256,
        _KEYS.c.status,
        _KEYS.c.expires_at,
        _KEYS.c.response_status,
        _KEYS.c.response_body,
    ),
)

# On the driver's cursor (dbkit.DriverInsert): it runs on every settle.
_INSERT_KEY: Final = DriverInsert(
    _KEYS,
    (
        "client_id",
        "idempotency_key",
        "request_sha256",
        "status",
        "response_status",
        "response_body",
        "created_at",
        "expires_at",
    ),
)


def lookup_request(
    session: Session,
    *,
    client_id: str,
    idempotency_key: str,
    request_sha256: str,
    now: dt.datetime,
    advisory_lock_id: int | None = None,
) -> IdempotencyOutcome | None:
    """None when the key is new (an expired key is deleted and counts as new); else the
    stored answer to replay. Raises IdempotencyKeyReused for another request under the key and
    IdempotencyKeyInUse while a two-transaction caller (:func:`begin_request`) still runs it.

    ``advisory_lock_id`` (PostgreSQL): take that transaction-scoped advisory lock without
    waiting, in the same statement as the lookup (one round trip instead of two), and raise
    IdempotencyKeyInUse if another transaction holds it. The row is then read in the
    statement's snapshot, taken just before the lock: a key committed by the lock's previous
    holder in between is not seen, and this unit's own insert of the key at the end fails on
    the primary key (IntegrityError: nothing is committed, and the retry replays the answer).
    """
    assert 1 <= len(idempotency_key) <= MAX_KEY_LENGTH
    assert len(request_sha256) == 64
    assert now.tzinfo is not None
    connection = session.connection()
    if advisory_lock_id is None:
        existing = _LOOKUP.fetchone(connection, (client_id, idempotency_key))
    else:
        locked = _LOCK_AND_LOOKUP.fetchone(
            connection, (advisory_lock_id, client_id, idempotency_key)
        )
        assert locked is not None  # one row: the lock's, with or without a key
        if not locked[0]:
            raise IdempotencyKeyInUse("the first request with this key is still running")
        existing = None if locked[1] is None else locked[1:]
    if existing is None:
        return None
    stored_sha256, status, expires_at, response_status, response_body = existing
    if as_utc(expires_at) <= now:
        session.execute(
            delete(IdempotencyKey).where(
                IdempotencyKey.client_id == client_id,
                IdempotencyKey.idempotency_key == idempotency_key,
            )
        )
        return None
    if stored_sha256 != request_sha256:
        raise IdempotencyKeyReused(
            "this Idempotency-Key was already used for a different request; use a new key"
        )
    if status is IdempotencyStatus.IN_PROGRESS:
        raise IdempotencyKeyInUse(
            "the first request with this Idempotency-Key is still running; retry shortly"
        )
    return IdempotencyOutcome(
        replay=True, response_status=response_status, response_body=response_body
    )


def store_response(
    session: Session,
    *,
    client_id: str,
    idempotency_key: str,
    request_sha256: str,
    now: dt.datetime,
    response_status: int,
    response_body: str,
    ttl: dt.timedelta = DEFAULT_TTL,
) -> None:
    """Insert the key as DONE with its answer, in the work's transaction (after
    :func:`lookup_request` said it was new). IntegrityError if the key was taken meanwhile."""
    _INSERT_KEY.execute(
        session.connection(),
        [
            (
                client_id,
                idempotency_key,
                request_sha256,
                IdempotencyStatus.DONE,
                response_status,
                response_body,
                now,
                now + ttl,
            )
        ],
    )


def finish_request(
    session: Session,
    *,
    client_id: str,
    idempotency_key: str,
    response_status: int,
    response_body: str,
) -> None:
    """Store the response of the request that owns the key (in the work's transaction)."""
    row = session.get(IdempotencyKey, (client_id, idempotency_key), with_for_update=True)
    assert row is not None, "finish_request without begin_request"
    assert row.status is IdempotencyStatus.IN_PROGRESS
    row.status = IdempotencyStatus.DONE
    row.response_status = response_status
    row.response_body = response_body
    session.flush()


def release_request(session: Session, *, client_id: str, idempotency_key: str) -> None:
    """Forget an IN_PROGRESS key whose work ended with no answer to store, so that the
    client's retry runs the request again instead of waiting 24 h on a 409."""
    session.execute(
        delete(IdempotencyKey).where(
            IdempotencyKey.client_id == client_id,
            IdempotencyKey.idempotency_key == idempotency_key,
            IdempotencyKey.status == IdempotencyStatus.IN_PROGRESS,
        )
    )
