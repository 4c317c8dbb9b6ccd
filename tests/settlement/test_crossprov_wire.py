"""settlement.crossprov.wire: exact yuan↔fen, msgid, strict envelopes, setlinfo amounts."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from settlement.crossprov import wire
from settlement.crossprov.wire import (
    BEIJING,
    HubErrCode,
    HubRequest,
    HubResponse,
    WireError,
    fen_to_yuan,
    yuan_to_fen,
)

AT = dt.datetime(2026, 3, 4, 5, 6, 7, tzinfo=BEIJING)
MSGID = "H31000000001202603040506070001"


# --- money -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "fen"),
    [("0", 0), ("0.00", 0), ("0.1", 10), ("0.01", 1), ("12.3", 1230), ("123.45", 12345),
     ("99999999999999.99", 10**16 - 1)],
)  # fmt: skip
def test_yuan_strings_become_exact_fen(text: str, fen: int) -> None:
    assert yuan_to_fen(text) == fen


@pytest.mark.parametrize(
    "bad",
    [1.5, 12, True, None, b"1.00", "1.001", "1e2", "+1.00", " 1.00", "1.00 ", "01.00", "1.",
     ".5", "", "-", "NaN", "inf", "1,000.00", "１.００", "100000000000000.00", "0x10"],
)  # fmt: skip
def test_anything_but_a_plain_yuan_string_is_refused(bad: object) -> None:
    with pytest.raises(WireError) as info:
        yuan_to_fen(bad, field="pric")
    assert info.value.field == "pric"
    assert info.value.code == "WIRE_INVALID"


def test_negative_amounts_only_when_signed() -> None:
    with pytest.raises(WireError, match="negative"):
        yuan_to_fen("-1.00")
    assert yuan_to_fen("-1.05", signed=True) == -105
    with pytest.raises(WireError):
        yuan_to_fen("-0.00", signed=True)


@given(st.integers(min_value=-wire.MAX_YUAN_FEN, max_value=wire.MAX_YUAN_FEN))
def test_fen_round_trips_through_yuan(fen: int) -> None:
    assert yuan_to_fen(fen_to_yuan(fen), signed=True) == fen


@pytest.mark.parametrize("bad", [1.0, True, "100", 10**16])
def test_fen_to_yuan_refuses_non_int_and_overflow(bad: object) -> None:
    with pytest.raises(WireError):
        fen_to_yuan(bad)  # type: ignore[arg-type]


# --- msgid and times ---------------------------------------------------------------------------


def test_msgid_is_institution_time_and_sequence() -> None:
    msgid = wire.make_msgid("H31000000001", AT, 1)
    assert msgid == MSGID
    assert len(msgid) == 30
    parsed = wire.parse_msgid(msgid)
    assert parsed == wire.Msgid("H31000000001", AT, 1)
    assert str(parsed) == msgid
    # Time is written in Beijing time whatever zone the caller's clock uses.
    assert wire.make_msgid("H31000000001", AT.astimezone(dt.UTC), 1) == MSGID


@pytest.mark.parametrize(
    "bad",
    [None, 1, "", MSGID[:-1], MSGID + "0", "h31000000001202603040506070001",
     "H31000000001202613040506070001",  # month 13
     "H31000000001202602300506070001",  # 30 February
     "H3100000000120260304050607000a"],
)  # fmt: skip
def test_malformed_msgids_are_refused(bad: object) -> None:
    assert not wire.is_msgid(bad)
    with pytest.raises(WireError):
        wire.parse_msgid(bad)


def test_make_msgid_checks_its_parts() -> None:
    with pytest.raises(WireError):
        wire.make_msgid("H3100000000", AT, 1)  # 11 characters
    with pytest.raises(WireError):
        wire.make_msgid("H31000000001", AT.replace(tzinfo=None), 1)
    with pytest.raises(WireError):
        wire.make_msgid("H31000000001", AT, 10_000)


def test_inf_time_and_dates() -> None:
    assert wire.format_inf_time(AT) == "2026-03-04 05:06:07"
    assert wire.parse_inf_time("2026-03-04 05:06:07") == AT
    with pytest.raises(WireError):
        wire.parse_inf_time("2026-03-04T05:06:07")
    assert wire.parse_date("2026-02-28", field="visit_date") == dt.date(2026, 2, 28)
    with pytest.raises(WireError) as info:
        wire.parse_date("2026-02-30", field="visit_date")
    assert info.value.field == "visit_date"


# --- infno tables ------------------------------------------------------------------------------


def test_settles_map_to_their_cancels_and_all_are_reversible() -> None:
    assert wire.CANCEL_FOR_SETTLE == {"2207": "2208", "2102": "2103", "2304": "2305"}
    assert {v: k for k, v in wire.CANCEL_FOR_SETTLE.items()} == wire.SETTLE_FOR_CANCEL
    assert wire.SETTLE_INFNOS | wire.CANCEL_INFNOS <= wire.REVERSIBLE_INFNOS
    assert "1101" not in wire.REVERSIBLE_INFNOS
    assert "5201" not in wire.REVERSIBLE_INFNOS
    assert wire.SETTLE_INFNO_FOR_VISIT_TYPE["emergency"] == "2207"
    assert wire.FilingType.REFERRAL.temporary
    assert not wire.FilingType.RESETTLED_RETIREE.temporary


# --- envelopes ---------------------------------------------------------------------------------


def _envelope(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "infno": "1101",
        "msgid": MSGID,
        "mdtrtarea_admvs": "310000",
        "insuplc_admdvs": "320000",
        "fixmedins_code": "H31000000001",
        "inf_time": "2026-03-04 05:06:07",
        "input": {"psn_no": "320000000000001"},
    }
    data.update(changes)
    return {k: v for k, v in data.items() if v is not ...}


def test_request_builds_and_parses_back() -> None:
    request = HubRequest.build(
        "1101",
        msgid=MSGID,
        insuplc_admdvs="320000",
        fixmedins_code="H31000000001",
        input={"psn_no": "320000000000001"},
        at=AT,
    )
    assert request.to_json() == _envelope()
    assert wire.parse_request(request.to_json(), path_infno="1101") == request
    assert request.path == "/hub/v1/1101"
    # Optional DOMAIN §4 fields are accepted (and ignored).
    assert wire.parse_request(_envelope(infver="V1.0", opter_type="1")) == request


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"infno": ...}, "infno"),
        ({"infno": "9999"}, "infno"),
        ({"infno": 1101}, "infno"),
        ({"msgid": "x"}, "msgid"),
        ({"msgid": "H31000000002202603040506070001"}, "msgid"),  # another institution's
        ({"fixmedins_code": "h31000000001"}, "fixmedins_code"),
        ({"insuplc_admdvs": "32000"}, "insuplc_admdvs"),
        ({"mdtrtarea_admvs": None}, "mdtrtarea_admvs"),
        ({"inf_time": "yesterday"}, "inf_time"),
        ({"input": []}, "input"),
        ({"input": ...}, "input"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_malformed_envelopes_are_refused_with_the_field(
    changes: dict[str, Any], field: str
) -> None:
    with pytest.raises(WireError) as info:
        wire.parse_request(_envelope(**changes))
    assert info.value.field == field


def test_envelope_must_be_an_object_and_match_the_path() -> None:
    with pytest.raises(WireError):
        wire.parse_request([_envelope()])
    with pytest.raises(WireError) as info:
        wire.parse_request(_envelope(), path_infno="2207")
    assert info.value.field == "infno"


def test_responses_round_trip_and_are_checked() -> None:
    request = wire.parse_request(_envelope())
    ok = HubResponse.success(request, {"x": 1}, received=AT, responded=AT)
    assert ok.ok
    assert wire.parse_response(ok.to_json(), msgid=MSGID) == ok
    refused = HubResponse.refusal(
        request, HubErrCode.PERSON_NOT_FOUND, "no such person", received=AT, responded=AT
    )
    parsed = wire.parse_response(refused.to_json())
    assert not parsed.ok
    assert parsed.err_code == "PERSON_NOT_FOUND"
    with pytest.raises(WireError, match="another msgid"):
        wire.parse_response(ok.to_json(), msgid="H31000000001202603040506070002")
    for broken in (
        {**ok.to_json(), "infcode": "0"},
        {**ok.to_json(), "infcode": 1},
        {**ok.to_json(), "output": None},
        {**refused.to_json(), "err_code": ""},
        {k: v for k, v in ok.to_json().items() if k != "respond_time"},
        "not an object",
    ):
        with pytest.raises(WireError):
            wire.parse_response(broken)


# --- setlinfo ----------------------------------------------------------------------------------


def _setlinfo(**amounts: str) -> dict[str, str]:
    data = dict.fromkeys(wire.SETLINFO_AMOUNT_FIELDS, "0.00")
    data.update(setl_id="S1", mdtrt_id="M1", psn_no="320000000000001", setl_time="x")
    data.update(amounts)
    return data


def test_setlinfo_amounts_are_fen_and_must_add_up() -> None:
    good = _setlinfo(medfee_sumamt="10.00", fund_pay_sumamt="6.00", acct_pay="1.50",
                     psn_cash_pay="2.50", balc="3.00")  # fmt: skip
    amounts = wire.setlinfo_amounts_fen(good)
    assert amounts["medfee_sumamt"] == 1000
    assert amounts["balc"] == 300
    assert set(amounts) == set(wire.SETLINFO_AMOUNT_FIELDS)
    with pytest.raises(WireError, match="medfee_sumamt"):
        wire.setlinfo_amounts_fen({**good, "psn_cash_pay": "2.49"})
    with pytest.raises(WireError):
        wire.setlinfo_amounts_fen({**good, "acct_pay": 1.5})
    with pytest.raises(WireError) as info:
        wire.setlinfo_amounts_fen({k: v for k, v in good.items() if k != "hifp_pay"})
    assert info.value.field == "setlinfo.hifp_pay"


def test_cancellation_setlinfo_is_negated_when_signed() -> None:
    negated = _setlinfo(medfee_sumamt="-10.00", fund_pay_sumamt="-10.00", balc="5.00")
    with pytest.raises(WireError):
        wire.setlinfo_amounts_fen(negated)
    assert wire.setlinfo_amounts_fen(negated, signed=True)["medfee_sumamt"] == -1000
    with pytest.raises(WireError):
        wire.setlinfo_amounts_fen({**negated, "balc": "-1.00"}, signed=True)
