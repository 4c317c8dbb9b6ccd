"""Enrolment over the ops API: roles, rotation's overlap, disable and suspend, bad input
answered as problem+json with nothing changed, and the audit trail behind every write."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
from gateway_testkit import HOSPITAL, OK_TERMINAL, Client, FakeClock, Signer, assert_problem
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from gateway.audit import AuditRow
from gateway.card_auth.tables import GatewaySecret
from gateway.routes import ROUTES
from gateway.sealing import Kek, is_sealed
from gateway.store import Institution, Terminal

OPS_TOKEN = "b" * 40
KEK_HEX = "11" * 32


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    # TTL 0: every request reads the directory, so a change is seen by the next request.
    return {"ops_token": OPS_TOKEN, "kek_hex": KEK_HEX, "terminal_cache_ttl_s": 0}


def _bearer(token: str = OPS_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _post(
    client: Client, path: str, body: dict[str, Any] | None = None, token: str = OPS_TOKEN
) -> Any:
    return await client.post(path, json=body, headers=_bearer(token))


def _snapshot(engine: Engine) -> tuple[Any, ...]:
    with Session(engine) as session:
        return tuple(
            tuple(tuple(row) for row in session.execute(text(f"SELECT * FROM {table} ORDER BY 1")))
            for table in ("institutions", "terminals", "ops_identities", "audit_log")
        )


async def _identity(client: Client, name: str, role: str) -> str:
    response = await _post(client, "/v1/ops/identities", {"name": name, "role": role})
    assert response.status == 201, await response.text()
    token: str = (await response.json())["token"]
    return token


async def _enrol(client: Client, terminal_id: str, token: str = OPS_TOKEN) -> bytes:
    response = await _post(
        client,
        "/v1/ops/terminals",
        {"terminal_id": terminal_id, "institution_code": HOSPITAL},
        token,
    )
    assert response.status == 201, await response.text()
    body = await response.json()
    return bytes.fromhex(body["secret_hex"])


async def test_an_enrolled_terminal_signs_with_the_secret_shown_once(
    client: Client, clock: FakeClock, engine: Engine
):
    secret = await _enrol(client, "NEW-01")
    response = await Signer(client, clock, "NEW-01", secret).post()
    assert response.status == 200, await response.text()
    listed = await (await client.get("/v1/ops/terminals", headers=_bearer())).json()
    assert {t["terminal_id"] for t in listed["terminals"]} >= {"NEW-01", OK_TERMINAL}
    assert "secret" not in json.dumps(listed)
    with Session(engine) as session:
        row = session.get(Terminal, "NEW-01")
        assert row is not None
        assert row.secret is None
        assert row.sealed_secret is not None
        assert secret not in bytes(row.sealed_secret)


async def test_rotation_accepts_both_secrets_in_the_overlap_then_only_the_new(
    client: Client, clock: FakeClock
):
    old = await _enrol(client, "ROT-01")
    response = await _post(client, "/v1/ops/terminals/ROT-01/rotate", {"overlap_s": 600})
    assert response.status == 200, await response.text()
    body = await response.json()
    new = bytes.fromhex(body["secret_hex"])
    assert body["previous_accepted_until_s"] == int(clock.now_s) + 600
    assert (await Signer(client, clock, "ROT-01", old).post()).status == 200
    assert (await Signer(client, clock, "ROT-01", new).post()).status == 200
    clock.now_s += 600
    await assert_problem(
        await Signer(client, clock, "ROT-01", old).post(), 401, "SIGNATURE_INVALID"
    )
    assert (await Signer(client, clock, "ROT-01", new).post()).status == 200


async def test_a_disabled_terminal_and_a_suspended_institution_are_refused(
    client: Client, clock: FakeClock
):
    secret = await _enrol(client, "OFF-99")
    signer = Signer(client, clock, "OFF-99", secret)
    assert (await signer.post()).status == 200
    assert (await _post(client, "/v1/ops/terminals/OFF-99/disable")).status == 200
    await assert_problem(await signer.post(), 401, "TERMINAL_DISABLED")
    assert (await _post(client, "/v1/ops/terminals/OFF-99/enable")).status == 200
    assert (await signer.post()).status == 200
    response = await client.patch(
        f"/v1/ops/institutions/{HOSPITAL}", json={"suspended": True}, headers=_bearer()
    )
    assert response.status == 200, await response.text()
    await assert_problem(await signer.post(), 401, "TERMINAL_DISABLED")


async def test_roles_viewer_reads_operator_runs_terminals_admin_enrols(client: Client):
    viewer = await _identity(client, "vera", "viewer")
    operator = await _identity(client, "otto", "operator")
    assert (await client.get("/v1/ops/audit", headers=_bearer(viewer))).status == 200
    await assert_problem(
        await _post(
            client,
            "/v1/ops/terminals",
            {"terminal_id": "X-1", "institution_code": HOSPITAL},
            viewer,
        ),
        403,
        "OPS_FORBIDDEN",
    )
    await _enrol(client, "X-2", operator)
    await assert_problem(
        await _post(
            client,
            "/v1/ops/institutions",
            {"code": "P9", "name": "p", "kind": "pharmacy"},
            operator,
        ),
        403,
        "OPS_FORBIDDEN",
    )
    # Revoked: the token is a wrong token from then on.
    assert (await _post(client, "/v1/ops/identities/otto/revoke")).status == 200
    await assert_problem(
        await client.get("/v1/ops/audit", headers=_bearer(operator)), 401, "OPS_UNAUTHORIZED"
    )
    audit = await (await client.get("/v1/ops/audit", headers=_bearer(viewer))).json()
    actions = [(e["actor"], e["action"]) for e in audit["entries"]]
    assert ("ops:otto", "terminal.enrol") in actions
    assert ("ops:bootstrap", "ops_identity.revoke") in actions
    assert operator not in json.dumps(audit)


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        (
            "/v1/ops/institutions",
            {"code": HOSPITAL, "name": "again", "kind": "pharmacy"},
            409,
            "ENROLMENT_CONFLICT",
        ),
        (
            "/v1/ops/institutions",
            {"code": "H9", "name": "no level", "kind": "hospital"},
            422,
            "ENROLMENT_INVALID",
        ),
        (
            "/v1/ops/institutions",
            {"code": "H9", "name": "x", "kind": "castle"},
            422,
            "ENROLMENT_INVALID",
        ),
        (
            "/v1/ops/institutions",
            {"code": "H 9", "name": "x", "kind": "pharmacy"},
            422,
            "ENROLMENT_INVALID",
        ),
        (
            "/v1/ops/institutions",
            {"code": "H9", "name": "x", "kind": "hospital", "level": "2"},
            422,
            "VALIDATION_FAILED",
        ),
        (
            "/v1/ops/terminals",
            {"terminal_id": OK_TERMINAL, "institution_code": HOSPITAL},
            409,
            "ENROLMENT_CONFLICT",
        ),
        (
            "/v1/ops/terminals",
            {"terminal_id": "T-9", "institution_code": "NOPE"},
            404,
            "ENROLMENT_NOT_FOUND",
        ),
        (
            "/v1/ops/terminals",
            {"terminal_id": "T 9", "institution_code": HOSPITAL},
            422,
            "ENROLMENT_INVALID",
        ),
        (
            "/v1/ops/terminals",
            {"terminal_id": "T-9", "institution_code": HOSPITAL, "secret_hex": "zz" * 16},
            422,
            "VALIDATION_FAILED",
        ),
        ("/v1/ops/terminals/NOPE/rotate", {}, 404, "ENROLMENT_NOT_FOUND"),
        ("/v1/ops/terminals/NOPE/disable", None, 404, "ENROLMENT_NOT_FOUND"),
        ("/v1/ops/identities", {"name": "Bad Name", "role": "viewer"}, 422, "ENROLMENT_INVALID"),
        ("/v1/ops/identities", {"name": "eve", "role": "root"}, 422, "ENROLMENT_INVALID"),
    ],
)
async def test_bad_input_is_a_typed_problem_and_changes_nothing(
    client: Client, engine: Engine, path: str, body: Any, status: int, code: str
):
    before = _snapshot(engine)
    await assert_problem(await _post(client, path, body), status, code)
    assert _snapshot(engine) == before


async def test_audit_csv_export(client: Client):
    await _enrol(client, "CSV-01")
    response = await client.get("/v1/ops/audit.csv", headers=_bearer())
    assert response.status == 200
    assert response.content_type == "text/csv"
    rows = list(csv.reader(io.StringIO(await response.text())))
    assert rows[0][:5] == ["id", "at_utc", "actor", "source", "action"]
    assert [
        rows[1][2],
        rows[1][4],
        rows[1][5],
    ] == ["ops:bootstrap", "terminal.enrol", "terminal:CSV-01"]


async def test_every_write_is_audited_with_who_and_what(client: Client, engine: Engine):
    await _post(
        client, "/v1/ops/institutions", {"code": "P77", "name": "Pharm", "kind": "pharmacy"}
    )
    await client.patch("/v1/ops/institutions/P77", json={"name": "Pharm 2"}, headers=_bearer())
    with Session(engine) as session:
        rows = session.scalars(select(AuditRow).order_by(AuditRow.id)).all()
        assert [(r.action, r.subject) for r in rows] == [
            ("institution.add", "institution:P77"),
            ("institution.change", "institution:P77"),
        ]
        assert json.loads(rows[1].changes) == {"name": ["Pharm", "Pharm 2"]}
        assert rows[0].source == "127.0.0.1"
        assert session.get(Institution, "P77") is not None


async def test_the_ops_page_shows_the_audit_trail(client: Client):
    html = await (await client.get("/ops")).text()
    assert '<table id="audit">' in html
    assert 'id="audit-csv"' in html
    js = await (await client.get("/ops/static/ops.js")).text()
    assert '"/v1/ops/audit?limit=20"' in js
    assert '"/v1/ops/audit.csv"' in js
    assert ".innerHTML" not in js


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        # A body the schema refuses (422 to the right token) and one that is not even JSON.
        ("POST", "/v1/ops/institutions", {"code": 1, "kind": "castle", "extra": True}),
        ("POST", "/v1/ops/terminals", "{not json"),
        ("PATCH", f"/v1/ops/institutions/{HOSPITAL}", {"suspended": "yes"}),
        ("POST", "/v1/ops/crls", {"crl": 5}),
    ],
)
@pytest.mark.parametrize("authorization", [None, "Bearer " + "w" * 40, "Basic Zm9vOmJhcg=="])
async def test_no_or_a_wrong_token_is_401_whatever_the_body(
    client: Client,
    engine: Engine,
    method: str,
    path: str,
    body: Any,
    authorization: str | None,
):
    """The credential is checked before the body is parsed: a caller without the token gets
    401 whatever it sent, never a 422 (or 400, 415) that would describe the schema."""
    before = _snapshot(engine)
    headers = {} if authorization is None else {"Authorization": authorization}
    if isinstance(body, str):
        response = await client.request(
            method, path, data=body, headers={**headers, "Content-Type": "application/json"}
        )
    else:
        response = await client.request(method, path, json=body, headers=headers)
    problem = await assert_problem(response, 401, "OPS_UNAUTHORIZED")
    assert "errors" not in problem
    # Nor a wrong content type: still 401, not 415.
    response = await client.request(
        method, path, data=b"\x00", headers={**headers, "Content-Type": "text/plain"}
    )
    await assert_problem(response, 401, "OPS_UNAUTHORIZED")
    assert _snapshot(engine) == before


async def test_a_too_low_role_is_403_whatever_the_body(client: Client, engine: Engine):
    viewer = await _identity(client, "vicky", "viewer")
    before = _snapshot(engine)
    response = await _post(client, "/v1/ops/institutions", {"code": 1, "kind": "castle"}, viewer)
    await assert_problem(response, 403, "OPS_FORBIDDEN")
    # The right role with the same body: the schema's answer, as before.
    await assert_problem(
        await _post(client, "/v1/ops/institutions", {"code": 1, "kind": "castle"}),
        422,
        "VALIDATION_FAILED",
    )
    assert _snapshot(engine) == before


def test_every_ops_api_route_checks_its_token_before_its_body():
    """Each /v1/ops route names its role in ``authorize=`` (run by the pipeline before the
    body is read); a route that checked in its handler would parse first."""
    ops = [route for route in ROUTES if route.path.startswith("/v1/ops/")]
    assert len(ops) > 20
    assert [route.path for route in ops if route.authorize is None or route.signed] == []


async def test_the_card_session_key_is_stored_sealed_under_the_kek(client: Client, engine: Engine):
    """A gateway with a KEK keeps the card-session MAC key sealed at rest (a copy of the
    database must not let anyone forge card sessions), bound to its row."""
    assert (await client.get("/healthz")).status == 200
    with Session(engine) as session:
        row = session.get(GatewaySecret, "card_session_key")
        assert row is not None
        stored = bytes(row.value)
    assert is_sealed(stored)
    kek = Kek(bytes.fromhex(KEK_HEX))
    key = kek.open(stored, b"gateway_secrets.value:card_session_key")
    assert len(key) == 32
    assert key not in stored
