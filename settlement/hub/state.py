"""The hub's books and its transactions: everything the simulator remembers, in memory.

:meth:`HubState.handle` takes one parsed request envelope and answers one response envelope;
it holds a lock for the whole call, so concurrent requests (or threads) see each call as one
atomic step. It has no I/O and takes its clock as an argument, so the unit tests drive it
directly as well as through HTTP.

What it keeps:

* **accounts** per person (当年账户 and 历年账户, opened from the derived person on first use)
  and **year-to-date accumulators** per person and calendar year of the visit;
* **messages** by msgid for every call that changes something (settle, cancel, 2601): the
  first answer is stored and a retry with the same msgid gets it back unchanged; a different
  call with a used msgid is refused (``MSGID_REUSED``);
* **reversed msgids** (tombstones): 2601 is final, so a settle whose msgid was reversed is
  refused (``MSG_REVERSED``) even if it arrives after its reversal;
* **settlements** by setl_id with their status, for cancels, 5201, 3201 and 3202.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from settlement.catalogue import Catalogue
from settlement.claim import (
    MAX_CLAIM_LINES,
    AccountBalances,
    ClaimLine,
    InsuredPerson,
    Visit,
    YearToDate,
)
from settlement.crossprov import wire
from settlement.crossprov.wire import (
    BEIJING,
    FIGURE_FIELDS,
    SETLINFO_AMOUNT_FIELDS,
    FilingType,
    HubErrCode,
    HubRequest,
    HubResponse,
    MessageStatus,
    WireError,
)
from settlement.engine import age_on, settle
from settlement.errors import PolicyNotApplicable, SettlementError, UnknownCatalogueCode
from settlement.hub.persons import RemotePerson, derive_person
from settlement.hub.province import Province, province_of
from settlement.policy import HospitalLevel, VisitType
from settlement.result import SettlementResult

__all__ = ["MAX_DETAIL_ROWS", "MAX_MESSAGES", "MAX_PERIOD_DAYS", "HubState", "Refused"]

MAX_PERIOD_DAYS: Final = 366
MAX_DETAIL_ROWS: Final = 10_000
# Stored messages (settles, cancels, reversals) before the simulator refuses with HUB_FULL:
# about 2 GB of answers; far beyond any test or benchmark run.
MAX_MESSAGES: Final = 1_000_000
_MDTRT_ID_MAX: Final = 64
# NHSA psn_type [weak: codes as HIS integrations use them]: 11 in service, 21 retired.
_PSN_TYPE_WORKING: Final = "11"
_PSN_TYPE_RETIRED: Final = "21"
_INSUTYPE: Final = "310"
_CHANGING_INFNOS: Final = wire.SETTLE_INFNOS | wire.CANCEL_INFNOS | {wire.INFNO_REVERSAL}


_E = TypeVar("_E")


class Refused(Exception):
    """A business refusal: the call is answered with infcode -1 and this err_code."""

    def __init__(self, err_code: HubErrCode, message: str) -> None:
        super().__init__(message)
        self.err_code = err_code
        self.message = message


@dataclass
class _Account:
    current_year_fen: int
    past_years_fen: int


@dataclass
class _Settlement:
    setl_id: str
    msgid: str
    infno: str
    fixmedins_code: str
    province: Province
    psn_no: str
    mdtrt_id: str
    setl_time: dt.datetime
    year: int  # the visit's calendar year (its accumulators)
    current_year_fen: int  # what each account paid
    past_years_fen: int
    ytd_delta: YearToDate  # what this settlement added to the accumulators
    figures: Mapping[str, int]  # FIGURE_FIELDS in fen
    setlinfo: dict[str, Any]
    setldetail: list[dict[str, Any]]
    status: MessageStatus = MessageStatus.SETTLED
    cancel_msgid: str | None = None
    cancel_setlinfo: dict[str, Any] | None = None


@dataclass
class _Message:
    infno: str
    fingerprint: str
    response: HubResponse
    setl_id: str | None = None  # set when the call committed (settled or cancelled it)


@dataclass
class _Books:
    accounts: dict[str, _Account] = field(default_factory=dict)
    year_to_date: dict[tuple[str, int], YearToDate] = field(default_factory=dict)
    messages: dict[str, _Message] = field(default_factory=dict)
    reversed_msgids: dict[str, str] = field(default_factory=dict)  # msgid → oinfno
    settlements: dict[str, _Settlement] = field(default_factory=dict)
    next_id: int = 1


def _fingerprint(request: HubRequest) -> str:
    return json.dumps(
        [request.infno, request.insuplc_admdvs, request.fixmedins_code, request.input],
        sort_keys=True,
        ensure_ascii=False,
        default=str,
    )


def _yuan(fen: int) -> str:
    return wire.fen_to_yuan(fen)


# --- input checks ------------------------------------------------------------------------------


def _text(data: Mapping[str, Any], name: str, *, max_len: int = 64) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not 1 <= len(value) <= max_len:
        raise Refused(HubErrCode.INVALID_INPUT, f"input.{name} must be a string of 1-{max_len}")
    return value


def _date(data: Mapping[str, Any], name: str) -> dt.date:
    try:
        return wire.parse_date(data.get(name), field=f"input.{name}")
    except WireError as exc:
        raise Refused(HubErrCode.INVALID_INPUT, exc.message) from None


def _claim_lines(value: object) -> list[ClaimLine]:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_CLAIM_LINES:
        raise Refused(
            HubErrCode.INVALID_INPUT, f"input.lines must be a list of 1-{MAX_CLAIM_LINES} lines"
        )
    lines = []
    for number, line in enumerate(value, start=1):
        if not isinstance(line, dict):
            raise Refused(HubErrCode.INVALID_INPUT, f"input.lines[{number}] must be an object")
        code, qty = line.get("list_code"), line.get("qty")
        if not isinstance(code, str) or not 1 <= len(code) <= 50:
            raise Refused(HubErrCode.INVALID_INPUT, f"input.lines[{number}].list_code is missing")
        if type(qty) is not int:
            raise Refused(
                HubErrCode.INVALID_INPUT, f"input.lines[{number}].qty must be a whole number"
            )
        try:
            price_fen = wire.yuan_to_fen(line.get("pric"), field=f"input.lines[{number}].pric")
        except WireError as exc:
            raise Refused(HubErrCode.INVALID_INPUT, exc.message) from None
        lines.append(ClaimLine(catalogue_code=code, quantity=qty, unit_price_fen=price_fen))
    return lines


def _enum_input(data: Mapping[str, Any], name: str, kind: Callable[[Any], _E]) -> _E:
    try:
        return kind(data.get(name))
    except (ValueError, TypeError):
        raise Refused(HubErrCode.INVALID_INPUT, f"input.{name} is not a known value") from None


class HubState:
    """The simulator's memory and its transactions (see the module docstring)."""

    def __init__(
        self,
        *,
        seed: str,
        provinces: Mapping[str, Province],
        catalogue: Catalogue,
        max_messages: int = MAX_MESSAGES,
    ) -> None:
        self._max_messages = max_messages
        self._seed = seed
        self._provinces = provinces
        self._catalogue = catalogue
        self._books = _Books()
        self._lock = threading.Lock()

    @property
    def provinces(self) -> Mapping[str, Province]:
        return self._provinces

    # --- entry point ---------------------------------------------------------------------------

    def handle(self, request: HubRequest, *, now: dt.datetime) -> HubResponse:
        """Process one call atomically; always an answer (refusals included)."""
        with self._lock:
            changes = request.infno in _CHANGING_INFNOS
            if (
                request.infno in wire.SETTLE_INFNOS | wire.CANCEL_INFNOS
                and request.msgid in self._books.reversed_msgids
            ):
                # Before the stored answer: a retry of a reversed call must not look settled.
                return self._refusal(
                    request,
                    HubErrCode.MSG_REVERSED,
                    "this msgid was reversed (2601); it can never commit",
                    now,
                )
            stored = self._books.messages.get(request.msgid)
            if stored is not None and changes:
                if stored.fingerprint != _fingerprint(request):
                    return self._refusal(
                        request,
                        HubErrCode.MSGID_REUSED,
                        "this msgid was used for a different call",
                        now,
                    )
                return stored.response
            if changes and len(self._books.messages) >= self._max_messages:
                # Bounded memory: refuse (not stored, nothing done) rather than grow forever.
                return self._refusal(
                    request,
                    HubErrCode.HUB_FULL,
                    f"the simulator holds {self._max_messages} messages; restart it",
                    now,
                )
            try:
                output, setl_id = self._dispatch(request, now)
            except Refused as refused:
                response = self._refusal(request, refused.err_code, refused.message, now)
                if changes:
                    self._books.messages[request.msgid] = _Message(
                        request.infno, _fingerprint(request), response
                    )
                return response
            response = HubResponse.success(request, output, received=now, responded=now)
            if changes:
                self._books.messages[request.msgid] = _Message(
                    request.infno, _fingerprint(request), response, setl_id
                )
            return response

    def message_status(self, msgid: str) -> MessageStatus:
        """What 5201 would say about ``msgid`` (for tests and logs)."""
        with self._lock:
            return self._status_of(msgid)

    def _refusal(
        self, request: HubRequest, code: HubErrCode, message: str, now: dt.datetime
    ) -> HubResponse:
        return HubResponse.refusal(request, code, message, received=now, responded=now)

    def _dispatch(self, request: HubRequest, now: dt.datetime) -> tuple[dict[str, Any], str | None]:
        infno = request.infno
        if infno == wire.INFNO_PERSON_INFO:
            return self._person_info(request, now), None
        if infno in wire.SETTLE_INFNOS:
            return self._settle(request, now)
        if infno in wire.CANCEL_INFNOS:
            return self._cancel(request, now)
        if infno == wire.INFNO_REVERSAL:
            return self._reverse(request), None
        if infno == wire.INFNO_QUERY:
            return self._query(request), None
        if infno in (wire.INFNO_TOTALS, wire.INFNO_DETAIL):
            return self._period(request), None
        raise AssertionError(f"parse_request let through infno {infno}")

    # --- persons -------------------------------------------------------------------------------

    def _insured_province(self, request: HubRequest) -> Province:
        province = province_of(request.insuplc_admdvs, self._provinces)
        if province is None:
            raise Refused(
                HubErrCode.UNKNOWN_PROVINCE,
                f"insured place {request.insuplc_admdvs} is not a province this hub serves",
            )
        return province

    def _person(self, request: HubRequest) -> tuple[Province, RemotePerson, _Account]:
        province = self._insured_province(request)
        psn_no = request.input.get("psn_no")
        person = derive_person(self._seed, psn_no) if isinstance(psn_no, str) else None
        if person is None or person.province_prefix != province.prefix:
            raise Refused(
                HubErrCode.PERSON_NOT_FOUND, f"no person with this psn_no in {province.name}"
            )
        account = self._books.accounts.get(person.psn_no)
        if account is None:
            account = _Account(person.opening_current_year_fen, person.opening_past_years_fen)
            self._books.accounts[person.psn_no] = account
        return province, person, account

    def _person_info(self, request: HubRequest, now: dt.datetime) -> dict[str, Any]:
        province, person, account = self._person(request)
        today = now.astimezone(BEIJING).date()
        return {
            "baseinfo": {"psn_no": person.psn_no, "age": age_on(person.birth_date, today)},
            "insuinfo": [
                {
                    "insuplc_admdvs": province.admdvs,
                    "insutype": _INSUTYPE,
                    "psn_type": _PSN_TYPE_RETIRED if person.retired else _PSN_TYPE_WORKING,
                    "balc": _yuan(account.current_year_fen + account.past_years_fen),
                }
            ],
        }

    # --- settle --------------------------------------------------------------------------------

    def _new_id(self, prefix: str, province: Province) -> str:
        number = self._books.next_id
        self._books.next_id += 1
        return f"{prefix}{province.admdvs}{number:010d}"

    def _settle(self, request: HubRequest, now: dt.datetime) -> tuple[dict[str, Any], str]:
        province, person, account = self._person(request)
        data = request.input
        mdtrt_id = _text(data, "mdtrt_id", max_len=_MDTRT_ID_MAX)
        visit_type = _enum_input(data, "visit_type", VisitType)
        if wire.SETTLE_INFNO_FOR_VISIT_TYPE[visit_type.value] != request.infno:
            raise Refused(
                HubErrCode.INVALID_INPUT,
                f"a {visit_type.value} visit settles with "
                f"{wire.SETTLE_INFNO_FOR_VISIT_TYPE[visit_type.value]}, not {request.infno}",
            )
        level_value = data.get("hospital_level")
        if type(level_value) is not int:
            raise Refused(HubErrCode.INVALID_INPUT, "input.hospital_level must be 1, 2 or 3")
        level = _enum_input(data, "hospital_level", HospitalLevel)
        visit_date = _date(data, "visit_date")
        if visit_date > now.astimezone(BEIJING).date():
            raise Refused(HubErrCode.INVALID_INPUT, "input.visit_date is in the future")
        filing = _enum_input(data, "filing_type", FilingType)
        lines = _claim_lines(data.get("lines"))
        policy = province.policy_for(temporary=filing.temporary)
        key = (person.psn_no, visit_date.year)
        year_to_date = self._books.year_to_date.get(key, YearToDate())
        try:
            result = settle(
                lines=lines,
                person=InsuredPerson(retired=person.retired, birth_date=person.birth_date),
                visit=Visit(visit_date=visit_date, visit_type=visit_type, hospital_level=level),
                policy=policy,
                catalogue=self._catalogue,
                year_to_date=year_to_date,
                balances=AccountBalances(account.current_year_fen, account.past_years_fen),
            )
        except UnknownCatalogueCode as exc:
            raise Refused(HubErrCode.UNKNOWN_ITEM, exc.message) from None
        except PolicyNotApplicable as exc:
            raise Refused(HubErrCode.POLICY_NOT_APPLICABLE, exc.message) from None
        except SettlementError as exc:
            raise Refused(HubErrCode.INVALID_INPUT, exc.message) from None

        # Commit: nothing below can refuse.
        setl_id = self._new_id("SETL", province)
        account.current_year_fen = result.balances_after.current_year_fen
        account.past_years_fen = result.balances_after.past_years_fen
        self._books.year_to_date[key] = result.year_to_date_after
        setlinfo = self._setlinfo(
            result, setl_id=setl_id, mdtrt_id=mdtrt_id, psn_no=person.psn_no, now=now
        )
        setlinfo["insuplc_admdvs"] = province.admdvs
        setldetail = [
            {
                "fund_pay_type": row.fund_pay_type,
                "fund_pay_type_name": row.fund_name,
                "fund_payamt": _yuan(row.amount_fen),
            }
            for row in result.setldetail
        ]
        self._books.settlements[setl_id] = _Settlement(
            setl_id=setl_id,
            msgid=request.msgid,
            infno=request.infno,
            fixmedins_code=request.fixmedins_code,
            province=province,
            psn_no=person.psn_no,
            mdtrt_id=mdtrt_id,
            setl_time=now,
            year=visit_date.year,
            current_year_fen=result.acct_detail.current_year_fen,
            past_years_fen=result.acct_detail.past_years_fen,
            ytd_delta=YearToDate(
                self_pay_band_consumed_fen=result.year_to_date_after.self_pay_band_consumed_fen
                - year_to_date.self_pay_band_consumed_fen,
                deductible_consumed_fen=result.year_to_date_after.deductible_consumed_fen
                - year_to_date.deductible_consumed_fen,
                pooling_fund_paid_fen=result.hifp_pay,
            ),
            figures={name: getattr(result, name) for name in FIGURE_FIELDS},
            setlinfo=setlinfo,
            setldetail=setldetail,
        )
        return {"setlinfo": setlinfo, "setldetail": setldetail}, setl_id

    @staticmethod
    def _setlinfo(
        result: SettlementResult, *, setl_id: str, mdtrt_id: str, psn_no: str, now: dt.datetime
    ) -> dict[str, Any]:
        amounts = {name: getattr(result, name, 0) for name in SETLINFO_AMOUNT_FIELDS}
        info: dict[str, Any] = {
            "setl_id": setl_id,
            "mdtrt_id": mdtrt_id,
            "psn_no": psn_no,
            "setl_time": wire.format_inf_time(now),
        }
        info.update({name: _yuan(amount) for name, amount in amounts.items()})
        return info

    # --- undo and redo (cancel, reversal) ------------------------------------------------------

    def _undo(self, settlement: _Settlement) -> _Account:
        """Give back what the settlement took: account payments and accumulators."""
        account = self._books.accounts[settlement.psn_no]
        account.current_year_fen += settlement.current_year_fen
        account.past_years_fen += settlement.past_years_fen
        key = (settlement.psn_no, settlement.year)
        ytd, delta = self._books.year_to_date[key], settlement.ytd_delta
        self._books.year_to_date[key] = YearToDate(
            self_pay_band_consumed_fen=ytd.self_pay_band_consumed_fen
            - delta.self_pay_band_consumed_fen,
            deductible_consumed_fen=ytd.deductible_consumed_fen - delta.deductible_consumed_fen,
            pooling_fund_paid_fen=ytd.pooling_fund_paid_fen - delta.pooling_fund_paid_fen,
        )
        assert min(_ytd_values(self._books.year_to_date[key])) >= 0
        return account

    def _redo(self, settlement: _Settlement) -> None:
        """Take the settlement's payments again (reversing its cancellation)."""
        account = self._books.accounts[settlement.psn_no]
        if (
            account.current_year_fen < settlement.current_year_fen
            or account.past_years_fen < settlement.past_years_fen
        ):
            raise Refused(
                HubErrCode.INSUFFICIENT_BALANCE,
                "the personal account no longer holds what the cancelled settlement paid",
            )
        account.current_year_fen -= settlement.current_year_fen
        account.past_years_fen -= settlement.past_years_fen
        key = (settlement.psn_no, settlement.year)
        ytd, delta = self._books.year_to_date[key], settlement.ytd_delta
        self._books.year_to_date[key] = YearToDate(
            self_pay_band_consumed_fen=ytd.self_pay_band_consumed_fen
            + delta.self_pay_band_consumed_fen,
            deductible_consumed_fen=ytd.deductible_consumed_fen + delta.deductible_consumed_fen,
            pooling_fund_paid_fen=ytd.pooling_fund_paid_fen + delta.pooling_fund_paid_fen,
        )

    def _cancel(self, request: HubRequest, now: dt.datetime) -> tuple[dict[str, Any], str]:
        province = self._insured_province(request)
        psn_no = _text(request.input, "psn_no")
        setl_id = _text(request.input, "setl_id")
        settlement = self._books.settlements.get(setl_id)
        if (
            settlement is None
            or settlement.psn_no != psn_no
            or settlement.province is not province
            or settlement.fixmedins_code != request.fixmedins_code
            or wire.CANCEL_FOR_SETTLE[settlement.infno] != request.infno
        ):
            raise Refused(
                HubErrCode.SETTLEMENT_NOT_FOUND,
                f"no {wire.SETTLE_FOR_CANCEL[request.infno]} settlement {setl_id[:40]!r} of "
                "this person at this institution",
            )
        if settlement.status is MessageStatus.CANCELLED:
            raise Refused(HubErrCode.ALREADY_CANCELLED, f"settlement {setl_id} is cancelled")
        if settlement.status is MessageStatus.REVERSED:
            raise Refused(HubErrCode.ALREADY_REVERSED, f"settlement {setl_id} was reversed")
        account = self._undo(settlement)
        cancel_info: dict[str, Any] = {
            "setl_id": self._new_id("CNCL", province),
            "mdtrt_id": settlement.mdtrt_id,
            "psn_no": settlement.psn_no,
            "setl_time": wire.format_inf_time(now),
        }
        for name in SETLINFO_AMOUNT_FIELDS:
            cancel_info[name] = (
                _yuan(account.current_year_fen + account.past_years_fen)
                if name == "balc"
                else _yuan(-wire.yuan_to_fen(settlement.setlinfo[name]))
            )
        cancel_info["insuplc_admdvs"] = province.admdvs
        cancel_info["orig_setl_id"] = settlement.setl_id
        settlement.status = MessageStatus.CANCELLED
        settlement.cancel_msgid = request.msgid
        settlement.cancel_setlinfo = cancel_info
        return {"setlinfo": cancel_info}, settlement.setl_id

    # --- 2601 reversal -------------------------------------------------------------------------

    def _reverse(self, request: HubRequest) -> dict[str, Any]:
        omsgid, oinfno = request.input.get("omsgid"), request.input.get("oinfno")
        if not wire.is_msgid(omsgid) or not isinstance(oinfno, str):
            raise Refused(HubErrCode.INVALID_INPUT, "input.omsgid and input.oinfno are required")
        assert isinstance(omsgid, str)
        if oinfno not in wire.REVERSIBLE_INFNOS:
            raise Refused(HubErrCode.NOT_REVERSIBLE, f"infno {oinfno[:8]!r} cannot be reversed")
        if omsgid in self._books.reversed_msgids:
            return self._reversal_output(omsgid, oinfno, undone=False)
        message = self._books.messages.get(omsgid)
        undone = False
        if message is not None:
            if message.infno != oinfno:
                raise Refused(
                    HubErrCode.INVALID_INPUT, f"msgid {omsgid} was a {message.infno}, not {oinfno}"
                )
            if message.setl_id is not None:
                settlement = self._books.settlements[message.setl_id]
                if oinfno in wire.SETTLE_INFNOS:
                    if settlement.status is MessageStatus.CANCELLED:
                        raise Refused(
                            HubErrCode.ALREADY_CANCELLED,
                            f"settlement {settlement.setl_id} was cancelled; nothing to reverse",
                        )
                    self._undo(settlement)
                    settlement.status = MessageStatus.REVERSED
                else:  # a committed cancel: the settlement stands again
                    self._redo(settlement)
                    settlement.status = MessageStatus.SETTLED
                    settlement.cancel_msgid = None
                    settlement.cancel_setlinfo = None
                undone = True
        # Tombstone (also when nothing was committed): a late original is refused.
        self._books.reversed_msgids[omsgid] = oinfno
        return self._reversal_output(omsgid, oinfno, undone=undone)

    @staticmethod
    def _reversal_output(omsgid: str, oinfno: str, *, undone: bool) -> dict[str, Any]:
        return {
            "omsgid": omsgid,
            "oinfno": oinfno,
            "reversed": undone,
            "status": MessageStatus.REVERSED.value,
        }

    # --- 5201 query ----------------------------------------------------------------------------

    def _status_of(self, msgid: str) -> MessageStatus:
        if msgid in self._books.reversed_msgids:
            return MessageStatus.REVERSED
        message = self._books.messages.get(msgid)
        if message is None or message.setl_id is None:
            return MessageStatus.NONE
        settlement = self._books.settlements[message.setl_id]
        if message.infno in wire.CANCEL_INFNOS:
            return MessageStatus.CANCELLED  # this cancel is in force
        return settlement.status

    def _query(self, request: HubRequest) -> dict[str, Any]:
        omsgid = request.input.get("omsgid")
        if not wire.is_msgid(omsgid):
            raise Refused(HubErrCode.INVALID_INPUT, "input.omsgid must be a msgid")
        assert isinstance(omsgid, str)
        status = self._status_of(omsgid)
        output: dict[str, Any] = {"omsgid": omsgid, "status": status.value}
        message = self._books.messages.get(omsgid)
        if message is not None:
            output["infno"] = message.infno
            if not message.response.ok:
                output["err_code"] = message.response.err_code
        elif omsgid in self._books.reversed_msgids:
            output["infno"] = self._books.reversed_msgids[omsgid]
        if message is not None and message.setl_id is not None:
            settlement = self._books.settlements[message.setl_id]
            if status is MessageStatus.SETTLED:
                output["setlinfo"] = settlement.setlinfo
            elif status is MessageStatus.CANCELLED and message.infno in wire.CANCEL_INFNOS:
                output["setlinfo"] = settlement.cancel_setlinfo
        return output

    # --- 3201 totals, 3202 detail --------------------------------------------------------------

    def _period(self, request: HubRequest) -> dict[str, Any]:
        data = request.input
        admdvs = _text(data, "insuplc_admdvs", max_len=6)
        province = province_of(admdvs, self._provinces)
        if province is None:
            raise Refused(
                HubErrCode.UNKNOWN_PROVINCE, f"{admdvs} is not a province this hub serves"
            )
        begin, end = _date(data, "stmt_begndate"), _date(data, "stmt_enddate")
        if end < begin or (end - begin).days >= MAX_PERIOD_DAYS:
            raise Refused(
                HubErrCode.INVALID_INPUT,
                f"stmt_begndate..stmt_enddate must be in order and span at most "
                f"{MAX_PERIOD_DAYS} days",
            )
        rows = sorted(
            (
                s
                for s in self._books.settlements.values()
                if s.province is province and begin <= s.setl_time.astimezone(BEIJING).date() <= end
            ),
            key=lambda s: (s.setl_time, s.setl_id),
        )
        output: dict[str, Any] = {
            "insuplc_admdvs": province.admdvs,
            "stmt_begndate": begin.isoformat(),
            "stmt_enddate": end.isoformat(),
        }
        if request.infno == wire.INFNO_TOTALS:
            for status in (MessageStatus.SETTLED, MessageStatus.CANCELLED, MessageStatus.REVERSED):
                chosen = [s for s in rows if s.status is status]
                figures: dict[str, Any] = {"count": len(chosen)}
                for name in FIGURE_FIELDS:
                    figures[name] = _yuan(sum(s.figures[name] for s in chosen))
                output[status.value] = figures
            return output
        if len(rows) > MAX_DETAIL_ROWS:
            raise Refused(
                HubErrCode.INVALID_INPUT,
                f"the period holds more than {MAX_DETAIL_ROWS} settlements; ask for a shorter one",
            )
        output["details"] = [_detail(s) for s in rows]
        return output


def _detail(settlement: _Settlement) -> dict[str, Any]:
    row: dict[str, Any] = {
        "msgid": settlement.msgid,
        "infno": settlement.infno,
        "setl_id": settlement.setl_id,
        "mdtrt_id": settlement.mdtrt_id,
        "fixmedins_code": settlement.fixmedins_code,
        "setl_time": wire.format_inf_time(settlement.setl_time),
        "status": settlement.status.value,
    }
    row.update({name: _yuan(settlement.figures[name]) for name in FIGURE_FIELDS})
    return row


def _ytd_values(ytd: YearToDate) -> Sequence[int]:
    return (ytd.self_pay_band_consumed_fen, ytd.deductible_consumed_fen, ytd.pooling_fund_paid_fen)
