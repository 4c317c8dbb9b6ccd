"""The one error table: every code has one status and messages a clerk can act on."""

from __future__ import annotations

import pytest

from gateway.errors import ERRORS, ErrorCode, GatewayError, domain_error_code, problem_body
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
