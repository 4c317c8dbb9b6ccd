"""The SDK's mirror of the gateway's error table (terminal_sdk.problems.PROBLEM_CLASSES) is
complete and agrees with the gateway: every code the gateway can answer maps to a typed class,
in the group that says who acts on it, ``retryable`` exactly where the gateway sends
Retry-After. The SDK may not import the gateway (DESIGN §3); this test may, so it FAILS as soon
as the gateway gains a code the SDK does not know."""

from __future__ import annotations

import importlib
import inspect
import pickle
import pkgutil
import re
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

import terminal_sdk
from gateway.errors import ERRORS, domain_error_code, problem_body
from gateway.routes import ROUTES
from terminal_sdk import problems
from terminal_sdk.problems import (
    PROBLEM_CLASSES,
    ApplicationRefused,
    CardNotAccepted,
    CardNotGenuine,
    GatewayBusy,
    GatewayInternalError,
    GatewayProblem,
    IdempotencyConflict,
    IdempotencyKeyInUse,
    IllegalTransition,
    IntegrationError,
    IssuanceRecordNotFound,
    NotPermitted,
    RequestRefused,
    RouteUnavailable,
    ServiceNotConfigured,
    TerminalRejected,
    problem_from_response,
)

GUIDE = Path(__file__).parents[2] / "docs" / "integration-guide.md"
# The domain packages whose exceptions the gateway answers by their ``code`` (gateway.errors
# domain_error_code); the gateway's own codes are ErrorCode members, all in ERRORS.
DOMAIN_PACKAGES = ("sscard", "settlement", "issuance")


class _DomainError(Exception):
    """Shaped like a domain package's error, which the gateway recognises by its ``code``."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def _modules(package_name: str) -> Iterator[ModuleType]:
    package = importlib.import_module(package_name)
    yield package
    for info in pkgutil.walk_packages(package.__path__, prefix=f"{package_name}."):
        if not info.name.endswith("__main__"):
            yield importlib.import_module(info.name)


def _domain_codes() -> set[str]:
    codes: set[str] = set()
    for name in DOMAIN_PACKAGES:
        for module in _modules(name):
            for _, cls in inspect.getmembers(module, inspect.isclass):
                code = getattr(cls, "code", None)
                if issubclass(cls, BaseException) and isinstance(code, str):
                    codes.add(code)
    return codes


def _answerable_codes() -> set[str]:
    """Every code the gateway can put in a problem+json body."""
    route_codes = {code for route in ROUTES for code in route.error_codes()}
    domain = {code for code in _domain_codes() if domain_error_code(_DomainError(code)) is not None}
    return set(ERRORS) | route_codes | domain


def test_every_code_the_gateway_can_answer_has_a_typed_class() -> None:
    missing = sorted(str(code) for code in _answerable_codes() - set(PROBLEM_CLASSES))
    assert not missing, (
        f"the gateway answers codes terminal_sdk.problems.PROBLEM_CLASSES does not map: {missing}"
        " (add each to the class of its group: docs/architecture.md §10)"
    )
    for code in _answerable_codes():
        assert PROBLEM_CLASSES[code] is not GatewayProblem, code


def test_every_code_the_sdk_maps_is_one_the_gateway_or_settlement_has() -> None:
    """No typo, no code the gateway dropped: the settlement codes it does not register (they
    would answer INTERNAL) are the only extras, kept for older gateways."""
    settlement = {code for code in _domain_codes() if code not in ERRORS}
    unknown = sorted(str(code) for code in set(PROBLEM_CLASSES) - set(ERRORS) - settlement)
    assert not unknown, f"codes neither the gateway nor a domain package has: {unknown}"


@pytest.mark.parametrize("code", sorted(ERRORS))
def test_each_code_is_in_the_group_that_acts_on_it(code: str) -> None:
    cls, spec = PROBLEM_CLASSES[code], ERRORS[code]
    # retryable exactly where the gateway says a retry can help (it sends Retry-After).
    assert cls.retryable == (spec.retry_after_s is not None), code
    groups = [
        cls.retryable,
        issubclass(cls, RequestRefused),
        issubclass(cls, IntegrationError),
        cls is GatewayInternalError,
    ]
    assert groups.count(True) == 1, f"{code}: {cls.__name__} is in {groups.count(True)} groups"
    expected_status = {
        GatewayBusy: {429, 503},
        GatewayInternalError: {500},
        TerminalRejected: {401},
        RouteUnavailable: {404, 405},
        CardNotGenuine: {401},
        CardNotAccepted: {403},
        NotPermitted: {403},
        IssuanceRecordNotFound: {404},
        IllegalTransition: {409},
        IdempotencyKeyInUse: {409},
        RequestRefused: set(range(400, 500)),
        IntegrationError: set(range(400, 500)),
    }
    for group, statuses in expected_status.items():
        if issubclass(cls, group):
            assert spec.status in statuses, f"{code} ({spec.status}) is a {group.__name__}"


@pytest.mark.parametrize("code", sorted(ERRORS))
def test_the_gateways_own_answer_becomes_its_class(code: str) -> None:
    """The body gateway.errors.problem_body builds, with the Retry-After the middleware sends,
    read back by the SDK: class, code, status, messages and Retry-After survive (and pickling)."""
    spec = ERRORS[code]
    body = problem_body(code, request_id="req-1", detail="what exactly")
    error = problem_from_response(spec.status, body, retry_after_s=spec.retry_after_s)
    assert type(error) is PROBLEM_CLASSES[code]
    assert (error.code, error.status, error.request_id) == (code, spec.status, "req-1")
    assert (str(error), error.message_zh, error.detail) == (
        spec.message,
        spec.message_zh,
        "what exactly",
    )
    assert error.retry_after_s == spec.retry_after_s
    assert error.extensions == {}
    clone = pickle.loads(pickle.dumps(error))
    assert (type(clone), clone.code, clone.retry_after_s) == (type(error), code, spec.retry_after_s)


def test_illegal_transition_carries_the_state_and_the_possible_steps() -> None:
    body = problem_body("ILLEGAL_TRANSITION", request_id="r", detail="cannot activate")
    body.update(current_state="lost", event="activate", allowed_transitions=["replace"])
    error = problem_from_response(409, body)
    assert isinstance(error, IllegalTransition)
    assert (error.current_state, error.event, error.allowed_transitions) == (
        "lost",
        "activate",
        ("replace",),
    )
    assert pickle.loads(pickle.dumps(error)).allowed_transitions == ("replace",)
    bare = problem_from_response(409, problem_body("ILLEGAL_TRANSITION", request_id="r"))
    assert isinstance(bare, IllegalTransition)
    assert (bare.current_state, bare.allowed_transitions) == (None, ())


def test_the_groups_integrators_catch() -> None:
    kind = problem_from_response(403, {"code": "INSTITUTION_KIND_NOT_ALLOWED"})
    assert isinstance(kind, NotPermitted)
    assert isinstance(kind, RequestRefused)
    assert not kind.retryable
    refused = problem_from_response(422, {"code": "NOT_ELIGIBLE"})
    assert isinstance(refused, ApplicationRefused)
    assert isinstance(refused, RequestRefused)
    ca = problem_from_response(503, {"code": "ISSUING_CA_UNAVAILABLE"}, retry_after_s=60)
    assert isinstance(ca, ServiceNotConfigured)
    assert isinstance(ca, GatewayBusy)
    assert ca.retryable
    # Both idempotency clashes stay IdempotencyConflicts; only the reused key is a bug.
    in_use = problem_from_response(409, {"code": "IDEMPOTENCY_KEY_IN_USE"}, retry_after_s=1)
    reused = problem_from_response(422, {"code": "IDEMPOTENCY_KEY_REUSED"})
    assert isinstance(in_use, IdempotencyConflict)
    assert isinstance(reused, IdempotencyConflict)
    assert (in_use.retryable, reused.retryable) == (True, False)
    assert isinstance(reused, IntegrationError)
    assert not isinstance(in_use, IntegrationError)


@pytest.mark.parametrize(
    ("status", "cls", "retryable"),
    [
        (503, GatewayBusy, True),
        (429, GatewayBusy, True),
        (500, GatewayInternalError, False),
        (409, GatewayProblem, False),
    ],
)
def test_a_code_newer_than_the_sdk_is_classed_by_its_status(
    status: int, cls: type[GatewayProblem], retryable: bool
) -> None:
    error = problem_from_response(status, {"code": "NEW_IN_A_LATER_GATEWAY", "message": "Hm."})
    assert (type(error), error.code, error.retryable) == (cls, "NEW_IN_A_LATER_GATEWAY", retryable)
    assert str(error) == "Hm."


def test_every_problem_class_is_exported_and_in_the_integration_guide() -> None:
    guide = GUIDE.read_text(encoding="utf-8")
    public = {name for name in problems.__all__ if name[0].isupper() and name != "PROBLEM_CLASSES"}
    for name in public:
        assert name in terminal_sdk.__all__, name
    for cls in set(PROBLEM_CLASSES.values()):
        assert re.search(rf"`{cls.__name__}`", guide), f"{cls.__name__} not in {GUIDE.name}"
