"""Second-generation card keys: who derives a card's symmetric key from the issuer master key.

:class:`KeyManager` is the seam. :class:`SoftwareKeyManager` holds the master key in process
memory (the embedded demo, tests, a pilot); a production deployment replaces it with one that
asks an HSM to derive the key (or, better, to compute the cryptogram) so that the master key
never leaves the HSM. The derivation itself is :func:`sscard.softcard.diversify_card_key`,
the very function the software card uses: one definition for both sides.
"""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Final, Protocol

from sscard.layout import CardSn
from sscard.softcard import diversify_card_key, legacy_cryptogram

__all__ = [
    "MASTER_KEY_LEN",
    "KeyManager",
    "SoftwareKeyManager",
    "cryptogram_matches",
    "load_master_key_file",
]

MASTER_KEY_LEN: Final = 16


class KeyManager(Protocol):
    """Derives a second-generation card's own key. Implementations must be thread-safe."""

    def card_key(self, card_sn: CardSn) -> bytes: ...


class SoftwareKeyManager:
    """The issuer master key in memory. Never logged: its repr hides it."""

    def __init__(self, master_key: bytes) -> None:
        if len(master_key) != MASTER_KEY_LEN:
            raise ValueError(f"legacy master key must be {MASTER_KEY_LEN} bytes")
        self._master_key = bytes(master_key)

    def card_key(self, card_sn: CardSn) -> bytes:
        return diversify_card_key(self._master_key, card_sn)

    def __repr__(self) -> str:
        return "SoftwareKeyManager(master_key=<hidden>)"


def cryptogram_matches(
    keys: KeyManager, card_sn: CardSn, challenge: bytes, cryptogram: bytes
) -> bool:
    """Recompute the card's answer and compare in constant time."""
    expected = legacy_cryptogram(keys.card_key(card_sn), challenge, card_sn)
    return hmac.compare_digest(expected, cryptogram)


def load_master_key_file(path: Path) -> bytes:
    """A master key file: 32 hex digits (surrounding whitespace ignored). ValueError otherwise;
    the message never quotes the file's content."""
    text = path.read_text(encoding="ascii", errors="replace").strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise ValueError(f"{path}: legacy master key file must hold 32 hex digits") from None
    if len(key) != MASTER_KEY_LEN:
        raise ValueError(f"{path}: legacy master key file must hold 32 hex digits")
    return key
