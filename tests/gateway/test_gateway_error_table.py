"""The one error table: every code has one status and messages a clerk can act on."""

from __future__ import annotations

import gc

import pytest

from gateway.error_docs import BEGIN, CONTRACTS, END, main, with_table
from gateway.errors import (
    ERRORS,
    PROBLEM_CONTENT_TYPE,
    ErrorCode,
    GatewayError,
    codes_named,
    codes_of,
    domain_error_code,
    problem_body,
)
from gateway.openapi import Problem


@pytest.mark.parametrize("code", list(ErrorCode))
def test_every_code_is_in_the_table_with_actionable_messages(code: ErrorCode):
    spec = ERRORS[code]
    assert 400 <= spec.status <= 599
    assert spec.message.strip()
    assert spec.message_zh.strip()
    assert spec.title.strip()
    if spec.status == 401:  # RFC 9110 §15.5.2: a 401 carries a challenge
        assert spec.headers["WWW-Authenticate"]
    if spec.status in (429, 503):
        assert spec.retry_after_s is not None
        assert spec.retry_after_s >= 1


def test_table_keys_are_exactly_the_codes():
    assert set(ERRORS) == set(ErrorCode)


def test_terminal_auth_codes_challenge_with_hmac_sm3():
    for code in ("SIGNATURE_MISSING", "SIGNATURE_INVALID", "TERMINAL_UNKNOWN", "TIMESTAMP_SKEW"):
        assert ERRORS[code].headers["WWW-Authenticate"].startswith("HMAC-SM3")


def test_problem_body_matches_the_documented_schema():
    body = problem_body(
        "VALIDATION_FAILED",
        request_id="r-1",
        detail="1 field error(s)",
        errors=[{"field": "message", "problem": "Field required", "type": "missing"}],
    )
    problem = Problem.model_validate(body)
    assert problem.code == "VALIDATION_FAILED"
    assert problem.status == 422
    assert problem.type.endswith("VALIDATION_FAILED")
    assert problem.instance == "urn:request:r-1"


def test_domain_errors_are_recognised_by_a_registered_code_only():
    class Registered(Exception):
        code = "TERMINAL_DISABLED"

    class Library(Exception):
        code = "e3q8"  # SQLAlchemy's error codes look like this

    class NotAString(Exception):
        code = 404

    assert domain_error_code(Registered()) == "TERMINAL_DISABLED"
    assert domain_error_code(Library()) is None
    assert domain_error_code(NotAString()) is None
    assert domain_error_code(ValueError("x")) is None


def test_gateway_error_carries_its_code():
    error = GatewayError(ErrorCode.RATE_LIMITED, "slow down", headers={"Retry-After": "3"})
    assert error.code == "RATE_LIMITED"
    assert error.headers == {"Retry-After": "3"}
    assert "RATE_LIMITED" in str(error)


@pytest.mark.parametrize("code", list(ErrorCode))
def test_each_row_is_named_by_its_code(code: ErrorCode):
    """One row holds the code and its spec: the member's name, its string and its spec's code
    are the same, so ``ErrorCode.X`` can never answer another code's status."""
    assert code.name == code.value == code.spec.code == str(code)
    assert ErrorCode(code.value) is code
    assert ERRORS[code] is code.spec


def test_codes_of_a_domain_error_are_its_own_and_its_subclasses_registered_codes():
    from issuance.errors import ApplicationRefused, CardNotUsable, IssuanceError

    assert codes_of(CardNotUsable) == (
        "CARD_UNKNOWN",
        "CARD_LOST",
        "CARD_SUPERSEDED",
        "CARD_REVOKED",
        "CARD_EXPIRED",
        "CARD_NOT_ACTIVATED",
        "LEGACY_PERIOD_OVER",
    )
    # Bases whose own code is not registered (CARD_NOT_USABLE, APPLICATION_REFUSED) add
    # nothing themselves; every code is one the table has.
    assert "APPLICATION_REFUSED" not in codes_of(ApplicationRefused)
    assert "NOT_ELIGIBLE" in codes_of(ApplicationRefused)
    assert set(codes_of(IssuanceError)) <= set(ERRORS)
    assert all(isinstance(code, ErrorCode) for code in codes_of(IssuanceError))


def test_codes_named_is_a_family_of_the_gateways_own_codes():
    assert codes_named("CARD_SESSION_") == (
        ErrorCode.CARD_SESSION_INVALID,
        ErrorCode.CARD_SESSION_EXPIRED,
        ErrorCode.CARD_SESSION_WRONG_TERMINAL,
    )
    with pytest.raises(AssertionError):
        codes_named("NO_SUCH_FAMILY_")


def test_a_new_domain_error_reaches_the_routes_and_openapi_without_a_route_edit():
    """The point of routes naming error classes: a subclass defined later (here, after the
    route table was built) is answered by every route whose use case raises its base."""
    from gateway.openapi import build_openapi
    from gateway.routes import ROUTES
    from settlement.errors import InvalidClaim

    settle = next(r for r in ROUTES if (r.method, r.path) == ("POST", "/v1/settlements"))
    cancel = next(r for r in ROUTES if r.path == "/v1/settlements/{setl_id}/cancel")
    assert "BATCH_NOT_FOUND" not in settle.error_codes()

    class LateClaimError(InvalidClaim):
        code = "BATCH_NOT_FOUND"  # any registered code will do for the test

    try:
        assert "BATCH_NOT_FOUND" in settle.error_codes()
        assert "BATCH_NOT_FOUND" not in cancel.error_codes()
        operation = build_openapi(ROUTES)["paths"]["/v1/settlements"]["post"]
        enum = operation["responses"]["404"]["content"][PROBLEM_CONTENT_TYPE]["schema"]["allOf"][1][
            "properties"
        ]["code"]["enum"]
        assert "BATCH_NOT_FOUND" in enum
    finally:
        del LateClaimError
        gc.collect()
    assert "BATCH_NOT_FOUND" not in settle.error_codes()


def test_the_contracts_code_table_is_generated_from_the_table():
    document = CONTRACTS.read_text(encoding="utf-8")
    assert with_table(document) == document, (
        "docs/CONTRACTS.md's error code table differs from gateway.errors.ErrorCode: run "
        "`python -m gateway.error_docs` to regenerate it"
    )
    table = document[document.index(BEGIN) : document.index(END)]
    for code in ErrorCode:
        assert f"| `{code}` | {code.spec.status} |" in table


def test_the_generator_rewrites_only_between_its_markers(tmp_path):
    doc = tmp_path / "c.md"
    doc.write_text(f"before\n{BEGIN}\n| stale |\n{END}\nafter\n", encoding="utf-8")
    assert main([str(doc)]) == 0
    text = doc.read_text(encoding="utf-8")
    assert text.startswith(f"before\n{BEGIN}\n| code |")
    assert text.endswith(f"\n{END}\nafter\n")
    assert "| stale |" not in text
    assert "| `RATE_LIMITED` | 429 | 1 | Too many requests |" in text
