"""Helpers for the terminal_sdk tests: a small card world and cards that misbehave on purpose."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from cardkit import (
    CARD_SN,
    CITIZEN_ID,
    LEGACY_SN,
    MASTER_KEY,
    PIN,
    T0,
    T1,
    WRONG_PIN,
    Pki,
    make_pki,
)
from cardkit import make_identity as _make_identity

from sscard.layout import PKI_AID, CardIdentity
from sscard.softcard import LegacyCard, ThirdGenCard, make_legacy_card, make_third_gen_card
from sscard.vpcd import VirtualCard
from terminal_sdk.readers.base import CardInfo, CardInterface

TERMINAL_ID = "POS-SDK-01"
NAME = "张三丰"  # longer than cardkit's, to check masking hides the length
NOW = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)


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


def make_identity(card_sn: str, spec_version: str) -> CardIdentity:
    return _make_identity(card_sn, spec_version, name=NAME)


# Re-exported: the SDK tests import these from here.
__all__ = ["CARD_SN", "CITIZEN_ID", "LEGACY_SN", "MASTER_KEY", "PIN", "T0", "T1", "WRONG_PIN",
           "Pki", "make_pki"]  # fmt: skip
