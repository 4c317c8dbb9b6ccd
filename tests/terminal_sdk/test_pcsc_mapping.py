"""PcscReader's mapping of PC/SC return codes to typed errors, on a fake ``smartcard.scard``.

The real stack (pcscd + vpcd) is exercised in tests/integration/test_terminal_sdk_pcsc.py;
return codes such as a sharing violation or a removed card in the middle of SCardTransmit are
easier to produce here.
"""

from __future__ import annotations

from typing import Any

import pytest
from smartcard import scard as real

from terminal_sdk import (
    CardInterface,
    CardRemoved,
    NoCard,
    NoReader,
    PcscReader,
    Reader,
    ReaderBusy,
    TransmitFailed,
)
from terminal_sdk.readers import pcsc

READER = "ACS ACR39U ICC Reader 00 00"
ATR = bytes.fromhex("3B8180018080")
SUCCESS: int = real.SCARD_S_SUCCESS


class FakeScard:
    """Just enough of smartcard.scard; attributes not set here come from the real module."""

    def __init__(self) -> None:
        self.readers: list[str] = [READER]
        self.card_present = True
        self.connect_rv = real.SCARD_S_SUCCESS
        self.transmit_rv = real.SCARD_S_SUCCESS
        self.list_rv = real.SCARD_S_SUCCESS
        self.establish_rv = real.SCARD_S_SUCCESS
        self.disconnected: list[int] = []
        self.connect_mode: int | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(real, name)

    def SCardEstablishContext(self, scope: int) -> tuple[int, int]:
        return self.establish_rv, 1

    def SCardReleaseContext(self, context: int) -> int:
        return SUCCESS

    def SCardListReaders(self, context: int, groups: list[str]) -> tuple[int, list[str]]:
        if self.list_rv != real.SCARD_S_SUCCESS:
            return self.list_rv, []
        if not self.readers:
            return real.SCARD_E_NO_READERS_AVAILABLE, []
        return real.SCARD_S_SUCCESS, list(self.readers)

    def SCardGetStatusChange(
        self, context: int, timeout: int, states: list[tuple[str, int]]
    ) -> tuple[int, list[tuple[str, int, list[int]]]]:
        result = []
        for name, _ in states:
            if self.card_present:
                result.append(
                    (name, real.SCARD_STATE_PRESENT | real.SCARD_STATE_CHANGED, list(ATR))
                )
            else:
                result.append((name, real.SCARD_STATE_EMPTY, []))
        if not self.card_present and all(state != real.SCARD_STATE_UNAWARE for _, state in states):
            return real.SCARD_E_TIMEOUT, result
        return real.SCARD_S_SUCCESS, result

    def SCardConnect(
        self, context: int, reader: str, mode: int, protocols: int
    ) -> tuple[int, int, int]:
        self.connect_mode = mode
        if reader not in self.readers:
            return real.SCARD_E_UNKNOWN_READER, 0, 0
        return self.connect_rv, 7, real.SCARD_PROTOCOL_T1

    def SCardStatus(self, card: int) -> tuple[int, str, int, int, list[int]]:
        return (
            real.SCARD_S_SUCCESS,
            READER,
            real.SCARD_STATE_PRESENT,
            real.SCARD_PROTOCOL_T1,
            list(ATR),
        )

    def SCardTransmit(self, card: int, protocol: int, apdu: list[int]) -> tuple[int, list[int]]:
        if self.transmit_rv != real.SCARD_S_SUCCESS:
            return self.transmit_rv, []
        return real.SCARD_S_SUCCESS, [0x90, 0x00]

    def SCardDisconnect(self, card: int, disposition: int) -> int:
        self.disconnected.append(disposition)
        return SUCCESS


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeScard:
    scard = FakeScard()
    monkeypatch.setattr(pcsc, "_scard", lambda: scard)
    return scard


def test_connect_is_exclusive_and_disconnect_resets(fake: FakeScard) -> None:
    reader = PcscReader()
    assert isinstance(reader, Reader)
    info = reader.connect()
    assert (info.reader, info.atr, info.protocol) == (READER, ATR, 1)
    assert info.interface is CardInterface.CONTACT
    assert fake.connect_mode == real.SCARD_SHARE_EXCLUSIVE
    assert reader.transmit(b"\x00\xa4\x04\x00") == b"\x90\x00"
    reader.close()
    assert fake.disconnected == [real.SCARD_RESET_CARD]
    reader.close()  # idempotent
    assert fake.disconnected == [real.SCARD_RESET_CARD]


def test_list_and_wait(fake: FakeScard) -> None:
    reader = PcscReader()
    [listed] = reader.list_readers()
    assert (listed.name, listed.atr) == (READER, ATR)
    assert reader.wait_for_card(timeout_s=0.1).reader == READER
    fake.card_present = False
    assert not reader.list_readers()[0].card_present
    with pytest.raises(NoCard):
        reader.wait_for_card(timeout_s=0.05)
    with pytest.raises(NoReader):
        reader.wait_for_card(timeout_s=0.05, reader="Other reader")
    fake.readers = []
    assert reader.list_readers() == []
    with pytest.raises(NoReader):
        reader.wait_for_card(timeout_s=0.05)
    with pytest.raises(NoReader):
        reader.connect()


@pytest.mark.parametrize(
    ("rv", "error"),
    [
        (real.SCARD_E_SHARING_VIOLATION, ReaderBusy),
        (real.SCARD_E_NO_SMARTCARD, NoCard),
        (real.SCARD_W_REMOVED_CARD, NoCard),
        (real.SCARD_E_UNKNOWN_READER, NoReader),
        (real.SCARD_W_UNRESPONSIVE_CARD, TransmitFailed),
        (real.SCARD_E_NO_SERVICE, NoReader),
    ],
)
def test_connect_errors(fake: FakeScard, rv: int, error: type[Exception]) -> None:
    fake.connect_rv = rv
    with pytest.raises(error) as raised:
        PcscReader().connect(READER)
    assert "0x" in str(getattr(raised.value, "detail", ""))


@pytest.mark.parametrize(
    ("rv", "error", "words"),
    [
        (real.SCARD_W_REMOVED_CARD, CardRemoved, "removed during the transaction"),
        (real.SCARD_W_RESET_CARD, CardRemoved, "reset during the transaction"),
        (real.SCARD_E_READER_UNAVAILABLE, NoReader, "reader was disconnected"),
        (real.SCARD_F_COMM_ERROR, TransmitFailed, "does not answer"),
        (real.SCARD_E_SERVICE_STOPPED, NoReader, "service is not running"),
    ],
)
def test_transmit_errors(fake: FakeScard, rv: int, error: type[Exception], words: str) -> None:
    reader = PcscReader()
    reader.connect()
    fake.transmit_rv = rv
    with pytest.raises(error, match=words):
        reader.transmit(b"\x00\xb0\x00\x00\x00")


def test_transmit_without_connection(fake: FakeScard) -> None:
    with pytest.raises(NoCard):
        PcscReader().transmit(b"\x00\xb0\x00\x00\x00")


def test_service_down(fake: FakeScard) -> None:
    fake.establish_rv = real.SCARD_E_NO_SERVICE
    with pytest.raises(NoReader, match="service is not running") as down:
        PcscReader().list_readers()
    assert down.value.detail is not None
    assert "SCardEstablishContext" in down.value.detail
