"""``ssc-terminal his-card`` / ``read_his_card`` against the in-process fake gateway with the
in-memory reader: the line and the JSON an HIS reads, and the personal data kept out of reprs.
(Through pcscd + vpcd and a real gateway: tests/integration/test_his_card_pcsc.py.)"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator

import pytest
from fake_gateway import FakeGateway
from sdk_testkit import Pki
from test_cli import CARD, SEED, demo_fake, demo_world, run

from sscard import demo as sd
from sscard.terminal_auth import demo_terminal
from terminal_sdk import cli
from terminal_sdk.his_card import BEIJING, HisCard

__all__ = ["demo_world"]  # a fixture, used by name


@pytest.fixture
def gateway(demo_world: Pki) -> Iterator[FakeGateway]:
    fake = demo_fake(demo_world)
    yield fake
    fake.stop()


def his_card(gateway: FakeGateway, *extra: str) -> str:
    result = run("his-card", "--gateway", gateway.url, "--terminal", "3", "--seed", SEED,
                 "--reader", "memory", "--demo-card", str(CARD), *extra)  # fmt: skip
    assert result.code == cli.EXIT_OK, result.err
    assert "in-memory reader" in result.err  # status on stderr: stdout is the HIS's
    return result.out


def test_the_line_is_the_card_and_the_device(gateway: FakeGateway) -> None:
    out = his_card(gateway)
    assert out.count("\n") == 1
    fields = out.strip().split("|")
    assert fields[-1] == ""
    identity = sd.demo_card(SEED, CARD).identity
    assert fields[:4] == [
        identity.card_no,
        identity.card_sn.hex.upper(),
        identity.name,
        identity.citizen_id,
    ]
    dt.datetime.strptime(fields[4], "%Y-%m-%d %H:%M:%S")
    assert fields[5] == demo_terminal(SEED, 3)[0]


def test_json_names_the_fields_as_the_envelope_does(gateway: FakeGateway) -> None:
    printed = json.loads(his_card(gateway, "--json"))
    identity = sd.demo_card(SEED, CARD).identity
    assert printed["mdtrt_cert_type"] == "03"
    assert (printed["mdtrt_cert_no"], printed["card_sn"]) == (
        identity.card_no,
        identity.card_sn.hex.upper(),
    )
    assert (printed["psn_name"], printed["certno"]) == (identity.name, identity.citizen_id)
    assert printed["dev_no"] == demo_terminal(SEED, 3)[0]
    assert printed["generation"] == 3
    assert printed["expires_in_s"] > 0


def _read(**over: object) -> HisCard:
    fields: dict[str, object] = {
        "card_no": "A12345678",
        "card_sn": "310000D15600000503000000000000AB",
        "name": "张三",
        "citizen_id": "11010519491231002X",
        "generation": 3,
        "dev_no": "H31000000001-01",
        "expires_at": dt.datetime(2027, 1, 15, 1, 5, tzinfo=dt.UTC),
        "expires_in_s": 300,
    }
    fields.update(over)
    return HisCard(**fields)  # type: ignore[arg-type]


def test_the_expiry_is_beijing_time_and_a_separator_in_a_field_is_refused() -> None:
    assert _read().to_line() == (
        "A12345678|310000D15600000503000000000000AB|张三|11010519491231002X|"
        "2027-01-15 09:05:00|H31000000001-01|"
    )
    assert _read().expires_at.astimezone(BEIJING).hour == 9
    with pytest.raises(ValueError, match="contains"):
        _read(name="张|三").to_line()


def test_the_repr_masks_personal_data() -> None:
    shown = repr(_read())
    assert "11010519491231002X" not in shown
    assert "张三" not in shown
    assert "A12345678" not in shown
    assert "310000D15600000503000000000000AB" in shown  # the card_sn is not personal data
