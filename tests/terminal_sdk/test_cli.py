"""``ssc-terminal`` against the fake gateway: demo, settle, recovery by key, and the messages for
no card, wrong PIN, a card pulled mid-transaction, an unreachable gateway, no settlement."""

from __future__ import annotations

import io
import socket
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fake_gateway import DROP_AFTER_WORK, FakeGateway
from sdk_testkit import Pki

from sscard import demo as sd
from sscard.terminal_auth import demo_terminal
from terminal_sdk import MemoryReader, cli
from terminal_sdk.demo import PcscUnavailable

SEED = "terminal-sdk-cli"
CARD = 0  # third generation, active
LEGACY_CARD = 1


@dataclass
class Run:
    code: int
    out: str
    err: str


def run(*argv: str) -> Run:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(argv), stdout=out, stderr=err)
    return Run(code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="module")
def demo_world() -> Pki:
    pki = sd.demo_pki(SEED)
    return Pki(
        root=pki.root,
        ca=pki.issuing,
        card_key=sd.demo_card_key(SEED, CARD),
        card_cert=sd.demo_card_certificate(SEED, CARD, pki),
    )


def demo_fake(demo_world: Pki, *, settlement_routes: bool = True) -> FakeGateway:
    terminal_id, secret = demo_terminal(SEED, 3)
    return FakeGateway(
        demo_world,
        settlement_routes=settlement_routes,
        terminal_id=terminal_id,
        secret=secret,
        master_key=sd.legacy_master_key(SEED),
    ).start()


@pytest.fixture
def gateway(demo_world: Pki) -> Iterator[FakeGateway]:
    fake = demo_fake(demo_world)
    yield fake
    fake.stop()


def demo(gateway: FakeGateway, *extra: str) -> Run:
    return run("demo", "--gateway", gateway.url, "--terminal", "3", "--seed", SEED, *extra)


def test_demo_settles_and_prints_the_receipt(gateway: FakeGateway) -> None:
    result = demo(gateway, "--card", str(CARD), "--date", "2025-06-01")
    assert result.code == cli.EXIT_OK, result.err
    assert "card authenticated" in result.out
    assert "结算单 Settlement receipt" in result.out
    assert "个人现金支出 / Patient pays in cash: ¥" in result.out
    assert len(gateway.settlements) == 1


def test_demo_with_a_legacy_card(gateway: FakeGateway) -> None:
    result = demo(gateway, "--card", str(LEGACY_CARD), "--english-only")
    assert result.code == cli.EXIT_OK, result.err
    assert "generation 2" in result.out
    assert "医疗费总额" not in result.out


def test_demo_without_settlement_authenticates_then_says_so(demo_world: Pki) -> None:
    fake = demo_fake(demo_world, settlement_routes=False)
    try:
        result = demo(fake)
    finally:
        fake.stop()
    assert result.code == cli.EXIT_SETTLEMENT_UNAVAILABLE
    assert "card authenticated" in result.out
    assert "settlement unavailable" in result.err
    assert "does not offer settlement" in result.err


def test_demo_pcsc_falls_back_to_memory_and_says_so(
    gateway: FakeGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unavailable(*_: object, **__: object) -> None:
        raise PcscUnavailable("pcscd is not running, and only root may start it")

    monkeypatch.setattr("terminal_sdk.demo.serve_through_pcscd", unavailable)
    result = demo(gateway, "--reader", "pcsc")
    assert result.code == cli.EXIT_OK, result.err
    assert "FALLING BACK to the in-memory reader" in result.err
    assert "only root may start it" in result.err


def test_wrong_pin_is_explained(gateway: FakeGateway) -> None:
    result = demo(gateway, "--pin", "000000")
    assert result.code == cli.EXIT_FAILED
    assert "Wrong PIN. 2 tries left." in result.err
    assert "密码错误，还可尝试2次。" in result.err
    assert gateway.seen == []


def test_unreachable_gateway_is_explained() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = run("demo", "--gateway", f"http://127.0.0.1:{port}", "--seed", SEED)
    assert result.code == cli.EXIT_FAILED
    assert "The settlement gateway cannot be reached" in result.err
    assert f"gateway http://127.0.0.1:{port}" in result.err


def test_no_card_is_explained() -> None:
    result = run("read", "--reader", "memory", "--wait", "0")
    assert result.code == cli.EXIT_FAILED
    assert "No card in the reader. Insert the social security card." in result.err


def test_no_reader_is_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "MemoryReader", lambda: MemoryReader(names=()))
    result = run("read", "--reader", "memory", "--wait", "0")
    assert result.code == cli.EXIT_FAILED
    assert "No card reader found" in result.err


def test_card_pulled_mid_transaction_is_explained(
    gateway: FakeGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    readers: list[MemoryReader] = []

    def recording_reader() -> MemoryReader:
        readers.append(MemoryReader())
        return readers[-1]

    monkeypatch.setattr(cli, "MemoryReader", recording_reader)
    # The reader exists only once the command runs: look it up when the pre-settle arrives.
    gateway.script["POST /v1/settlements/pre-settle"] = [lambda: readers[0].remove()]  # noqa: PLW0108
    result = demo(gateway)
    assert result.code == cli.EXIT_FAILED
    assert "The card was removed during the transaction" in result.err
    assert gateway.settlements == {}


def test_read_masks_personal_data_unless_asked(gateway: FakeGateway) -> None:
    card = sd.demo_card(SEED, CARD)
    masked = run("read", "--reader", "memory", "--demo-card", str(CARD), "--seed", SEED)
    assert masked.code == cli.EXIT_OK
    assert card.identity.citizen_id not in masked.out
    full = run("read", "--reader", "memory", "--demo-card", str(CARD), "--seed", SEED, "--full")
    assert card.identity.citizen_id in full.out


def test_settle_outcome_unknown_then_recovered_with_the_key(gateway: FakeGateway) -> None:
    gateway.script["POST /v1/settlements"] = [DROP_AFTER_WORK] * 3
    argv = [
        "settle", "--gateway", gateway.url, "--terminal", "3", "--seed", SEED,
        "--reader", "memory", "--demo-card", str(CARD), "--pin", sd.DEMO_PIN,
        "--line", "DEMO-A-002:1:2500", "--date", "2025-06-01",
    ]  # fmt: skip
    lost = run(*argv)
    assert lost.code == cli.EXIT_OUTCOME_UNKNOWN
    key = lost.err.split("--idempotency-key ")[1].split()[0]
    assert "may have gone through" in lost.err
    recovered = run(*argv, "--idempotency-key", key)
    assert recovered.code == cli.EXIT_OK, recovered.err
    assert "S00000001" in recovered.out
    assert len(gateway.settlements) == 1


def test_auth_and_cancel_commands(gateway: FakeGateway) -> None:
    common = ["--gateway", gateway.url, "--terminal", "3", "--seed", SEED]
    auth = run("auth", *common, "--reader", "memory", "--demo-card", str(CARD))
    assert auth.code == cli.EXIT_OK, auth.err
    gateway.settlements["S9"] = {
        "setl_id": "S9", "status": "settled", "medfee_sumamt": 100, "fund_pay_sumamt": 0,
        "acct_pay": 0, "psn_cash_pay": 100,
    }  # fmt: skip
    cancelled = run("cancel", *common, "S9", "--reason", "wrong patient")
    assert cancelled.code == cli.EXIT_OK, cancelled.err
    assert "cancelled: S9" in cancelled.out


def test_usage_errors() -> None:
    assert run("readers", "--reader", "memory").out.startswith("Memory Reader 0")
    bad_line = run("settle", "--gateway", "http://x", "--terminal", "0", "--line", "A:1")
    assert bad_line.code == cli.EXIT_USAGE
    assert "CODE:QUANTITY:UNIT_PRICE_FEN" in bad_line.err
    no_terminal = run("auth", "--gateway", "http://x")
    assert no_terminal.code == cli.EXIT_USAGE
    assert "--terminal N" in no_terminal.err
