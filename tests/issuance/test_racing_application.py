"""Two first applications for the same person at the same moment (two counters, one citizen):
the second is refused APPLICATION_OPEN (the gateway's 409), never an IntegrityError (a 500
whose log line carried the citizen id, the name and the birth date). Real concurrency: two
threads, two connections, on SQLite (writers serialise: the second waits for the first) and
on PostgreSQL (both find no holder, the second's insert waits on the unique citizen_id and
fails when the first commits). The order is forced by events, not sleeps."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable
from typing import Any

from issuance_testkit import COMMUNITY, applicant, at, request
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session

from gateway.errors import ERRORS
from issuance import applications, errors
from issuance.programme import Channel, Programme
from issuance.store import Application, Cardholder

WAIT_S = 30.0  # a bound on every wait below, never a pause


def _blocked_by(engine: Engine, pid: int) -> bool:
    """Is some backend waiting on a lock that backend ``pid`` holds?"""
    with engine.connect() as connection:
        waiting = connection.execute(
            text("SELECT count(*) FROM pg_stat_activity WHERE :pid = ANY(pg_blocking_pids(pid))"),
            {"pid": pid},
        ).scalar_one()
    return int(waiting) > 0


def _until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.01)


def test_the_second_of_two_racing_first_applications_is_a_conflict(
    engine: Engine, programme: Programme
) -> None:
    who = applicant(777)
    req = request(who, "first_card", Channel.COMMUNITY_CENTRE, chosen_bank="BOC")
    now = at(dt.date(2027, 1, 15))
    first_applied = threading.Event()
    second_started = threading.Event()
    release_first = threading.Event()
    outcome: dict[str, Any] = {}

    def first() -> None:
        with Session(engine) as session, session.begin():
            applications.apply(session, programme, COMMUNITY, req, now)
            if engine.dialect.name == "postgresql":
                outcome["first_pid"] = session.execute(text("SELECT pg_backend_pid()")).scalar()
            first_applied.set()
            assert release_first.wait(WAIT_S)
        outcome["first"] = "applied"

    def second() -> None:
        assert first_applied.wait(WAIT_S)
        second_started.set()
        try:
            with Session(engine) as session, session.begin():
                applications.apply(session, programme, COMMUNITY, req, now)
            outcome["second"] = "applied"
        except Exception as exc:  # what the gateway would answer with
            outcome["second"] = exc

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    try:
        assert second_started.wait(WAIT_S)
        if engine.dialect.name == "postgresql":
            # The second found no holder and now waits on the first's uncommitted citizen_id.
            _until(
                lambda: _blocked_by(engine, outcome["first_pid"]),
                "the second insert waits on the first",
            )
    finally:
        release_first.set()
        for thread in threads:
            thread.join(WAIT_S)
    assert outcome["first"] == "applied"
    refused = outcome["second"]
    assert isinstance(refused, errors.ApplicationOpen), repr(refused)
    assert ERRORS[refused.code].status == 409
    assert who.citizen_id not in refused.message
    assert who.name not in refused.message
    with Session(engine) as session:
        holders = select(func.count()).where(Cardholder.citizen_id == who.citizen_id)
        assert session.execute(holders).scalar_one() == 1
        holder_id = session.execute(
            select(Cardholder.id).where(Cardholder.citizen_id == who.citizen_id)
        ).scalar_one()
        taken = select(func.count()).where(Application.holder_id == holder_id)
        assert session.execute(taken).scalar_one() == 1
