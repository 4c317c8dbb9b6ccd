"""Schemathesis hooks for tests/integration/test_schemathesis.py (loaded by the `st` CLI through
SCHEMATHESIS_HOOKS; configured by the SSC_ST_* variables the test sets).

- Every request is signed as a demo terminal, over the exact bytes sent (a requests ``auth``
  callable sees the prepared request): a hospital's terminal for the settlement and
  cross-province routes, the card centre's for issuance, an employer's for the CSV upload.
- A settlement route that sends ``X-Card-Session`` gets the card session the test obtained for
  a demo card (a generated, well-formed value would only ever be refused as unknown); a case
  that leaves the header out or empty keeps it so.
- The ops routes get the ops token as their bearer credential when the case sends one.
- One check more than schemathesis's own: a request the document calls valid is never refused
  as malformed (400, 415 or 422 with a body/parameter validation code). The built-in
  positive_data_acceptance is configured to accept the domain's 422s (an unknown catalogue
  code is valid by the schema and refused by the rules), so this check is what keeps the
  document exactly as strict as the server.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from typing import Any
from urllib.parse import urlsplit

import requests
import schemathesis
from schemathesis import Case, HookContext

from sscard import demo as sd
from sscard.terminal_auth import (
    HEADER_CARD_SESSION,
    HEADER_IDEMPOTENCY_KEY,
    MalformedAuthField,
    demo_terminal,
    signed_headers,
)

SEED = os.environ.get("SSC_ST_SEED", "")
CARD_SESSION = os.environ.get("SSC_ST_CARD_SESSION", "")
OPS_TOKEN = os.environ.get("SSC_ST_OPS_TOKEN", "")
METRICS_TOKEN = os.environ.get("SSC_ST_METRICS_TOKEN", "")
HOSPITAL = demo_terminal(SEED, 0) if SEED else ("", b"")
CENTRE = sd.demo_issuing_terminal(SEED, "card_centre", 0) if SEED else ("", b"")
EMPLOYER = sd.demo_issuing_terminal(SEED, "employer", 0) if SEED else ("", b"")
MALFORMED_CODES = frozenset(
    {"VALIDATION_FAILED", "MALFORMED_JSON", "UNSUPPORTED_MEDIA_TYPE", "BAD_REQUEST"}
)


def _terminal(path: str) -> tuple[str, bytes]:
    if path.startswith("/v1/issuance/employer-batches"):
        return EMPLOYER
    if path.startswith("/v1/issuance/"):
        return CENTRE
    return HOSPITAL


PLACEHOLDER = "sign-me"
SIGNED_HEADERS = (
    "X-Terminal-Id",
    "X-Timestamp",
    "X-Nonce",
    "X-Signature-Version",
    "X-Signature",
)


class _Sign(requests.auth.AuthBase):
    """Replaces the placeholders TerminalAuth set with the real terminal headers for the
    prepared request's method, path and body. A header the case removed or set to something
    else (schemathesis's auth probes) is left as it is: for the server to refuse."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        if not any(request.headers.get(name) == PLACEHOLDER for name in SIGNED_HEADERS):
            return request
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode("utf-8")
        url = urlsplit(request.url or "")
        path = url.path + (f"?{url.query}" if url.query else "")
        terminal_id, secret = _terminal(url.path)
        # Signature version 2 signs the card session and the key as they are sent.
        signing = {
            "card_session": request.headers.get(HEADER_CARD_SESSION),
            "idempotency_key": request.headers.get(HEADER_IDEMPOTENCY_KEY),
        }
        try:
            signed = signed_headers(
                secret,
                terminal_id,
                request.method or "GET",
                path,
                body,
                timestamp=int(time.time()),
                nonce=secrets.token_urlsafe(24),
                **signing,
            )
        except MalformedAuthField:
            # A generated key or session no signer can sign (empty, spaces at an end): sent
            # unsigned-for-it as version 2 all the same, for the server to refuse.
            signed = signed_headers(
                secret,
                terminal_id,
                request.method or "GET",
                path,
                body,
                timestamp=int(time.time()),
                nonce=secrets.token_urlsafe(24),
            )
        for name, value in signed.items():
            if request.headers.get(name) == PLACEHOLDER:
                request.headers[name] = value
        return request


@schemathesis.auth().apply_to(path_regex=r"^/v1/(?!ops/)")
class TerminalAuth:
    """The terminal scheme, as schemathesis's own auth: it then knows the credentials are
    explicit and probes without them (ignored_auth). Placeholders here; _Sign signs."""

    def get(self, case: Case, context: Any) -> str:
        return PLACEHOLDER

    def set(self, case: Case, data: str, context: Any) -> None:
        case.headers = dict(case.headers or {})
        for name in SIGNED_HEADERS:
            case.headers[name] = data


@schemathesis.auth().apply_to(path_regex=r"^/v1/ops/")
class OpsToken:
    def get(self, case: Case, context: Any) -> str:
        return OPS_TOKEN

    def set(self, case: Case, data: str, context: Any) -> None:
        case.headers = dict(case.headers or {})
        case.headers["Authorization"] = f"Bearer {data}"


@schemathesis.auth().apply_to(path="/metrics")
class MetricsToken:
    """/metrics behind its bearer token (setting metrics_token, set for the run)."""

    def get(self, case: Case, context: Any) -> str:
        return METRICS_TOKEN

    def set(self, case: Case, data: str, context: Any) -> None:
        case.headers = dict(case.headers or {})
        case.headers["Authorization"] = f"Bearer {data}"


@schemathesis.hook
def before_call(context: HookContext, case: Case, kwargs: dict[str, Any]) -> None:
    headers = case.headers if isinstance(case.headers, dict) else None
    if headers is not None and headers.get("X-Card-Session") and CARD_SESSION:
        headers["X-Card-Session"] = CARD_SESSION
    kwargs["auth"] = _Sign()


# What a JSON Schema cannot express, so the document can only describe it, and nothing else:
# - a citizen id's check digit (value_error on a citizen_id field);
# - an integral float where an integer is due (int_type on a value like 1053.0: JSON Schema
#   counts 1.0 as an integer, the gateway's strict JSON does not: what was signed is what is
#   processed);
# - a rule the use case applies across fields or against data (a filing's dates, a province
#   that is not another one): VALIDATION_FAILED with no field errors, or of type "value".
def _semantic(case: Case, error: dict[str, Any]) -> bool:
    kind, field = error.get("type"), str(error.get("field", ""))
    if kind == "value":
        return True
    if kind == "value_error":
        return field.rsplit(".", maxsplit=1)[-1] == "citizen_id"
    if kind == "int_type":
        value = _at(case.body, field)
        return isinstance(value, float) and value.is_integer()
    return False


def _at(body: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if isinstance(body, dict):
            body = body.get(part)
        elif isinstance(body, list) and part.isdigit() and int(part) < len(body):
            body = body[int(part)]
        else:
            return None
    return body


def _record_tolerated(case: Case, errors: list[dict[str, Any]]) -> None:
    """Written down for the test to print: what the document can only describe in words."""
    path = os.environ.get("SSC_ST_TOLERATED")
    if not path:
        return
    with open(path, "a", encoding="utf-8") as out:
        for error in errors:
            field = re.sub(r"\.[0-9]+(?=\.|$)", ".N", str(error.get("field")))
            record = {"operation": case.operation.label, "field": field, "type": error.get("type")}
            out.write(json.dumps(record) + "\n")


@schemathesis.check
def positive_data_is_not_refused_as_malformed(ctx: Any, response: Any, case: Case) -> None:
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return
    if response.status_code not in (400, 415, 422):
        return
    try:
        problem = json.loads(response.content)
    except ValueError:
        return
    if not isinstance(problem, dict) or problem.get("code") not in MALFORMED_CODES:
        return
    errors = problem.get("errors") or []
    if all(_semantic(case, error) for error in errors):
        _record_tolerated(case, errors or [{"field": "(rule)", "type": "none"}])
        return
    sent = {str(e.get("field")): _at(case.body, str(e.get("field"))) for e in errors}
    raise AssertionError(
        f"the document calls this request valid; the server refused it as "
        f"{problem.get('code')}: {problem.get('detail')}; {errors}; values sent: {sent!r}"
    )
