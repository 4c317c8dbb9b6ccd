"""No personal data in the logs, whatever fails: a citizen id, a name and a phone number are
planted in requests that fail in various ways (bad input, a refusal, an unexpected exception
whose message carries them, a database error over rows that hold them, a query string, a
request id) and every line the served gateway's logging wrote is scanned for them.

On both backends: PostgreSQL's errors quote the key values of a violated constraint in their
message (``DETAIL: Key (code)=(...)``), which an unexpected exception's log line must not
carry."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from functools import partial
from typing import Any

import pytest
from aiohttp import web
from gateway_testkit import Client, Signer, assert_problem
from sqlalchemy import insert
from sqlalchemy.orm import Session

from gateway.logs import configure_logging
from gateway.routing import Call, Route
from gateway.state import DATABASE
from gateway.store import Institution

CITIZEN_ID = "310101199001011234"
NAME = "张三丰"
PHONE = "13912345678"
PLANTED = (CITIZEN_ID, NAME, PHONE)
# The same data as an institution code (the primary key) and name, for the database error.
CODE = f"H{CITIZEN_ID[:11]}"


async def _boom(_call: Call[None]) -> web.Response:
    raise RuntimeError(f"no holder {CITIZEN_ID} named {NAME}, phone {PHONE}")


def _insert_twice(session: Session) -> None:
    row = {"code": CODE, "name": f"{NAME} {PHONE} {CITIZEN_ID}", "kind": "hospital", "level": 1}
    session.execute(insert(Institution), [row])
    session.flush()
    session.execute(insert(Institution), [row])


async def _duplicate(call: Call[None]) -> web.Response:
    await call.app[DATABASE].write(partial(_insert_twice))
    return web.json_response({})


@pytest.fixture
def extra_routes() -> Sequence[Route]:
    def route(path: str, handler: Any) -> Route:
        return Route(
            "GET", path, operation_id=path.strip("/"), summary="t", handler=handler, signed=False
        )

    return (route("/test/boom", _boom), route("/test/duplicate", _duplicate))


@pytest.fixture
def logged(capfd: pytest.CaptureFixture[str]) -> Iterator[Any]:
    """Everything the gateway's own logging writes (stderr, JSON lines), configured as
    `gateway serve` does; ``logged()`` starts capturing, ``logged()`` again returns it."""
    started: list[bool] = []

    def logged_text() -> str:
        if not started:
            configure_logging("json", "DEBUG")  # here: on the stderr of the test's call
            capfd.readouterr()
            started.append(True)
            return ""
        return capfd.readouterr().err

    yield logged_text
    logging.getLogger().handlers.clear()


async def test_personal_data_never_reaches_a_log_line(
    client: Client, signer: Signer, logged: Any
) -> None:
    logged()
    # 1. An unexpected exception whose message carries all three.
    await assert_problem(await client.get("/test/boom"), 500, "INTERNAL")
    # 2. A database error over a row that holds them (IntegrityError: duplicate key).
    await assert_problem(await client.get("/test/duplicate"), 500, "INTERNAL")
    # 3. Bad input: a schema refusal with the data in the rejected body.
    body = {"message": "x", "citizen_id": CITIZEN_ID, "name": NAME, "phone": PHONE}
    await assert_problem(await signer.post(body=body), 422, "VALIDATION_FAILED")
    # 4. Malformed JSON around them.
    raw = f'{{"message": "{NAME} {CITIZEN_ID} {PHONE}"'.encode()
    await assert_problem(await signer.post(body=raw), 400, "MALFORMED_JSON")
    # 5. A refusal: a card challenge for a card_sn with a wrong signature.
    refused = await signer.post(
        extra_headers={"X-Signature": "00" * 32}, body={"message": f"{NAME} {PHONE}"}
    )
    await assert_problem(refused, 401, "SIGNATURE_INVALID")
    # 6. A query string and a request id chosen by the caller; a path that does not exist.
    await client.get(
        f"/v1/settlements?psn_no={CITIZEN_ID}&name={NAME}", headers={"X-Request-Id": PHONE}
    )
    await client.get(f"/v1/persons/{CITIZEN_ID}/{PHONE}")
    text = logged()
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert len(lines) >= 8, text  # the access lines and the two unhandled exceptions
    failures = [line for line in lines if line.get("event") == "unhandled exception"]
    assert {line["exc_type"] for line in failures} == {"RuntimeError", "IntegrityError"}
    assert all("message not logged" in line["traceback"] for line in failures)
    for planted in PLANTED:
        assert planted not in text, f"{planted!r} in the log:\n{text}"
    # Nor their parts a search would find: the unique digits, the name's given names.
    assert CITIZEN_ID[6:14] not in text
    assert NAME[1:] not in text
    assert PHONE[3:] not in text
