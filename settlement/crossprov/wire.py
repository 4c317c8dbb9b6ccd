"""The national hub's wire format (DOMAIN §4, ``docs/cross-province.md``): pure, no I/O.

Shared by both ends so they cannot drift: the gateway's hub client builds requests and parses
responses with it, the hub simulator (``settlement.hub``) parses requests and builds responses
with it. Every parser is strict and raises :class:`WireError` (a typed error with a stable
``.code`` and the offending ``.field``) on anything it does not expect; nothing here guesses.

Money on the wire is NHSA numeric(16,2): a decimal string in yuan (``"123.45"``). It becomes
int fen only through :func:`yuan_to_fen`, which refuses floats, exponents, more than two
decimals and anything that is not a plain decimal string.

>>> yuan_to_fen("123.45"), fen_to_yuan(12345)
(12345, '123.45')
>>> make_msgid("H31000000001", dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=BEIJING), 7)
'H31000000001202601020304050007'
"""

from __future__ import annotations

import datetime as dt
import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from dbkit import BEIJING
from settlement.money import format_yuan

__all__ = [
    "BEIJING",
    "CANCEL_FOR_SETTLE",
    "CANCEL_INFNOS",
    "ENVELOPE_REQUIRED_FIELDS",
    "FIGURE_FIELDS",
    "INFNO_CANCEL_INPATIENT",
    "INFNO_CANCEL_OUTPATIENT",
    "INFNO_CANCEL_PHARMACY",
    "INFNO_DETAIL",
    "INFNO_PERSON_INFO",
    "INFNO_QUERY",
    "INFNO_REVERSAL",
    "INFNO_SETTLE_INPATIENT",
    "INFNO_SETTLE_OUTPATIENT",
    "INFNO_SETTLE_PHARMACY",
    "INFNO_TOTALS",
    "KNOWN_INFNOS",
    "MAX_YUAN_FEN",
    "REVERSIBLE_INFNOS",
    "SETLINFO_AMOUNT_FIELDS",
    "SETLINFO_FIELDS",
    "SETTLE_FOR_CANCEL",
    "SETTLE_INFNOS",
    "SETTLE_INFNO_FOR_VISIT_TYPE",
    "TREATMENT_ADMDVS",
    "FilingType",
    "HubErrCode",
    "HubRequest",
    "HubResponse",
    "MessageStatus",
    "Msgid",
    "WireError",
    "fen_to_yuan",
    "format_inf_time",
    "is_msgid",
    "make_msgid",
    "parse_date",
    "parse_inf_time",
    "parse_msgid",
    "parse_request",
    "parse_response",
    "setlinfo_amounts_fen",
    "yuan_to_fen",
]

TREATMENT_ADMDVS: Final = "310000"  # Shanghai: every call from this gateway is treated here

# --- transaction codes (infno) ----------------------------------------------------------------

INFNO_PERSON_INFO: Final = "1101"
INFNO_SETTLE_OUTPATIENT: Final = "2207"  # outpatient and emergency
INFNO_SETTLE_PHARMACY: Final = "2102"
INFNO_SETTLE_INPATIENT: Final = "2304"
INFNO_CANCEL_OUTPATIENT: Final = "2208"
INFNO_CANCEL_PHARMACY: Final = "2103"
INFNO_CANCEL_INPATIENT: Final = "2305"
INFNO_REVERSAL: Final = "2601"
INFNO_QUERY: Final = "5201"
INFNO_TOTALS: Final = "3201"
INFNO_DETAIL: Final = "3202"

SETTLE_INFNOS: Final = frozenset(
    {INFNO_SETTLE_OUTPATIENT, INFNO_SETTLE_PHARMACY, INFNO_SETTLE_INPATIENT}
)
CANCEL_INFNOS: Final = frozenset(
    {INFNO_CANCEL_OUTPATIENT, INFNO_CANCEL_PHARMACY, INFNO_CANCEL_INPATIENT}
)
CANCEL_FOR_SETTLE: Final[Mapping[str, str]] = {
    INFNO_SETTLE_OUTPATIENT: INFNO_CANCEL_OUTPATIENT,
    INFNO_SETTLE_PHARMACY: INFNO_CANCEL_PHARMACY,
    INFNO_SETTLE_INPATIENT: INFNO_CANCEL_INPATIENT,
}
SETTLE_FOR_CANCEL: Final[Mapping[str, str]] = {v: k for k, v in CANCEL_FOR_SETTLE.items()}
# DOMAIN §4: only these may be reversed with 2601 (2401 admission is listed by the standard;
# the hub simulator does not implement admissions, so it never holds a 2401 to reverse).
REVERSIBLE_INFNOS: Final = frozenset(SETTLE_INFNOS | CANCEL_INFNOS | {"2401"})
KNOWN_INFNOS: Final = frozenset(
    SETTLE_INFNOS
    | CANCEL_INFNOS
    | {INFNO_PERSON_INFO, INFNO_REVERSAL, INFNO_QUERY, INFNO_TOTALS, INFNO_DETAIL}
)
SETTLE_INFNO_FOR_VISIT_TYPE: Final[Mapping[str, str]] = {
    "outpatient": INFNO_SETTLE_OUTPATIENT,
    "emergency": INFNO_SETTLE_OUTPATIENT,
    "pharmacy": INFNO_SETTLE_PHARMACY,
    "inpatient": INFNO_SETTLE_INPATIENT,
}


class FilingType(enum.StrEnum):
    """``filing_type`` in a settle input (docs/cross-province.md, Filings)."""

    RESETTLED_RETIREE = "resettled_retiree"  # 异地安置退休
    LONG_TERM_RESIDENT = "long_term_resident"  # 异地长期居住
    REFERRAL = "referral"  # 转诊 (temporary)
    EMERGENCY = "emergency"  # 急诊抢救 (temporary)

    @property
    def temporary(self) -> bool:
        return self in (FilingType.REFERRAL, FilingType.EMERGENCY)


class MessageStatus(enum.StrEnum):
    """What 5201 says about a msgid."""

    SETTLED = "settled"  # committed and in force
    CANCELLED = "cancelled"  # committed, then cancelled by a 2208/2103/2305
    REVERSED = "reversed"  # reversed by 2601 (whether or not it had committed)
    NONE = "none"  # never committed (unknown to the hub, or refused)


class HubErrCode(enum.StrEnum):
    """Stable ``err_code`` values of a refusal (``infcode`` -1). Never rename one."""

    INVALID_INPUT = "INVALID_INPUT"  # the input is not what this infno takes
    PERSON_NOT_FOUND = "PERSON_NOT_FOUND"
    UNKNOWN_PROVINCE = "UNKNOWN_PROVINCE"  # insuplc_admdvs is not a province the hub serves
    UNKNOWN_ITEM = "UNKNOWN_ITEM"  # a list_code not in the treatment place's catalogue
    POLICY_NOT_APPLICABLE = "POLICY_NOT_APPLICABLE"  # no policy covers the visit date
    INSUFFICIENT_BALANCE = "INSUFFICIENT_BALANCE"  # an account cannot pay what is asked back
    SETTLEMENT_NOT_FOUND = "SETTLEMENT_NOT_FOUND"
    ALREADY_CANCELLED = "ALREADY_CANCELLED"
    ALREADY_REVERSED = "ALREADY_REVERSED"  # the settlement was reversed; nothing to cancel
    MSG_REVERSED = "MSG_REVERSED"  # this msgid was reversed (2601): it can never commit
    MSGID_REUSED = "MSGID_REUSED"  # same msgid, different call
    NOT_REVERSIBLE = "NOT_REVERSIBLE"  # 2601 for an infno outside REVERSIBLE_INFNOS
    HUB_FULL = "HUB_FULL"  # the simulator's bounded memory is full: nothing was done


# --- money -------------------------------------------------------------------------------------

# numeric(16,2): at most 14 digits before the point.
MAX_YUAN_FEN: Final = 10**16 - 1
_YUAN: Final = re.compile(r"(-?)(0|[1-9][0-9]{0,13})(?:\.([0-9]{1,2}))?")


class WireError(ValueError):
    """Something on the wire is not what the format allows. ``.code`` is stable."""

    code = "WIRE_INVALID"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


def yuan_to_fen(value: object, *, field: str = "amount", signed: bool = False) -> int:
    """``"123.45"`` → 12345, exactly. Refuses anything but a ``str`` of digits with at most two
    decimals (no float, int, exponent, spaces, ``+`` or leading zeros); a ``-`` only when
    ``signed`` (a cancellation's amounts). Raises WireError naming ``field``."""
    if not isinstance(value, str):
        raise WireError(
            f"{field} must be a yuan string like '12.30', got {type(value).__name__}", field=field
        )
    match = _YUAN.fullmatch(value)
    if match is None:
        raise WireError(f"{field} is not a yuan amount with at most 2 decimals", field=field)
    sign, whole, decimals = match.groups()
    fen = int(whole) * 100 + int((decimals or "").ljust(2, "0"))
    if sign:
        if not signed:
            raise WireError(f"{field} must not be negative", field=field)
        if fen == 0:
            raise WireError(f"{field}: '-0' is not an amount", field=field)
        return -fen
    return fen


def fen_to_yuan(fen: int, *, field: str = "amount") -> str:
    """12345 → ``"123.45"``; refuses a non-int (bool included) or an amount beyond
    numeric(16,2)."""
    if type(fen) is not int:
        raise WireError(f"{field} must be int fen, got {type(fen).__name__}", field=field)
    if abs(fen) > MAX_YUAN_FEN:
        raise WireError(f"{field} does not fit numeric(16,2)", field=field)
    return format_yuan(fen)


# --- msgid -------------------------------------------------------------------------------------

_INSTITUTION: Final = re.compile(r"[A-Z0-9]{12}")
_MSGID: Final = re.compile(r"([A-Z0-9]{12})([0-9]{14})([0-9]{4})")


@dataclass(frozen=True, slots=True)
class Msgid:
    institution: str  # fixmedins_code, 12 characters
    at: dt.datetime  # Beijing time, whole seconds
    sequence: int  # 0..9999

    def __str__(self) -> str:
        return make_msgid(self.institution, self.at, self.sequence)


def make_msgid(fixmedins_code: str, at: dt.datetime, sequence: int) -> str:
    """Institution code (12) + yyyyMMddHHmmss in Beijing time + 4-digit sequence. ``at`` must
    be timezone-aware; ``sequence`` 0..9999 (callers wrap their counter)."""
    if not isinstance(fixmedins_code, str) or not _INSTITUTION.fullmatch(fixmedins_code):
        raise WireError("fixmedins_code must be 12 characters A-Z 0-9", field="fixmedins_code")
    if at.tzinfo is None:
        raise WireError("msgid time must be timezone-aware", field="msgid")
    if type(sequence) is not int or not 0 <= sequence <= 9999:
        raise WireError("msgid sequence must be 0..9999", field="msgid")
    return f"{fixmedins_code}{at.astimezone(BEIJING):%Y%m%d%H%M%S}{sequence:04d}"


def parse_msgid(value: object) -> Msgid:
    """Split a msgid; WireError unless it is exactly institution + a real time + sequence."""
    if not isinstance(value, str):
        raise WireError("msgid must be a string", field="msgid")
    match = _MSGID.fullmatch(value)
    if match is None:
        raise WireError(
            "msgid must be institution code (12) + yyyyMMddHHmmss + 4 digits", field="msgid"
        )
    institution, stamp, sequence = match.groups()
    try:
        at = dt.datetime.strptime(stamp, "%Y%m%d%H%M%S").replace(tzinfo=BEIJING)
    except ValueError:
        raise WireError("msgid carries no real date and time", field="msgid") from None
    return Msgid(institution, at, int(sequence))


def is_msgid(value: object) -> bool:
    try:
        parse_msgid(value)
    except WireError:
        return False
    return True


# --- times -------------------------------------------------------------------------------------

_INF_TIME_FORMAT: Final = "%Y-%m-%d %H:%M:%S"


def format_inf_time(at: dt.datetime) -> str:
    """``yyyy-MM-dd HH:mm:ss`` in Beijing time (``inf_time``, ``respond_time``, ``setl_time``)."""
    if at.tzinfo is None:
        raise WireError("time must be timezone-aware", field="inf_time")
    return at.astimezone(BEIJING).strftime(_INF_TIME_FORMAT)


def parse_inf_time(value: object, *, field: str = "inf_time") -> dt.datetime:
    """The inverse of :func:`format_inf_time`: an aware datetime in Beijing time."""
    if not isinstance(value, str) or len(value) != 19:
        raise WireError(f"{field} must be 'yyyy-MM-dd HH:mm:ss'", field=field)
    try:
        return dt.datetime.strptime(value, _INF_TIME_FORMAT).replace(tzinfo=BEIJING)
    except ValueError:
        raise WireError(f"{field} must be 'yyyy-MM-dd HH:mm:ss'", field=field) from None


def parse_date(value: object, *, field: str) -> dt.date:
    """A ``yyyy-MM-dd`` date (visit_date, stmt_begndate, stmt_enddate)."""
    if not isinstance(value, str) or len(value) != 10:
        raise WireError(f"{field} must be 'yyyy-MM-dd'", field=field)
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise WireError(f"{field} must be 'yyyy-MM-dd'", field=field) from None


# --- setlinfo ----------------------------------------------------------------------------------

# DOMAIN §4, in the national order. Amounts are yuan strings; balc is the balance after.
SETLINFO_AMOUNT_FIELDS: Final = (
    "medfee_sumamt",
    "fulamt_ownpay_amt",
    "overlmt_selfpay",
    "preselfpay_amt",
    "inscp_scp_amt",
    "act_pay_dedc",
    "hifp_pay",
    "pool_prop_selfpay",
    "hifes_pay",
    "hifmi_pay",
    "hifob_pay",
    "maf_pay",
    "oth_pay",
    "fund_pay_sumamt",
    "psn_part_amt",
    "acct_pay",
    "psn_cash_pay",
    "balc",
)
SETLINFO_FIELDS: Final = (
    "setl_id",
    "mdtrt_id",
    "psn_no",
    "setl_time",
    *SETLINFO_AMOUNT_FIELDS,
)
# The amounts 3201 totals and 3202 details carry (what Shanghai fronts and clears).
FIGURE_FIELDS: Final = ("medfee_sumamt", "fund_pay_sumamt", "acct_pay", "psn_cash_pay")


def setlinfo_amounts_fen(setlinfo: object, *, signed: bool = False) -> dict[str, int]:
    """Every amount of a ``setlinfo`` in int fen, checked: all fields present and
    ``medfee_sumamt = fund_pay_sumamt + acct_pay + psn_cash_pay``. ``signed`` for a
    cancellation's setlinfo (negated amounts; ``balc`` is never negative)."""
    if not isinstance(setlinfo, Mapping):
        raise WireError("setlinfo must be an object", field="setlinfo")
    for name in SETLINFO_FIELDS:
        if name not in setlinfo:
            raise WireError(f"setlinfo.{name} is missing", field=f"setlinfo.{name}")
    for name in ("setl_id", "mdtrt_id", "psn_no", "setl_time"):
        if not isinstance(setlinfo[name], str) or not setlinfo[name]:
            raise WireError(f"setlinfo.{name} must be a string", field=f"setlinfo.{name}")
    amounts = {
        name: yuan_to_fen(
            setlinfo[name], field=f"setlinfo.{name}", signed=signed and name != "balc"
        )
        for name in SETLINFO_AMOUNT_FIELDS
    }
    if amounts["medfee_sumamt"] != (
        amounts["fund_pay_sumamt"] + amounts["acct_pay"] + amounts["psn_cash_pay"]
    ):
        raise WireError(
            "setlinfo: medfee_sumamt is not fund_pay_sumamt + acct_pay + psn_cash_pay",
            field="setlinfo.medfee_sumamt",
        )
    return amounts


# --- envelopes ---------------------------------------------------------------------------------

ENVELOPE_REQUIRED_FIELDS: Final = (
    "infno",
    "msgid",
    "mdtrtarea_admvs",
    "insuplc_admdvs",
    "fixmedins_code",
    "inf_time",
    "input",
)
_ADMDVS: Final = re.compile(r"[1-9][0-9]{5}")
# The optional envelope fields of DOMAIN §4 a HIS may send; accepted and ignored.
_ENVELOPE_OPTIONAL_FIELDS: Final = frozenset(
    {
        "recer_sys_code",
        "dev_no",
        "dev_safe_info",
        "cainfo",
        "signtype",
        "infver",
        "opter_type",
        "opter",
        "opter_name",
        "fixmedins_name",
        "sign_no",
    }
)
_RESPONSE_FIELDS: Final = (
    "infcode",
    "inf_refmsgid",
    "refmsg_time",
    "respond_time",
    "err_msg",
    "err_code",
    "output",
)


def _require_str(data: Mapping[str, Any], name: str, pattern: re.Pattern[str] | None) -> str:
    value = data.get(name)
    if not isinstance(value, str):
        raise WireError(f"{name} must be a string", field=name)
    if pattern is not None and not pattern.fullmatch(value):
        raise WireError(f"{name} is malformed", field=name)
    return value


@dataclass(frozen=True, slots=True)
class HubRequest:
    """One request envelope (only the fields the hub needs; see ENVELOPE_REQUIRED_FIELDS)."""

    infno: str
    msgid: str
    insuplc_admdvs: str
    fixmedins_code: str
    inf_time: str  # yyyy-MM-dd HH:mm:ss, Beijing
    input: Mapping[str, Any] = field(default_factory=dict)
    mdtrtarea_admvs: str = TREATMENT_ADMDVS

    @classmethod
    def build(
        cls,
        infno: str,
        *,
        msgid: str,
        insuplc_admdvs: str,
        fixmedins_code: str,
        input: Mapping[str, Any],
        at: dt.datetime,
        mdtrtarea_admvs: str = TREATMENT_ADMDVS,
    ) -> HubRequest:
        """A checked request (the same checks the hub applies, so a bug fails here first)."""
        return parse_request(
            {
                "infno": infno,
                "msgid": msgid,
                "mdtrtarea_admvs": mdtrtarea_admvs,
                "insuplc_admdvs": insuplc_admdvs,
                "fixmedins_code": fixmedins_code,
                "inf_time": format_inf_time(at),
                "input": dict(input),
            }
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "infno": self.infno,
            "msgid": self.msgid,
            "mdtrtarea_admvs": self.mdtrtarea_admvs,
            "insuplc_admdvs": self.insuplc_admdvs,
            "fixmedins_code": self.fixmedins_code,
            "inf_time": self.inf_time,
            "input": dict(self.input),
        }

    @property
    def path(self) -> str:
        return f"/hub/v1/{self.infno}"


def parse_request(data: object, *, path_infno: str | None = None) -> HubRequest:
    """A request envelope, strictly: every required field present and well formed, no
    unknown field, ``infno`` known and equal to the path's. Raises WireError (the hub answers
    HTTP 400). The ``input`` object is checked per infno by the hub, not here."""
    if not isinstance(data, Mapping):
        raise WireError("the envelope must be a JSON object", field=None)
    for name in ENVELOPE_REQUIRED_FIELDS:
        if name not in data:
            raise WireError(f"{name} is missing", field=name)
    unknown = sorted(
        str(key)
        for key in data
        if key not in ENVELOPE_REQUIRED_FIELDS and key not in _ENVELOPE_OPTIONAL_FIELDS
    )
    if unknown:
        raise WireError(f"unknown envelope field {unknown[0][:40]!r}", field=unknown[0][:40])
    infno = _require_str(data, "infno", None)
    if infno not in KNOWN_INFNOS:
        raise WireError(f"infno {infno[:8]!r} is not a transaction the hub serves", field="infno")
    if path_infno is not None and infno != path_infno:
        raise WireError("infno differs from the path", field="infno")
    msgid = _require_str(data, "msgid", None)
    parsed = parse_msgid(msgid)
    fixmedins_code = _require_str(data, "fixmedins_code", _INSTITUTION)
    if parsed.institution != fixmedins_code:
        raise WireError("msgid does not start with fixmedins_code", field="msgid")
    mdtrtarea_admvs = _require_str(data, "mdtrtarea_admvs", _ADMDVS)
    insuplc_admdvs = _require_str(data, "insuplc_admdvs", _ADMDVS)
    inf_time = _require_str(data, "inf_time", None)
    parse_inf_time(inf_time)
    payload = data["input"]
    if not isinstance(payload, Mapping):
        raise WireError("input must be an object", field="input")
    return HubRequest(
        infno=infno,
        msgid=msgid,
        insuplc_admdvs=insuplc_admdvs,
        fixmedins_code=fixmedins_code,
        inf_time=inf_time,
        input=dict(payload),
        mdtrtarea_admvs=mdtrtarea_admvs,
    )


@dataclass(frozen=True, slots=True)
class HubResponse:
    """One response envelope. ``infcode`` 0 is ok, -1 refused (``err_code`` says why)."""

    infcode: int
    inf_refmsgid: str  # the request's msgid
    refmsg_time: str  # when the hub received it
    respond_time: str  # when the hub answered
    err_msg: str = ""
    err_code: str = ""
    output: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.infcode == 0

    @classmethod
    def success(
        cls,
        request: HubRequest,
        output: Mapping[str, Any],
        *,
        received: dt.datetime,
        responded: dt.datetime,
    ) -> HubResponse:
        return cls(
            infcode=0,
            inf_refmsgid=request.msgid,
            refmsg_time=format_inf_time(received),
            respond_time=format_inf_time(responded),
            output=dict(output),
        )

    @classmethod
    def refusal(
        cls,
        request: HubRequest,
        err_code: HubErrCode,
        err_msg: str,
        *,
        received: dt.datetime,
        responded: dt.datetime,
    ) -> HubResponse:
        return cls(
            infcode=-1,
            inf_refmsgid=request.msgid,
            refmsg_time=format_inf_time(received),
            respond_time=format_inf_time(responded),
            err_msg=err_msg,
            err_code=err_code.value,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "infcode": self.infcode,
            "inf_refmsgid": self.inf_refmsgid,
            "refmsg_time": self.refmsg_time,
            "respond_time": self.respond_time,
            "err_msg": self.err_msg,
            "err_code": self.err_code,
            "output": dict(self.output),
        }


def parse_response(data: object, *, msgid: str | None = None) -> HubResponse:
    """A response envelope, strictly (WireError otherwise). With ``msgid``, also checks that
    the answer is to that request (``inf_refmsgid``). A refusal must carry an err_code."""
    if not isinstance(data, Mapping):
        raise WireError("the response must be a JSON object", field=None)
    for name in _RESPONSE_FIELDS:
        if name not in data:
            raise WireError(f"response.{name} is missing", field=name)
    infcode = data["infcode"]
    if type(infcode) is not int or infcode not in (0, -1):
        raise WireError("response.infcode must be 0 or -1", field="infcode")
    texts = {}
    for name in ("inf_refmsgid", "refmsg_time", "respond_time", "err_msg", "err_code"):
        value = data[name]
        if not isinstance(value, str):
            raise WireError(f"response.{name} must be a string", field=name)
        texts[name] = value
    if msgid is not None and texts["inf_refmsgid"] != msgid:
        raise WireError("response answers another msgid", field="inf_refmsgid")
    if infcode == -1 and not texts["err_code"]:
        raise WireError("a refusal must carry err_code", field="err_code")
    output = data["output"]
    if not isinstance(output, Mapping):
        raise WireError("response.output must be an object", field="output")
    return HubResponse(infcode=infcode, output=dict(output), **texts)
