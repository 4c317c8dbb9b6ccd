"""Software cards through the real PC/SC stack: pyscard -> pcscd -> vpcd -> VirtualCardSlot.

Needs pcscd and vsmartcard-vpcd (README bootstrap). Under CI=true a missing or broken pcscd
FAILS these tests; elsewhere they are skipped with the reason.
"""

from __future__ import annotations

import datetime as dt
import socket
import threading
from collections.abc import Iterator

import pytest
from cardkit import (
    CARD_SN,
    LEGACY_SN,
    MASTER_KEY,
    PIN,
    WRONG_PIN,
    Pki,
    make_identity,
    make_pki,
)
from cikit import fail_or_skip
from pcscd import (
    PcscdSession,
    PcscdUnavailable,
    VpcdReader,
    claim_vpcd_slot,
    pcscd_with_vpcd,
    wait_for_card,
)
from smartcard.CardConnection import CardConnection
from smartcard.Exceptions import CardConnectionException
from smartcard.System import readers

from sscard import apdu, layout
from sscard.certs import (
    load_der,
    verify_chain,
)
from sscard.crypto import SignatureInvalid, sm2_verify
from sscard.layout import CardIdentity
from sscard.softcard import (
    LegacyCard,
    ThirdGenCard,
    decode_sign_public_key_file,
    diversify_card_key,
    legacy_cryptogram,
    make_legacy_card,
    make_third_gen_card,
)
from sscard.vpcd import (
    FrameDecoder,
    VirtualCardSlot,
    VpcdConnectError,
    VpcdControl,
    VpcdError,
    encode_frame,
)

pytestmark = pytest.mark.integration

TERMINAL_ID = "POS-INTEG-01"
NOW = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def pki() -> Pki:
    return make_pki()


@pytest.fixture(scope="module")
def pcscd_session() -> Iterator[PcscdSession]:
    try:
        with pcscd_with_vpcd() as session:
            yield session
    except PcscdUnavailable as exc:
        fail_or_skip(f"pcscd with vpcd is not available here: {exc}")


@pytest.fixture
def reader(pcscd_session: PcscdSession) -> Iterator[VpcdReader]:
    with claim_vpcd_slot(pcscd_session.readers) as claimed:
        yield claimed


@pytest.fixture
def slot(reader: VpcdReader) -> Iterator[VirtualCardSlot]:
    with VirtualCardSlot(port=reader.port) as card_slot:
        yield card_slot
        assert card_slot.card_faults == 0


class Terminal:
    """The least a reader program does over pyscard: resolve 61xx and 6Cxx (pyscard does not)."""

    def __init__(self, reader_name: str) -> None:
        matches = [r for r in readers() if str(r) == reader_name]
        assert matches, f"{reader_name} not listed by pyscard"
        self.connection = matches[0].createConnection()
        self.connection.connect()
        self.trace: list[str] = []

    def close(self) -> None:
        # Explicitly: pyscard's __del__ would otherwise release the context after pcscd stops.
        self.connection.release()

    def raw(self, command: apdu.CommandApdu) -> apdu.ResponseApdu:
        data, sw1, sw2 = self.connection.transmit(list(command.to_bytes()))
        self.trace.append(f"{command.ins:02X}->{sw1:02X}{sw2:02X}")  # no data: PINs
        return apdu.ResponseApdu(bytes(data), sw1, sw2)

    def send(self, command: apdu.CommandApdu) -> apdu.ResponseApdu:
        response = self.raw(command)
        if response.wrong_le_exact is not None:
            response = self.raw(command.with_le(response.wrong_le_exact))
        data = response.data
        while response.available_length is not None:
            response = self.raw(apdu.get_response(response.available_length & 0xFF))
            data += response.data
        return apdu.ResponseApdu(data, response.sw1, response.sw2)

    def ok(self, command: apdu.CommandApdu) -> bytes:
        response = self.send(command)
        apdu.check_sw(response.sw)
        return response.data

    def read_identity(self) -> CardIdentity:
        self.ok(apdu.select_aid(layout.SSSE_AID))
        self.ok(apdu.select_file(layout.EF05_FID))
        ef05 = {tag: self.ok(apdu.read_record(tag)) for tag in layout.EF05_TAGS}
        self.ok(apdu.select_file(layout.EF06_FID))
        ef06 = {tag: self.ok(apdu.read_record(tag, by_identifier=True)) for tag in layout.EF06_TAGS}
        return layout.decode_identity(ef05, ef06)

    def read_binary_all(self) -> bytes:
        content = b""
        while True:
            response = self.send(apdu.read_binary(len(content), 0))
            if response.sw == apdu.SW_WRONG_DATA_PARAMETERS:  # 6B00: offset past the end
                return content
            apdu.check_sw(response.sw)
            content += response.data
            if len(response.data) < 256:
                return content


@pytest.fixture
def terminal_factory() -> Iterator[list[Terminal]]:
    opened: list[Terminal] = []
    yield opened
    for terminal in opened:
        terminal.close()


def connect(opened: list[Terminal], reader_name: str) -> Terminal:
    terminal = Terminal(reader_name)
    opened.append(terminal)
    return terminal


def third_gen_card(pki: Pki, *, t0_get_response: bool = False) -> ThirdGenCard:
    return make_third_gen_card(
        make_identity(CARD_SN, "3.00"),
        pki.card_key,
        pki.card_cert.der,
        PIN,
        t0_get_response=t0_get_response,
    )


def legacy_card() -> LegacyCard:
    return make_legacy_card(make_identity(LEGACY_SN, "2.00"), MASTER_KEY, PIN)


def test_third_gen_card_then_legacy_card_through_pcscd(
    pki: Pki,
    reader: VpcdReader,
    slot: VirtualCardSlot,
    terminal_factory: list[Terminal],
) -> None:
    card = third_gen_card(pki)
    slot.insert(card)
    assert wait_for_card(reader.name, present=True) == card.atr
    terminal = connect(terminal_factory, reader.name)

    # identity: EF05 / EF06
    identity = terminal.read_identity()
    assert identity == card.identity
    assert identity.generation == 3

    # PIN: right, wrong with tries left, blocked (on a second card, to keep this one usable)
    terminal.ok(apdu.verify_pin(PIN))
    with pytest.raises(apdu.WrongPin) as wrong:
        terminal.ok(apdu.verify_pin(WRONG_PIN))
    assert wrong.value.tries_left == 2
    terminal.ok(apdu.verify_pin(PIN))

    # certificate and public key, then a signature that verifies against the chain
    terminal.ok(apdu.select_aid(layout.PKI_AID))
    terminal.ok(apdu.select_aid(layout.CERT_ADF_AID))
    terminal.ok(apdu.select_file(layout.EF_SIGN_PUBLIC_KEY_FID))
    public_key = decode_sign_public_key_file(terminal.read_binary_all())
    terminal.ok(apdu.select_file(layout.EF_SIGN_CERT_FID))
    cert = load_der(terminal.read_binary_all())
    verified = verify_chain(cert, [pki.ca], pki.root, at=NOW)
    assert verified.card_sn == identity.card_sn.hex
    assert verified.public_key == public_key

    challenge = bytes(range(0x40, 0x50))
    message = layout.card_auth_message(challenge, identity.card_sn, TERMINAL_ID)
    signature = terminal.ok(apdu.internal_authenticate(message))
    sm2_verify(verified.public_key, message, signature)
    with pytest.raises(SignatureInvalid):
        sm2_verify(verified.public_key, message[:-1] + b"X", signature)

    # pull the card: the open connection sees it gone
    terminal.close()
    terminal_factory.remove(terminal)
    slot.remove()
    wait_for_card(reader.name, present=False)

    # swap in a legacy card and read it the same way
    legacy = legacy_card()
    slot.insert(legacy)
    assert wait_for_card(reader.name, present=True, atr=legacy.atr) == legacy.atr
    terminal = connect(terminal_factory, reader.name)
    legacy_identity = terminal.read_identity()
    assert legacy_identity.spec_version == "2.00"
    assert legacy_identity.card_sn == legacy.card_sn
    with pytest.raises(apdu.FileNotFound):
        terminal.ok(apdu.select_aid(layout.PKI_AID))
    terminal.ok(apdu.select_aid(layout.SSSE_AID))
    challenge8 = terminal.ok(apdu.get_challenge(8))
    cryptogram = terminal.ok(apdu.internal_authenticate(challenge8))
    card_key = diversify_card_key(MASTER_KEY, legacy_identity.card_sn)
    assert cryptogram == legacy_cryptogram(card_key, challenge8, legacy_identity.card_sn)


def test_pin_blocks_through_pcscd(
    pki: Pki, reader: VpcdReader, slot: VirtualCardSlot, terminal_factory: list[Terminal]
) -> None:
    card = third_gen_card(pki)
    slot.insert(card)
    wait_for_card(reader.name, present=True, atr=card.atr)
    terminal = connect(terminal_factory, reader.name)
    terminal.ok(apdu.select_aid(layout.SSSE_AID))
    tries = []
    for _ in range(3):
        with pytest.raises(apdu.WrongPin) as wrong:
            terminal.ok(apdu.verify_pin(WRONG_PIN))
        tries.append(wrong.value.tries_left)
    assert tries == [2, 1, 0]
    with pytest.raises(apdu.PinBlocked):
        terminal.ok(apdu.verify_pin(PIN))
    # a reconnect (card reset by pcscd) does not unblock it: the counter is persistent
    terminal.connection.disconnect()
    terminal.connection.connect()
    with pytest.raises(apdu.PinBlocked):
        terminal.ok(apdu.verify_pin(PIN))
    assert "802613" not in " ".join(terminal.trace)


def test_t0_card_answers_61xx_through_pcscd(
    pki: Pki, reader: VpcdReader, slot: VirtualCardSlot, terminal_factory: list[Terminal]
) -> None:
    card = third_gen_card(pki, t0_get_response=True)
    slot.insert(card)
    wait_for_card(reader.name, present=True, atr=card.atr)
    terminal = connect(terminal_factory, reader.name)
    assert terminal.connection.getProtocol() == CardConnection.T0_protocol
    first = terminal.raw(apdu.select_aid(layout.SSSE_AID))
    assert first.available_length == 2 + 2 + len(layout.SSSE_AID)
    assert terminal.ok(apdu.get_response(first.sw2))[4:] == layout.SSSE_AID
    assert terminal.read_identity() == card.identity
    terminal.ok(apdu.select_aid(layout.PKI_AID))
    terminal.ok(apdu.select_aid(layout.CERT_ADF_AID))
    terminal.ok(apdu.select_file(layout.EF_SIGN_CERT_FID))
    assert terminal.read_binary_all() == pki.card_cert.der


def test_removing_the_card_breaks_the_open_connection(
    pki: Pki, reader: VpcdReader, slot: VirtualCardSlot, terminal_factory: list[Terminal]
) -> None:
    card = third_gen_card(pki)
    slot.insert(card)
    wait_for_card(reader.name, present=True, atr=card.atr)
    terminal = connect(terminal_factory, reader.name)
    terminal.ok(apdu.select_aid(layout.SSSE_AID))
    slot.remove()
    wait_for_card(reader.name, present=False)
    with pytest.raises(CardConnectionException):
        terminal.raw(apdu.select_aid(layout.SSSE_AID))


# -- the slot against a stand-in for the vpcd driver (no pcscd needed) -------------------------


class FakeDriver:
    """Listens like vpcd does and speaks its protocol from the driver's side."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.conn: socket.socket | None = None
        self.decoder = FrameDecoder()

    def accept(self) -> None:
        self.server.settimeout(5)
        self.conn, _ = self.server.accept()
        self.conn.settimeout(5)

    def request(self, payload: bytes) -> bytes:
        assert self.conn is not None
        self.conn.sendall(encode_frame(payload))
        while True:
            frames = self.decoder.feed(self.conn.recv(4096))
            if frames:
                assert len(frames) == 1
                return frames[0]

    def notify(self, payload: bytes) -> None:
        assert self.conn is not None
        self.conn.sendall(encode_frame(payload))

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.server.close()


@pytest.fixture
def driver() -> Iterator[FakeDriver]:
    fake = FakeDriver()
    yield fake
    fake.close()


def test_slot_protocol_against_a_fake_driver(pki: Pki, driver: FakeDriver) -> None:
    card = third_gen_card(pki)
    with VirtualCardSlot(port=driver.port) as slot:
        slot.insert(card)
        driver.accept()
        assert driver.request(bytes([VpcdControl.GET_ATR])) == card.atr
        assert slot.wait_until_polled(1)
        driver.notify(bytes([VpcdControl.POWER_ON]))
        answer = driver.request(apdu.select_aid(layout.SSSE_AID).to_bytes())
        assert answer[-2:] == b"\x90\x00"
        with pytest.raises(VpcdError, match="already"):
            slot.insert(legacy_card())
        assert slot.remove() is card
        assert slot.remove() is None  # idempotent
        assert driver.conn is not None
        assert driver.conn.recv(1) == b""  # the driver sees the card go


def test_slot_drops_the_line_on_garbage(pki: Pki, driver: FakeDriver) -> None:
    with VirtualCardSlot(port=driver.port) as slot:
        slot.insert(third_gen_card(pki))
        driver.accept()
        driver.notify(b"\x03")  # no such control message
        done = threading.Event()
        for _ in range(100):
            if not slot.connected:
                done.set()
                break
            done.wait(0.02)
        assert done.is_set()


def test_slot_reports_a_missing_driver() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    slot = VirtualCardSlot(port=free_port, connect_timeout_s=1)
    with pytest.raises(VpcdConnectError, match="pcscd"):
        slot.insert(legacy_card())
    assert slot.card is None
