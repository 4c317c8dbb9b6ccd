"""Helpers for the terminal_sdk tests: a small card world and cards that misbehave on purpose."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from sscard.certs import Certificate, build_card_certificate, build_issuing_ca, build_root_ca
from sscard.crypto import SM2PrivateKey
from sscard.layout import PKI_AID, CardIdentity, CardSn, Gender, HolderData, IssuerData
from sscard.softcard import LegacyCard, ThirdGenCard, make_legacy_card, make_third_gen_card
from sscard.vpcd import VirtualCard
from terminal_sdk.readers.base import CardInfo, CardInterface

PIN = "802613"
WRONG_PIN = "802614"
CARD_SN = "310000D1560000050123456789ABCDEF"
LEGACY_SN = "310000D15600000500000000000A1B2C"
MASTER_KEY = bytes.fromhex("00112233445566778899AABBCCDDEEFF")
TERMINAL_ID = "POS-SDK-01"
CITIZEN_ID = "11010519491231002X"
NAME = "张三丰"
T0 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
T1 = dt.datetime(2034, 1, 1, tzinfo=dt.UTC)
NOW = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)


def make_identity(card_sn: str, spec_version: str) -> CardIdentity:
    issuer = IssuerData(
        card_sn=CardSn.from_hex(card_sn),
        card_type="3",
        spec_version=spec_version,
        init_org="31000000000000000000000A",
        issue_date=dt.date(2019, 1, 15),
        expiry_date=dt.date(2029, 1, 15),
        card_no="A12345678",
    )
    holder = HolderData(
        citizen_id=CITIZEN_ID,
        name=NAME,
        gender=Gender.MALE,
        nation="01",
        birth_date=dt.date(1949, 12, 31),
    )
    return CardIdentity.from_parts(issuer, holder)


@dataclass(frozen=True)
class Pki:
    root: Certificate
    ca: Certificate
    card_key: SM2PrivateKey
    card_cert: Certificate


def make_pki() -> Pki:
    root_key, ca_key, card_key = (SM2PrivateKey.generate() for _ in range(3))
    root = build_root_ca(root_key, [("C", "CN"), ("CN", "Test Root")], not_before=T0, not_after=T1)
    ca = build_issuing_ca(
        ca_key.public_key,
        [("C", "CN"), ("CN", "Test Issuing CA")],
        issuer=root,
        issuer_key=root_key,
        not_before=T0,
        not_after=T1,
    )
    card_cert = build_card_certificate(
        card_key.public_key,
        card_sn=CARD_SN,
        common_name="A12345678",
        issuer=ca,
        issuer_key=ca_key,
        not_before=T0,
        not_after=T1,
    )
    return Pki(root, ca, card_key, card_cert)


def third_gen_card(
    pki: Pki, *, t0_get_response: bool = False, require_pin_for_auth: bool = False
) -> ThirdGenCard:
    return make_third_gen_card(
        make_identity(CARD_SN, "3.00"),
        pki.card_key,
        pki.card_cert.der,
        PIN,
        t0_get_response=t0_get_response,
        require_pin_for_auth=require_pin_for_auth,
    )


def legacy_card(*, t0_get_response: bool = False) -> LegacyCard:
    return make_legacy_card(
        make_identity(LEGACY_SN, "2.00"), MASTER_KEY, PIN, t0_get_response=t0_get_response
    )


class WrappedCard:
    """A software card with a hook between the reader and the card."""

    def __init__(self, inner: VirtualCard) -> None:
        self.inner = inner
        self.commands: list[bytes] = []

    @property
    def atr(self) -> bytes:
        return self.inner.atr

    def reset(self) -> None:
        self.inner.reset()

    def transmit(self, apdu: bytes) -> bytes:
        self.commands.append(bytes(apdu))
        return self.inner.transmit(apdu)


class ExactLeCard(WrappedCard):
    """A strict card: Le 00 on a shorter answer gets 6Cxx (as some COSes do), never data."""

    def transmit(self, apdu: bytes) -> bytes:
        self.commands.append(bytes(apdu))
        answer = self.inner.transmit(apdu)
        data, sw = answer[:-2], answer[-2:]
        # Case 2 short (5 bytes, Le last) or case 4 short (Lc + data + Le) with Le = 00.
        case2 = len(apdu) == 5
        case4 = len(apdu) > 5 and len(apdu) == 6 + apdu[4]
        if (case2 or case4) and apdu[-1] == 0x00 and sw == b"\x90\x00" and len(data) < 256:
            return bytes([0x6C, len(data)])
        return answer


class NoPkiCard(WrappedCard):
    """A card claiming spec 3.00 whose PKI application is missing."""

    def transmit(self, apdu: bytes) -> bytes:
        self.commands.append(bytes(apdu))
        if apdu[:4] == b"\x00\xa4\x04\x00" and apdu[5:] == PKI_AID:
            return b"\x6a\x82"
        return self.inner.transmit(apdu)


class EndOfFileCard(WrappedCard):
    """Answers the last piece of a transparent file with 6282 (end of file) instead of 9000."""

    def transmit(self, apdu: bytes) -> bytes:
        self.commands.append(bytes(apdu))
        answer = self.inner.transmit(apdu)
        if apdu[1] == 0xB0 and answer[-2:] == b"\x90\x00" and len(answer) - 2 < 256:
            return answer[:-2] + b"\x62\x82"
        return answer


class PulledOutCard(WrappedCard):
    """Calls ``pull()`` while working on its ``after``-th command: the card leaves mid-APDU."""

    def __init__(self, inner: VirtualCard, after: int, pull: Callable[[], object]) -> None:
        super().__init__(inner)
        self.after = after
        self.pull = pull

    def transmit(self, apdu: bytes) -> bytes:
        self.commands.append(bytes(apdu))
        answer = self.inner.transmit(apdu)
        if len(self.commands) == self.after:
            self.pull()
        return answer


class ScriptedReader:
    """A connected reader that answers from a script (response hex per command), for the
    transport's corner cases no software card produces."""

    def __init__(self, *answers: str) -> None:
        self.answers = [bytes.fromhex(a) for a in answers]
        self.sent: list[bytes] = []
        self.card: CardInfo | None = CardInfo("Scripted", b"\x3b\x00", CardInterface.CONTACT, 0)

    def transmit(self, apdu: bytes) -> bytes:
        self.sent.append(bytes(apdu))
        if not self.answers:
            raise AssertionError(f"unexpected command {apdu.hex().upper()}")
        return self.answers.pop(0)
