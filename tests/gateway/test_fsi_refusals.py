"""The national door's refusals, per transport profile (docs/national-interface.md §5, §6):
under ``plain`` and under ``sm2-sm4`` (SM4-ECB input, SM2 cainfo), a wrong signature, a
replayed msgid, a stale inf_time, an unknown fixmedins_code or opter, and each kind of bad
envelope (missing fields, wrong types, unknown infno, oversize input, bad encryption, wrong
sign_no) gets its typed refusal, and the database is row for row what it was before.

"Nothing written" is checked on the whole database (every table, every row), not on a list
of tables the door is expected to touch. A family of cases (the ways a field can be wrong, say)
runs in one test against one world, each case checked on its own and named in the failure:
since no case may write anything, sharing the world loses nothing, and a world per case cost
two minutes of the suite."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from card_auth_testkit import NEW_ACTIVE, CardTerminal
from fsi_testkit import OPTER, His, card_of, refused_code, register_operators
from gateway_testkit import HOSPITAL, OFF_TERMINAL, PHARMACY, Client, FakeClock, Signer
from settlement_api_testkit import TODAY, load_insured_world
from sqlalchemy import Engine, inspect, text, update
from sqlalchemy.orm import Session

from gateway.fsi.store import FsiOperator, FsiTransport
from sscard.crypto import SM2PrivateKey, sm2_sign, sm4_ecb_encrypt

PLAIN, SM2_SM4 = "plain", "sm2-sm4"
SM4_KEY = bytes(range(16))
HIS_KEY = SM2PrivateKey.from_int(0x1234_5678_9ABC_DEF0_1234_5678_9ABC_DEF0)
OTHER_KEY = SM2PrivateKey.from_int(0x0FED_CBA9_8765_4321_0FED_CBA9_8765_4321)
SKEW_S = 300  # the fsi_inf_time_skew_s default
LINE = {"med_list_codg": "DEMO-A-002", "cnt": 1, "pric": "25.00", "feedetl_sn": "1"}


def pkcs7(data: bytes) -> bytes:
    pad = 16 - len(data) % 16
    return data + bytes([pad]) * pad


def seal(plain: bytes, key: bytes = SM4_KEY) -> str:
    return base64.b64encode(sm4_ecb_encrypt(key, pkcs7(plain))).decode()


def sign(plain: bytes, key: SM2PrivateKey = HIS_KEY) -> str:
    return base64.b64encode(sm2_sign(key, plain)).decode()


@dataclass
class SealedHis(His):
    """An HIS on the sm2-sm4 profile: the input JSON is signed (cainfo) and SM4-encrypted."""

    def envelope(
        self, infno: str, body: Any, *, msgid: str | None = None, **over: Any
    ) -> dict[str, Any]:
        if isinstance(body, dict):
            plain = json.dumps(body, ensure_ascii=False).encode()
            over = {"input": seal(plain), "cainfo": sign(plain), **over}
        return super().envelope(infno, body, msgid=msgid, **over)


# The shared rate limits' buckets (gateway.limits): each worker settles its terminals' request
# counts there every limits_sync_s, in the background, whatever the request in flight. The
# card authentication of the fixture is such a request; its count may land at any moment.
NOT_STATE = frozenset({"guard_buckets"})


def database(engine: Engine) -> dict[str, str]:
    """Every table's rows (but NOT_STATE), as a digest per table: equal digests, equal
    contents."""
    names = sorted(set(inspect(engine).get_table_names()) - NOT_STATE)
    digests = {}
    with Session(engine) as session:
        for name in names:
            rows = session.execute(text(f'SELECT * FROM "{name}"')).all()
            listed = sorted(repr(tuple(row)) for row in rows)
            digests[name] = f"{len(rows)}:" + hashlib.sha256("\n".join(listed).encode()).hexdigest()
    return digests


@pytest.fixture(params=[PLAIN, SM2_SM4])
def profile(request: pytest.FixtureRequest) -> str:
    param: str = request.param
    return param


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"demo_world": "on"}  # the demo PKI, for the card's authentication


@pytest.fixture
def world(engine: Engine, profile: str) -> Engine:
    load_insured_world(engine)
    register_operators(engine)
    with Session(engine) as session, session.begin():
        session.add(FsiOperator(fixmedins_code=HOSPITAL, opter="OP0002", opter_name="二号"))
        session.add(
            FsiOperator(fixmedins_code=HOSPITAL, opter="OP0009", opter_name="停用", enabled=False)
        )
        if profile == SM2_SM4:
            session.add(
                FsiTransport(
                    fixmedins_code=HOSPITAL,
                    profile=SM2_SM4,
                    sm4_key=SM4_KEY,
                    his_public_key=HIS_KEY.public_key.to_bytes(),
                )
            )
    return engine


def his_for(profile: str, client: Client, clock: FakeClock, **kwargs: Any) -> His:
    return (SealedHis if profile == SM2_SM4 else His)(client, clock, **kwargs)


@pytest.fixture
async def his(world: Engine, client: Client, clock: FakeClock, signer: Signer, profile: str) -> His:
    response = await CardTerminal(signer).authenticate(NEW_ACTIVE)
    assert response.status == 200, await response.text()
    his = his_for(profile, client, clock)
    await his.sign_in()
    return his


def card_input(**extra: Any) -> dict[str, Any]:
    card_sn, card_no = card_of(NEW_ACTIVE)
    return {"mdtrt_cert_type": "03", "mdtrt_cert_no": card_no, "card_sn": card_sn, **extra}


async def open_visit(his: His) -> dict[str, Any]:
    """A registered visit with one fee line: the input of its 2207 settle."""
    registered = await his.ok("2201", {"data": {**card_input(), "begntime": f"{TODAY} 09:00:00"}})
    mdtrt_id = registered["data"]["mdtrt_id"]
    await his.ok("2204", {"feedetail": [{**LINE, "mdtrt_id": mdtrt_id, "chrg_bchno": "B1"}]})
    return {"data": {**card_input(), "mdtrt_id": mdtrt_id, "medfee_sumamt": "25.00"}}


async def refused_unchanged(his: His, engine: Engine, env: dict[str, Any] | bytes) -> str:
    """Send ``env``; it must be refused (HTTP 200, infcode -1/-2) with nothing written."""
    before = database(engine)
    response = await his.post_raw(env)
    assert response.status == 200, await response.text()
    code = refused_code(await response.json())
    assert database(engine) == before, code
    return code


async def refusals(his: His, engine: Engine, cases: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Each case's refusal code (``refused_unchanged``), by case name; a case that was not
    refused, or wrote anything, fails naming the case."""
    codes = {}
    for case, env in cases.items():
        try:
            codes[case] = await refused_unchanged(his, engine, env)
        except AssertionError as error:
            raise AssertionError(f"case {case}: {error}") from error
    return codes


def every(cases: dict[str, Any], code: str) -> dict[str, str]:
    return dict.fromkeys(cases, code)


# --- a wrong signature (cainfo) ------------------------------------------------------------------


def _with_cainfo(make: Callable[[bytes], str]) -> Callable[[dict[str, Any], bytes], None]:
    def mutate(env: dict[str, Any], plain: bytes) -> None:
        env["cainfo"] = make(plain)

    return mutate


WRONG_CAINFO: dict[str, Callable[[dict[str, Any], bytes], None]] = {
    "another-key": _with_cainfo(lambda p: sign(p, OTHER_KEY)),
    "other-text": _with_cainfo(lambda p: sign(p + b" ")),
    "empty": _with_cainfo(lambda p: ""),
    "not-base64": _with_cainfo(lambda p: "not base64!"),
    "truncated": _with_cainfo(lambda p: sign(p)[:-8]),
    "zero-r-s": _with_cainfo(lambda p: base64.b64encode(bytes(64)).decode()),
}


@pytest.mark.parametrize("profile", [SM2_SM4], indirect=True)
async def test_a_wrong_signature_is_refused(his: His, world: Engine) -> None:
    settle = await open_visit(his)
    plain = json.dumps(settle, ensure_ascii=False).encode()
    cases = {}
    for case, wrong in WRONG_CAINFO.items():
        cases[case] = env = his.envelope("2207", settle)
        wrong(env, plain)
    assert await refusals(his, world, cases) == every(cases, "FSI_CAINFO_INVALID")


@pytest.mark.parametrize("profile", [SM2_SM4], indirect=True)
async def test_a_signature_of_another_input_does_not_carry_over(his: His, world: Engine) -> None:
    """The cainfo of one envelope, put on another input: refused (it signs the input)."""
    settle = await open_visit(his)
    genuine = his.envelope("2207", settle)
    changed = {"data": {**settle["data"], "medfee_sumamt": "25"}}  # same amount, other text
    forged = his.envelope("2207", changed, cainfo=genuine["cainfo"])
    assert await refused_unchanged(his, world, forged) == "FSI_CAINFO_INVALID"


@pytest.mark.parametrize("profile", [PLAIN], indirect=True)
async def test_plain_checks_neither_cainfo_nor_inf_time(his: His) -> None:
    """§5: the plain profile is for a private line; cainfo and inf_time are not checked."""
    output = await his.ok(
        "1101", {"data": card_input()}, cainfo="garbage", inf_time="2000-01-01 00:00:00"
    )
    assert output["baseinfo"]["psn_no"]


# --- a replayed msgid -----------------------------------------------------------------------------


async def test_a_replayed_msgid_answers_the_stored_answer_or_is_refused(
    his: His, world: Engine, clock: FakeClock, profile: str
) -> None:
    settle = await open_visit(his)
    msgid = his.msgid()
    env = his.envelope("2207", settle, msgid=msgid)
    first = await his.post_raw(env)
    first_text = await first.text()
    assert json.loads(first_text)["infcode"] == 0
    before = database(world)
    # The same envelope again: the stored answer, byte for byte, and nothing done twice.
    again = await his.post_raw(env)
    assert await again.text() == first_text
    assert again.headers["Idempotent-Replayed"] == "true"
    assert database(world) == before
    # The msgid on another input: a conflict (-2), nothing done.
    changed = {"data": {**settle["data"], "medfee_sumamt": "25.0"}}  # signed anew (sm2-sm4)
    other = his.envelope("2207", changed, msgid=msgid)
    answer = await his.post_raw(other)
    body = await answer.json()
    assert body["infcode"] == -2
    assert refused_code(body) == "FSI_MSGID_REUSED"
    assert database(world) == before
    if profile == SM2_SM4:
        # A captured envelope replayed once its inf_time is stale: refused before the store.
        clock.now_s += SKEW_S + 1
        assert await refused_unchanged(his, world, env) == "FSI_INF_TIME_STALE"


# --- a stale inf_time ----------------------------------------------------------------------------


@pytest.mark.parametrize("profile", [SM2_SM4], indirect=True)
async def test_a_stale_inf_time_is_refused(his: His, world: Engine, clock: FakeClock) -> None:
    settle = await open_visit(his)
    cases = {"none": his.envelope("2207", settle, inf_time="")}  # no inf_time at all
    for shift_s in (-(SKEW_S + 1), SKEW_S + 1, -86_400):
        clock.now_s += shift_s  # the HIS's clock is off; the gateway's is not
        cases[f"{shift_s:+} s"] = his.envelope("2207", settle)
        clock.now_s -= shift_s
    assert await refusals(his, world, cases) == every(cases, "FSI_INF_TIME_STALE")


@pytest.mark.parametrize("profile", [SM2_SM4], indirect=True)
async def test_an_inf_time_within_the_skew_is_accepted(his: His, clock: FakeClock) -> None:
    clock.now_s -= SKEW_S - 1
    env = his.envelope("1101", {"data": card_input()})
    clock.now_s += SKEW_S - 1
    response = await his.post_raw(env)
    assert (await response.json())["infcode"] == 0


@pytest.mark.parametrize("profile", [SM2_SM4], indirect=True)
async def test_a_malformed_inf_time_is_an_envelope_error(his: His, world: Engine) -> None:
    env = his.envelope("2207", await open_visit(his), inf_time="2027/01/15 09:00")
    assert await refused_unchanged(his, world, env) == "FSI_ENVELOPE_INVALID"


# --- an unknown fixmedins_code or opter ----------------------------------------------------------


async def test_an_unknown_fixmedins_code_is_refused(his: His, world: Engine) -> None:
    env = his.envelope("2207", await open_visit(his), fixmedins_code="H99999999999")
    assert await refused_unchanged(his, world, env) == "FSI_INSTITUTION_UNKNOWN"


async def test_an_unknown_fixmedins_code_cannot_sign_in(
    world: Engine, client: Client, clock: FakeClock, profile: str
) -> None:
    stranger = his_for(profile, client, clock)
    env = stranger.envelope("9001", {"signIn": {}}, fixmedins_code="P99999999999")
    assert await refused_unchanged(stranger, world, env) == "FSI_INSTITUTION_UNKNOWN"


@pytest.mark.parametrize("profile", [SM2_SM4], indirect=True)
async def test_an_sm2_sm4_institution_without_keys_is_refused(
    world: Engine, client: Client, clock: FakeClock
) -> None:
    with Session(world) as session, session.begin():
        session.execute(
            update(FsiTransport).where(FsiTransport.fixmedins_code == HOSPITAL).values(sm4_key=None)
        )
    his = SealedHis(client, clock)
    env = his.envelope("9001", {"signIn": {"opter_no": OPTER}})
    assert await refused_unchanged(his, world, env) == "FSI_INSTITUTION_UNKNOWN"


@pytest.mark.parametrize("profile", [PLAIN], indirect=True)
@pytest.mark.parametrize(
    "settings_overrides", [{"demo_world": "on", "fsi_default_profile": "refuse"}]
)
async def test_an_institution_not_enabled_on_the_door_is_refused(
    world: Engine, client: Client, clock: FakeClock
) -> None:
    his = His(client, clock)  # the hospital has no fsi_transport row: the default, refuse
    env = his.envelope("9001", {"signIn": {"opter_no": OPTER}})
    assert await refused_unchanged(his, world, env) == "FSI_INSTITUTION_UNKNOWN"


@pytest.mark.parametrize("opter", ["NOBODY", "OP0009"])  # not registered; disabled
async def test_an_unknown_operator_cannot_sign_in(
    world: Engine, client: Client, clock: FakeClock, profile: str, opter: str
) -> None:
    stranger = his_for(profile, client, clock, opter=opter)
    env = stranger.envelope("9001", {"signIn": {"opter_no": opter}})
    assert await refused_unchanged(stranger, world, env) == "FSI_OPERATOR_UNKNOWN"


async def test_an_operator_other_than_the_sign_ins_is_refused(his: His, world: Engine) -> None:
    """Every later envelope's opter must be the one that signed in (sign_no is bound to it)."""
    settle = await open_visit(his)
    for opter in ("NOBODY", "OP0002"):
        env = his.envelope("2207", settle, opter=opter)
        assert await refused_unchanged(his, world, env) == "FSI_SIGN_NO_INVALID"


# --- bad envelopes: missing fields, wrong types, unknown infno --------------------------------


MISSING = {
    "infno": "FSI_ENVELOPE_INVALID",
    "msgid": "FSI_ENVELOPE_INVALID",
    "fixmedins_code": "FSI_ENVELOPE_INVALID",
    "opter": "FSI_ENVELOPE_INVALID",
    "dev_no": "FSI_ENVELOPE_INVALID",
    "input": "FSI_ENVELOPE_INVALID",
    "sign_no": "FSI_SIGN_NO_INVALID",
}


async def test_a_missing_field_is_refused(his: His, world: Engine) -> None:
    settle = await open_visit(his)
    cases = {}
    for name in MISSING:
        cases[name] = env = his.envelope("2207", settle)
        del env[name]
    assert await refusals(his, world, cases) == MISSING


WRONG_TYPES: list[tuple[str, Any]] = [
    ("infno", 2207),
    ("infno", "22O7"),
    ("msgid", 12345),
    ("msgid", "M" * 31),
    ("msgid", "msg-id"),
    ("fixmedins_code", 31000099001),
    ("opter", 1),
    ("opter", ""),
    ("dev_no", ["TEST-OK-01"]),
    ("opter_type", "4"),
    ("opter_type", True),
    ("sign_no", 123),
    ("insuplc_admdvs", "31000"),
    ("input", [1, 2]),
    ("input", None),
    ("inf_time", 20270115),
]


async def test_a_field_of_the_wrong_type_is_refused(his: His, world: Engine) -> None:
    settle = await open_visit(his)
    cases = {}
    for name, value in WRONG_TYPES:
        cases[f"{name}={value!r}"] = env = his.envelope("2207", settle)
        env[name] = value
    assert await refusals(his, world, cases) == every(cases, "FSI_ENVELOPE_INVALID")


WRONG_INPUT_TYPES: list[tuple[str, Any]] = [
    ("medfee_sumamt", True),
    ("medfee_sumamt", "12.345"),
    ("medfee_sumamt", "abc"),
    ("medfee_sumamt", -25),
    ("medfee_sumamt", [25]),
    ("mdtrt_id", None),
    ("mdtrt_id", 7),
    ("card_sn", "0" * 33),
]


async def test_an_input_field_of_the_wrong_type_is_refused(his: His, world: Engine) -> None:
    settle = await open_visit(his)
    cases = {
        f"{name}={value!r}": his.envelope("2207", {"data": {**settle["data"], name: value}})
        for name, value in WRONG_INPUT_TYPES
    }
    assert await refusals(his, world, cases) == every(cases, "FSI_ENVELOPE_INVALID")


BAD_LINES: list[tuple[dict[str, Any], str]] = [
    ({"cnt": "two"}, "FSI_ENVELOPE_INVALID"),
    ({"cnt": 1.5}, "FSI_ENVELOPE_INVALID"),
    ({"pric": None}, "FSI_ENVELOPE_INVALID"),
    ({"med_list_codg": ""}, "FSI_ENVELOPE_INVALID"),
    ({"det_item_fee_sumamt": "26.00"}, "FSI_AMOUNT_MISMATCH"),
    ({"med_list_codg": "NO-SUCH-CODE"}, "UNKNOWN_CATALOGUE_CODE"),
]


async def test_a_bad_fee_line_is_refused(his: His, world: Engine) -> None:
    settle = await open_visit(his)
    mdtrt_id = settle["data"]["mdtrt_id"]
    cases, expected = {}, {}
    for line, code in BAD_LINES:
        bad = {**LINE, "mdtrt_id": mdtrt_id, "chrg_bchno": "B2", "feedetl_sn": "9", **line}
        cases[repr(line)] = his.envelope("2204", {"feedetail": [bad]})
        expected[repr(line)] = code
    assert await refusals(his, world, cases) == expected


async def test_an_unknown_infno_is_refused(his: His, world: Engine) -> None:
    settle = await open_visit(his)
    cases = {infno: his.envelope(infno, settle) for infno in ("9999", "0000", "2001", "3203")}
    assert await refusals(his, world, cases) == every(cases, "FSI_INFNO_UNSUPPORTED")


# --- oversize input -------------------------------------------------------------------------------


async def test_an_oversize_body_is_an_http_413_and_writes_nothing(his: His, world: Engine) -> None:
    settle = await open_visit(his)
    padding = "x" * (1024 * 1024)
    env = his.envelope("2207", {"data": {**settle["data"], "memo": padding}})
    before = database(world)
    response = await his.post_raw(env)
    assert response.status == 413
    assert (await response.json())["code"] == "BODY_TOO_LARGE"
    assert database(world) == before


async def test_too_many_fee_lines_in_one_upload_are_refused(his: His, world: Engine) -> None:
    settle = await open_visit(his)
    mdtrt_id = settle["data"]["mdtrt_id"]
    lines = [
        {**LINE, "mdtrt_id": mdtrt_id, "chrg_bchno": "B2", "feedetl_sn": str(n)}
        for n in range(1001)
    ]
    env = his.envelope("2204", {"feedetail": lines})
    assert await refused_unchanged(his, world, env) == "FSI_ENVELOPE_INVALID"


# --- bad encryption (sm2-sm4) ---------------------------------------------------------------------


def _sealed_text(plain: bytes, key: bytes = SM4_KEY) -> str:
    return seal(plain, key)


BAD_INPUTS: dict[str, Callable[[bytes], Any]] = {
    "not-base64": lambda p: "%%% not base64 %%%",
    "another-key": lambda p: _sealed_text(p, bytes(16)),
    "truncated-base64": lambda p: _sealed_text(p)[:-4],
    "not-whole-blocks": lambda p: base64.b64encode(base64.b64decode(_sealed_text(p))[:-1]).decode(),
    "bad-padding": lambda p: base64.b64encode(
        sm4_ecb_encrypt(SM4_KEY, p.ljust(-(-len(p) // 16) * 16))
    ).decode(),
    "empty": lambda p: "",
    "input-in-clear": lambda p: {"data": json.loads(p)["data"]},
}


@pytest.mark.parametrize("profile", [SM2_SM4], indirect=True)
async def test_bad_encryption_is_refused(his: His, world: Engine) -> None:
    settle = await open_visit(his)
    plain = json.dumps(settle, ensure_ascii=False).encode()
    cases = {
        case: his.envelope("2207", settle, input=make_input(plain))
        for case, make_input in BAD_INPUTS.items()
    }
    assert await refusals(his, world, cases) == every(cases, "FSI_DECRYPT_FAILED")


@pytest.mark.parametrize("profile", [SM2_SM4], indirect=True)
async def test_a_signed_input_that_is_not_a_json_object_is_refused(his: His, world: Engine) -> None:
    await open_visit(his)
    cases = {
        repr(plain): his.envelope("2207", {}, input=seal(plain), cainfo=sign(plain))
        for plain in (b"not json {", b"[1, 2]", b"\xff\xfe")
    }
    assert await refusals(his, world, cases) == every(cases, "FSI_DECRYPT_FAILED")


# --- a wrong sign_no -----------------------------------------------------------------------------


async def _cancel_registration(his: His) -> tuple[dict[str, Any], str]:
    """A registration whose 2202 would change the database: the sign_no checks run on it."""
    registered = await his.ok("2201", {"data": {**card_input(), "begntime": f"{TODAY} 09:00:00"}})
    return {"data": {"mdtrt_id": registered["data"]["mdtrt_id"]}}, registered["data"]["mdtrt_id"]


async def test_a_sign_no_that_was_never_issued_is_refused(his: His, world: Engine) -> None:
    body, _ = await _cancel_registration(his)
    for sign_no in ("WRONG", his.sign_no.lower(), his.sign_no[:-1], ""):
        env = his.envelope("2202", body, sign_no=sign_no)
        assert await refused_unchanged(his, world, env) == "FSI_SIGN_NO_INVALID"


async def test_a_signed_out_sign_no_is_refused(his: His, world: Engine) -> None:
    body, _ = await _cancel_registration(his)
    signed_out = his.sign_no
    await his.ok("9002", {"signOut": {"sign_no": signed_out, "opter_no": his.opter}})
    env = his.envelope("2202", body, sign_no=signed_out)
    assert await refused_unchanged(his, world, env) == "FSI_SIGN_NO_INVALID"


@pytest.mark.parametrize("settings_overrides", [{"demo_world": "on", "fsi_sign_in_ttl_s": 600}])
async def test_an_expired_sign_no_is_refused(his: His, world: Engine, clock: FakeClock) -> None:
    body, _ = await _cancel_registration(his)
    clock.now_s += 600
    env = his.envelope("2202", body)
    assert await refused_unchanged(his, world, env) == "FSI_SIGN_NO_INVALID"


async def test_another_device_operator_or_institutions_sign_no_is_refused(
    his: His, world: Engine, client: Client, clock: FakeClock, profile: str
) -> None:
    body, _ = await _cancel_registration(his)
    other_device = his_for(profile, client, clock, dev_no=OFF_TERMINAL)
    other_operator = his_for(profile, client, clock, opter="OP0002")
    pharmacy = His(client, clock, fixmedins_code=PHARMACY)  # the pharmacy is on plain
    for other in (other_device, other_operator, pharmacy):
        foreign = await other.sign_in()
        env = his.envelope("2202", body, sign_no=foreign)
        assert await refused_unchanged(his, world, env) == "FSI_SIGN_NO_INVALID"


async def test_the_sign_no_checks_guard_a_transaction_that_would_write(
    his: His, world: Engine
) -> None:
    """The control for the sign_no tests above: with its own sign_no, the same 2202 cancels,
    and the whole-database comparison sees it."""
    body, _ = await _cancel_registration(his)
    before = database(world)
    assert await his.ok("2202", body) == {}
    assert database(world) != before
