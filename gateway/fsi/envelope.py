"""The national envelope (DOMAIN §4): parsing a request, rendering a response.

Liberal in what it accepts, conservative in what it sends (DOMAIN §4, the known client
variants): unknown envelope fields are ignored (clients add ``enctype``, ``encType``, ...),
``infver`` may be "V1.0" or "1.0.0", ``opter_type`` a string or a number, amounts strings or
numbers; answers carry ``infcode`` as the number 0 / -1 / -2 and amounts as JSON numbers with
at most two decimals (some clients cast them straight to a decimal type).

Times are Beijing time: ``inf_time`` ``yyyy-MM-dd HH:mm:ss``; ``refmsg_time`` and
``respond_time`` ``yyyyMMddHHmmssSSS``, as the platform writes them.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Final

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from dbkit import BEIJING
from gateway.errors import ErrorCode, GatewayError

__all__ = [
    "INFCODE_MSGID_CONFLICT",
    "INFCODE_OK",
    "INFCODE_REFUSED",
    "MAX_FIELD_ERRORS",
    "Envelope",
    "field_errors",
    "parse_envelope",
    "parse_time",
    "render",
    "to_fen",
    "yuan",
]

INFCODE_OK: Final = 0
INFCODE_REFUSED: Final = -1
# A msgid conflict: reused for another request, still running, or reversed (2601). Distinct
# from -1 so an HIS can tell "this message number is spoken for" from "this was refused".
INFCODE_MSGID_CONFLICT: Final = -2
MAX_FIELD_ERRORS: Final = 10
INF_TIME_FORMAT: Final = "%Y-%m-%d %H:%M:%S"
# Largest amount accepted, in fen: numeric(16,2) allows more, nobody's bill is that large, and
# the bound keeps every sum far below 2^63.
MAX_AMOUNT_FEN: Final = 10**13


def _opter_type(value: object) -> object:
    # "1", 1: both seen in the field.
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class Envelope(BaseModel):
    """The request envelope. ``input`` is an object, or (sm2-sm4) a Base64 string."""

    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)

    infno: str = Field(pattern=r"^[0-9]{4}$")
    msgid: str = Field(pattern=r"^[0-9A-Za-z]{1,30}$")
    fixmedins_code: str = Field(pattern=r"^[0-9A-Za-z]{1,32}$")
    opter: str = Field(min_length=1, max_length=30, pattern=r"^[\x21-\x7e]+$")
    dev_no: str = Field(pattern=r"^[A-Za-z0-9._:-]{1,64}$")
    input: dict[str, Any] | str
    mdtrtarea_admvs: str = Field("", pattern=r"^([0-9]{6})?$")
    insuplc_admdvs: str = Field("", pattern=r"^([0-9]{6})?$")
    recer_sys_code: str = Field("", max_length=20)
    dev_safe_info: str = Field("", max_length=2000)
    cainfo: str = Field("", max_length=2000)
    signtype: str = Field("", max_length=10)
    infver: str = Field("V1.0", max_length=10)
    opter_type: Annotated[str, BeforeValidator(_opter_type)] = Field("1", pattern=r"^[123]$")
    opter_name: str = Field("", max_length=50)
    inf_time: str = Field("", max_length=19)
    fixmedins_name: str = Field("", max_length=200)
    sign_no: str = Field("", max_length=30)


def field_errors(exc: ValidationError) -> str:
    """Which fields are wrong, and why: location and reason only (a value could be personal
    data)."""
    parts = []
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        where = ".".join(str(part) for part in error["loc"]) or "(envelope)"
        parts.append(f"{where}: {error['msg']}")
    more = exc.error_count() - MAX_FIELD_ERRORS
    return "; ".join(parts[:MAX_FIELD_ERRORS]) + (f"; and {more} more" if more > 0 else "")


def _invalid(detail: str) -> GatewayError:
    return GatewayError(ErrorCode.FSI_ENVELOPE_INVALID, detail)


def parse_envelope(raw: Mapping[str, Any]) -> Envelope:
    try:
        return Envelope.model_validate(raw)
    except ValidationError as exc:
        raise _invalid(field_errors(exc)) from None


def parse_time(value: str, field: str) -> dt.datetime:
    """``yyyy-MM-dd HH:mm:ss`` (Beijing time) as an aware datetime."""
    try:
        return dt.datetime.strptime(value, INF_TIME_FORMAT).replace(tzinfo=BEIJING)
    except ValueError:
        raise _invalid(f"{field} must be yyyy-MM-dd HH:mm:ss") from None


def to_fen(value: object, field: str) -> int:
    """An amount as the clients send it: a string ("12.30") or a number (12.3, read from
    the JSON as a Decimal, never a float), at most two decimals, not negative, bounded."""
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise _invalid(f"{field} must be an amount (a number or a numeric string)")
    try:
        amount = Decimal(value.strip()) if isinstance(value, str) else Decimal(value)
    except InvalidOperation:
        raise _invalid(f"{field} must be an amount with at most two decimals") from None
    if not amount.is_finite() or amount != amount.quantize(Decimal("0.01")):
        raise _invalid(f"{field} must be an amount with at most two decimals")
    fen = int(amount * 100)
    if fen < 0 or fen > MAX_AMOUNT_FEN:
        raise _invalid(f"{field} is out of range")
    return fen


def yuan(fen: int) -> float:
    """An amount for an answer, as a JSON number of yuan. Only the TEXT matters: for any
    amount below 2^53 fen, ``repr(fen / 100)`` (what json writes) is the shortest decimal
    that reads back as the same double, which is the exact two-decimal amount ("12.3" for
    1,230 fen). No arithmetic is ever done on it."""
    return fen / 100


def _platform_time(at: dt.datetime) -> str:
    local = at.astimezone(BEIJING)
    return local.strftime("%Y%m%d%H%M%S") + f"{local.microsecond // 1000:03d}"


def _refmsgid(at: dt.datetime) -> str:
    # The gateway's own message id, shaped as the platform's: area 6 + time 14 + 10 digits.
    return (
        "310000"
        + at.astimezone(BEIJING).strftime("%Y%m%d%H%M%S")
        + (f"{secrets.randbelow(10**10):010d}")
    )


def _json_default(value: object) -> object:
    if isinstance(value, dt.date):
        return value.isoformat()
    raise TypeError(f"not JSON: {type(value).__name__}")


def render(
    *,
    received_at: dt.datetime,
    now: dt.datetime,
    infcode: int,
    output: Mapping[str, Any] | None,
    err_msg: str | None = None,
    warn_msg: str | None = None,
) -> str:
    """A response envelope as its JSON text."""
    body = {
        "infcode": infcode,
        "inf_refmsgid": _refmsgid(now),
        "refmsg_time": _platform_time(received_at),
        "respond_time": _platform_time(now),
        "err_msg": err_msg,
        "warn_msg": warn_msg,
        "output": output if output is not None else {},
    }
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), default=_json_default)
