"""``ssc-terminal his-card`` and :func:`terminal_sdk.his_card.read_his_card` through the real
PC/SC stack (pyscard -> pcscd -> vpcd -> software card) against a real ``gateway serve``: what
they print is what an HIS needs on the national door, shown by using it there (1101 at the
device answers; at another device of the same hospital the card is not present).

Needs pcscd and vsmartcard-vpcd (README bootstrap). Under CI a missing or broken pcscd FAILS
these tests; elsewhere they are skipped with the reason (tests/cikit.py). Run them under
``flock /tmp/pcscd.lock`` beside other PC/SC tests.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from cikit import fail_or_skip
from pcscd import PcscdUnavailable, pcscd_with_vpcd
from served_gateway import ROOT, ServedGateway, served_gateway

from sscard import demo as sd
from sscard.terminal_auth import demo_institution_code, demo_terminal
from terminal_sdk import PcscReader, SocialSecurityCard, SyncGatewayClient
from terminal_sdk.demo import PcscUnavailable, demo_software_card, serve_through_pcscd
from terminal_sdk.his_card import BEIJING, HisCard, read_his_card

pytestmark = pytest.mark.integration

SEED = "his-card-itest"
TTL_S = 300
FSI_PATH = "/fsi/api/rsfComIfsService/callService"
TERMINAL = 6  # demo terminal 6: the first terminal of demo hospital 3
OTHER_TERMINAL = 7  # the same hospital's second terminal
HOSPITAL = demo_institution_code(TERMINAL // 2)
CARD = 0  # holder 0's third-generation card, active


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedGateway]:
    with served_gateway(
        tmp_path_factory.mktemp("gateway"),
        seed=SEED,
        settings={"card_session_ttl_s": str(TTL_S)},
    ) as served:
        yield served


@pytest.fixture
def pcscd() -> Iterator[None]:
    try:
        with pcscd_with_vpcd() as session:
            assert session.readers
            yield
    except PcscdUnavailable as exc:
        fail_or_skip(f"pcscd with vpcd is not available here: {exc}")


def _cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "terminal_sdk", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )


def _his_card(gateway: ServedGateway, *extra: str) -> subprocess.CompletedProcess[str]:
    result = _cli(
        "his-card", "--gateway", gateway.url, "--reader", "pcsc", "--terminal", str(TERMINAL),
        "--demo-card", str(CARD), "--seed", SEED, "--pin", sd.DEMO_PIN, *extra,
    )  # fmt: skip
    report = f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}\ngateway:\n{gateway.log()}"
    assert result.returncode == 0, report
    assert "via pcscd and vpcd" in result.stderr, report  # status on stderr, not in the line
    assert "FALLING BACK" not in result.stderr, report
    return result


def _envelope(infno: str, body: dict[str, Any], *, dev_no: str, sign_no: str) -> bytes:
    now = dt.datetime.now(BEIJING)
    return json.dumps(
        {
            "infno": infno,
            "msgid": f"{HOSPITAL}{now:%Y%m%d%H%M%S}{time.monotonic_ns() % 10000:04d}",
            "fixmedins_code": HOSPITAL,
            "opter": "OP0001",
            "dev_no": dev_no,
            "sign_no": sign_no,
            "inf_time": f"{now:%Y-%m-%d %H:%M:%S}",
            "input": body,
        }
    ).encode()


def _call(gateway: ServedGateway, infno: str, body: dict[str, Any], **where: str) -> Any:
    request = urllib.request.Request(
        gateway.url + FSI_PATH,
        data=_envelope(infno, body, **where),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200
        return json.loads(answer.read())


def _person_at(gateway: ServedGateway, device: str, card_no: str, card_sn: str) -> Any:
    """1101 by an HIS signed in at ``device`` for the card it read."""
    signed = _call(gateway, "9001", {"signIn": {"opter_no": "OP0001"}}, dev_no=device, sign_no="")
    assert signed["infcode"] == 0, signed
    sign_no = signed["output"]["signinoutb"]["sign_no"]
    card = {"mdtrt_cert_type": "03", "mdtrt_cert_no": card_no, "card_sn": card_sn}
    return _call(gateway, "1101", {"data": card}, dev_no=device, sign_no=sign_no)


def test_his_card_prints_the_line_the_his_passes_on(gateway: ServedGateway, pcscd: None) -> None:
    started = time.time()
    result = _his_card(gateway)
    line = result.stdout.strip()
    assert "\n" not in line  # one line: what the HIS reads
    assert line.endswith("|")
    card_no, card_sn, name, citizen_id, expiry, dev_no, rest = line.split("|")
    assert rest == ""
    identity = sd.demo_card(SEED, CARD).identity
    assert (card_no, card_sn, name, citizen_id) == (
        identity.card_no,
        identity.card_sn.hex.upper(),
        identity.name,
        identity.citizen_id,
    )
    assert dev_no == demo_terminal(SEED, TERMINAL)[0]
    expires = dt.datetime.strptime(expiry, "%Y-%m-%d %H:%M:%S").replace(tzinfo=BEIJING)
    assert started + TTL_S - 60 <= expires.timestamp() <= time.time() + TTL_S + 1
    # What it printed is what the door needs: the card is present at that device ...
    answer = _person_at(gateway, dev_no, card_no, card_sn)
    assert answer["infcode"] == 0, answer
    assert answer["output"]["baseinfo"]["certno"] == citizen_id
    # ... and only there: another terminal of the same hospital never read it.
    elsewhere = _person_at(gateway, demo_terminal(SEED, OTHER_TERMINAL)[0], card_no, card_sn)
    assert elsewhere["infcode"] == -1
    assert elsewhere["err_msg"].startswith("[FSI_CARD_NOT_PRESENT]")


def test_his_card_json(gateway: ServedGateway, pcscd: None) -> None:
    printed = json.loads(_his_card(gateway, "--json").stdout)
    identity = sd.demo_card(SEED, CARD).identity
    assert printed["mdtrt_cert_type"] == "03"
    assert printed["mdtrt_cert_no"] == identity.card_no
    assert printed["card_sn"] == identity.card_sn.hex.upper()
    assert printed["psn_name"] == identity.name
    assert printed["certno"] == identity.citizen_id
    assert printed["generation"] == 3
    assert printed["dev_no"] == demo_terminal(SEED, TERMINAL)[0]
    assert printed["expires_in_s"] == TTL_S
    dt.datetime.strptime(printed["expires_at"], "%Y-%m-%d %H:%M:%S")


def test_read_his_card_through_a_pcsc_reader(gateway: ServedGateway, pcscd: None) -> None:
    terminal_id, secret = demo_terminal(SEED, TERMINAL)
    try:
        with (
            serve_through_pcscd(demo_software_card(SEED, CARD)) as (reader_name, _started),
            SyncGatewayClient(gateway.url, terminal_id, secret) as client,
        ):
            reader = PcscReader()
            try:
                info = reader.wait_for_card(timeout_s=10, reader=reader_name)
                card = SocialSecurityCard.connect(reader, info.reader)
                read = read_his_card(client, card, clock=lambda: 1_800_000_000.0)
            finally:
                reader.close()
    except PcscUnavailable as exc:
        fail_or_skip(f"no free vpcd slot: {exc}")
    assert isinstance(read, HisCard)
    assert read.card_sn == sd.demo_card(SEED, CARD).card_sn.upper()
    assert read.dev_no == terminal_id
    assert read.expires_in_s == TTL_S
    # The expiry is the clock at the answer plus the lifetime granted, in Beijing time.
    assert read.fields()[4] == "2027-01-15 16:05:00"  # 1_800_000_000 = 2027-01-15 08:00:00Z
    shown = repr(read)
    assert sd.demo_card(SEED, CARD).identity.citizen_id not in shown  # masked
    assert sd.demo_card(SEED, CARD).identity.name not in shown
