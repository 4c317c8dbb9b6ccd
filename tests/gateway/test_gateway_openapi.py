"""/openapi.json is generated from the route table that builds the router: check both ways."""

from __future__ import annotations

import pytest
from aiohttp import web
from gateway_testkit import Client

from gateway.errors import ERRORS, PROBLEM_CONTENT_TYPE, ErrorCode
from gateway.openapi import BEARER_SCHEME, build_openapi
from gateway.routes import ROUTES
from gateway.state import OPENAPI
from sscard import terminal_auth as ta

HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def _router_routes(app: web.Application) -> set[tuple[str, str]]:
    """The router's routes, less what every path answers implicitly (HEAD with GET, OPTIONS,
    and the catch-all 405: gateway.routing.add_routes)."""
    return {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None and route.method not in ("HEAD", "OPTIONS", "*")
    }


def _documented(spec: dict) -> set[tuple[str, str]]:
    return {
        (method, path)
        for path, item in spec["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }


async def test_every_route_is_documented_and_every_documented_route_exists(
    client: Client, app: web.Application
):
    response = await client.get("/openapi.json")
    assert response.status == 200
    spec = await response.json()
    assert spec == app[OPENAPI]
    assert spec["openapi"] == "3.1.0"
    routes = _router_routes(app)
    assert routes  # the walk found something
    assert routes == _documented(spec)


def test_each_operation_documents_its_error_codes_by_status():
    spec = build_openapi(ROUTES)
    for route in ROUTES:
        operation = spec["paths"][route.path][route.method.lower()]
        assert operation["summary"] == route.summary
        assert str(route.response_status) in operation["responses"]
        for code in route.error_codes():
            response = operation["responses"][str(ERRORS[code].status)]
            schema = response["content"][PROBLEM_CONTENT_TYPE]["schema"]
            assert code in schema["allOf"][1]["properties"]["code"]["enum"]
        if route.signed:
            assert operation["security"] == [
                {
                    "terminalId": [],
                    "timestamp": [],
                    "nonce": [],
                    "signatureVersion": [],
                    "signature": [],
                }
            ]
        elif {ErrorCode.OPS_UNAUTHORIZED, ErrorCode.METRICS_UNAUTHORIZED} & set(
            route.error_codes()
        ):
            assert operation["security"] == [{BEARER_SCHEME: []}]
        else:
            assert operation["security"] == []


def test_echo_request_schema_forbids_unknown_fields():
    spec = build_openapi(ROUTES)
    echo = spec["paths"]["/v1/echo"]["post"]
    ref = echo["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = spec["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert schema["additionalProperties"] is False
    assert schema["required"] == ["message"]
    assert "401" in echo["responses"]
    assert "422" in echo["responses"]


def test_every_ref_resolves():
    spec = build_openapi(ROUTES)
    schemas = spec["components"]["schemas"]

    def walk(node: object) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if ref is not None:
                assert ref.startswith("#/components/schemas/")
                assert ref.rsplit("/", 1)[1] in schemas, ref
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(spec)


def test_security_schemes_are_declared_and_every_requirement_names_one():
    spec = build_openapi(ROUTES)
    schemes = spec["components"]["securitySchemes"]
    # The terminal's signed headers: apiKey header schemes, one per header the gateway reads.
    headers = {
        name: scheme["name"] for name, scheme in schemes.items() if scheme["type"] == "apiKey"
    }
    assert headers == {
        "terminalId": ta.HEADER_TERMINAL_ID,
        "timestamp": ta.HEADER_TIMESTAMP,
        "nonce": ta.HEADER_NONCE,
        "signatureVersion": ta.HEADER_SIGNATURE_VERSION,
        "signature": ta.HEADER_SIGNATURE,
    }
    assert all(schemes[name]["in"] == "header" for name in headers)
    assert schemes[BEARER_SCHEME]["type"] == "http"
    assert schemes[BEARER_SCHEME]["scheme"] == "bearer"
    for scheme in schemes.values():
        assert scheme["description"].strip()
    used: set[str] = set()
    for item in spec["paths"].values():
        for method, operation in item.items():
            assert method in HTTP_METHODS
            for requirement in operation["security"]:
                assert set(requirement) <= set(schemes), requirement
                assert all(scopes == [] for scopes in requirement.values())  # not OAuth
                used |= set(requirement)
    assert used == set(schemes)  # nothing declared that no operation uses


def test_ops_routes_need_the_bearer_token_and_their_static_page_does_not():
    spec = build_openapi(ROUTES)
    ops = [
        (path, method, operation)
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if "ops dashboard" in operation["tags"]
    ]
    summary = spec["paths"]["/v1/ops/summary"]["get"]
    assert summary["security"] == [{BEARER_SCHEME: []}]
    assert summary["responses"]["401"]["content"][PROBLEM_CONTENT_TYPE]["schema"]["allOf"][1][
        "properties"
    ]["code"]["enum"] == ["OPS_UNAUTHORIZED"]
    too_many = summary["responses"]["429"]["content"][PROBLEM_CONTENT_TYPE]["schema"]
    assert too_many["allOf"][1]["properties"]["code"]["enum"] == ["OPS_TOO_MANY_WRONG_TOKENS"]
    assert "counters_since" in spec["components"]["schemas"]["OpsSummary"]["properties"]
    static = [operation for path, _, operation in ops if path.startswith("/ops")]
    assert len(static) == 4
    assert all(operation["security"] == [] for operation in static)


def test_the_document_is_valid_openapi_3_1() -> None:
    """Every templated path declares its parameters, every schema is well formed (issue 17:
    ten templated paths declared none)."""
    from openapi_spec_validator import validate

    from gateway.openapi import build_openapi
    from gateway.routes import ROUTES

    validate(build_openapi(ROUTES))


def test_declared_parameters_and_bodies_name_real_routes() -> None:
    from gateway.openapi_params import BODIES, PARAMETERS
    from gateway.routes import ROUTES

    operations = {route.operation_id for route in ROUTES}
    assert set(PARAMETERS) <= operations
    assert set(BODIES) <= operations


def test_required_headers_and_queries_are_declared() -> None:
    from gateway.openapi import build_openapi
    from gateway.routes import ROUTES

    paths = build_openapi(ROUTES)["paths"]

    def names(path: str, method: str) -> set[tuple[str, str, bool]]:
        return {(p["in"], p["name"], p["required"]) for p in paths[path][method]["parameters"]}

    assert ("header", "X-Card-Session", True) in names("/v1/settlements", "post")
    assert ("header", "Idempotency-Key", True) in names("/v1/settlements", "post")
    assert ("query", "date", True) in names("/v1/settlements", "get")
    assert ("query", "psn_no", True) in names("/v1/crossprov/filings", "get")
    assert ("path", "setl_id", True) in names("/v1/settlements/{setl_id}", "get")
    employer = paths["/v1/issuance/employer-batches"]["post"]
    assert set(employer["requestBody"]["content"]) == {"text/csv", "application/csv"}
    assert "415" in employer["responses"]


# (model, body): bodies the model refuses, by rules the document used to leave out (issue 17:
# one-of-several fields, card_sn's structure, base64, NUL characters).
_REFUSED_BOTH_WAYS = [
    (
        "CardAuthAnswer",
        {
            "challenge_id": "a" * 22,
            "card_sn": "310000D15600000503000000000000A0",
            "signature": "0" * 128,
            "cryptogram": "0" * 16,
        },
    ),
    ("CardAuthAnswer", {"challenge_id": "a" * 22, "card_sn": "310000D15600000503000000000000A0"}),
    ("ChallengeRequest", {"card_sn": "310000AAAAAAAAAA03000000000000A0", "generation": 3}),
    (
        "CardAuthAnswer",
        {
            "challenge_id": "a" * 22,
            "card_sn": "310000D15600000503000000000000A0",
            "signature": "0" * 128,
            "certificate": "not base64!",
        },
    ),
    ("StatusIn", {"application_id": 1, "citizen_id": "11010519491231002X"}),
    ("StatusIn", {}),
    ("HistoryIn", {"card_sn": "0" * 32, "citizen_id": "11010519491231002X"}),
    ("CancelRequest", {"reason": "nul \u0000 here"}),
]


@pytest.mark.parametrize(("model_name", "body"), _REFUSED_BOTH_WAYS)
def test_the_document_refuses_what_the_model_refuses(model_name: str, body: dict) -> None:
    import json

    import jsonschema
    from pydantic import BaseModel, ValidationError

    spec = build_openapi(ROUTES)
    models = {
        model.__name__: model
        for route in ROUTES
        for model in (route.request_model,)
        if isinstance(model, type) and issubclass(model, BaseModel)
    }
    with pytest.raises(ValidationError):
        models[model_name].model_validate_json(json.dumps(body))
    document = {**spec, "$ref": f"#/components/schemas/{model_name}"}
    assert not jsonschema.Draft202012Validator(document).is_valid(body)


def test_the_document_accepts_each_shape_of_a_card_answer() -> None:
    import jsonschema

    document = {**build_openapi(ROUTES), "$ref": "#/components/schemas/CardAuthAnswer"}
    base = {"challenge_id": "a" * 22, "card_sn": "310000D15600000503000000000000A0"}
    validator = jsonschema.Draft202012Validator(document)
    assert validator.is_valid({**base, "signature": "0" * 128, "certificate": "AAAA"})
    assert validator.is_valid({**base, "signature": "0" * 128, "certificate_sm3": "0" * 64})
    assert validator.is_valid({**base, "cryptogram": "0" * 16, "signature": None})


def test_links_name_real_operations_and_their_parameters() -> None:
    spec = build_openapi(ROUTES)
    operations = {
        operation["operationId"]: operation
        for item in spec["paths"].values()
        for operation in item.values()
    }
    links = [
        link
        for operation in operations.values()
        for response in operation["responses"].values()
        for link in response.get("links", {}).values()
    ]
    assert len(links) >= 7
    for link in links:
        target = operations[link["operationId"]]
        declared = {param["name"] for param in target.get("parameters", [])}
        assert set(link.get("parameters", {})) <= declared, link


def _patterns(node: object) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        if isinstance(node.get("pattern"), str):
            found.add(node["pattern"])
        for value in node.values():
            found |= _patterns(value)
    elif isinstance(node, list):
        for value in node:
            found |= _patterns(value)
    return found


def test_every_pattern_the_models_enforce_is_in_the_document() -> None:
    """Each pattern pydantic enforces (read from the models' core schemas, which is what
    validates) appears in the document: pydantic leaves the pattern of an Optional field whose
    type has an after-validator out of the JSON schema (the ops enrolment's secret_hex was
    looser in the document than on the wire)."""
    schemas = build_openapi(ROUTES)["components"]["schemas"]

    def documented(name: str, seen: set[str]) -> set[str]:
        """The patterns of one component and of every component it refers to."""
        if name in seen:
            return set()
        seen.add(name)
        found = _patterns(schemas[name])
        for ref in _refs(schemas[name]):
            found |= documented(ref.rsplit("/", 1)[-1], seen)
        return found

    missing = {
        route.request_model.__name__: sorted(
            _patterns(route.request_model.__pydantic_core_schema__)
            - documented(route.request_model.__name__, set())
        )
        for route in ROUTES
        if route.request_model is not None
    }
    assert {name: gaps for name, gaps in missing.items() if gaps} == {}


def _refs(node: object) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            found.add(node["$ref"])
        for value in node.values():
            found |= _refs(value)
    elif isinstance(node, list):
        for value in node:
            found |= _refs(value)
    return found
