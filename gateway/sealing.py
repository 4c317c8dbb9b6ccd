"""Secrets at rest: sealed under a key-encryption key (KEK) held outside the database.

A terminal's HMAC secret, its previous secret during a rotation, and an institution's SM4
transport key are stored as SEALED blobs: a copy of the database (a dump, a backup, a stolen
SQLite file) reveals none of them without the KEK, which lives in a file or an environment
variable on the gateway's hosts (``kek_file``, ``GATEWAY_KEK_HEX``; docs/operations.md).

The seam is :class:`SecretSealer` (seal, open, which KEK sealed a blob), as
:class:`gateway.card_auth.keys.KeyManager` is for card keys: :class:`KeyRing` does it in
process memory; an HSM-backed sealer (the KEK never leaving the HSM, seal and open done by it)
replaces it without touching the callers.

The construction is encrypt-then-MAC with the SM algorithms the project already carries
(sscard.crypto): SM4-CBC under a random IV with ISO/IEC 9797-1 method 2 padding, then
HMAC-SM3 over everything before the tag AND the associated data, which is the row's identity
(``terminals.secret:<terminal id>``): a blob copied into another row, or from the current to
the previous secret, does not open. The tag is checked in constant time before anything is
decrypted. Two subkeys are derived from the 32-byte KEK (HMAC-SM3 with distinct labels), so
the cipher and the MAC never share a key. Layout::

    b"K1" ‖ kek_id (4 bytes) ‖ iv (16) ‖ SM4-CBC ciphertext (16·n) ‖ HMAC-SM3 tag (32)

``kek_id`` (the first 4 bytes of HMAC-SM3(KEK, "kek-id")) names the KEK that sealed a blob, so
a ring of several KEKs (the current one and the ones being retired) opens any blob during a
rewrap (``gateway admin rewrap``) with no downtime. It identifies a KEK without revealing it.
"""

from __future__ import annotations

import contextlib
import hmac
import os
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Final, Protocol

from sscard.crypto import hmac_sm3, pad_iso9797_m2, sm4_cbc_decrypt, sm4_cbc_encrypt

__all__ = [
    "KEK_BYTES",
    "MAX_SEALED_BYTES",
    "Kek",
    "KeyRing",
    "SealError",
    "SecretSealer",
    "is_sealed",
    "kek_id_of",
    "load_kek_file",
    "new_kek_file",
    "parse_kek_hex",
]

KEK_BYTES: Final = 32
_MAGIC: Final = b"K1"
_ID_BYTES: Final = 4
_IV_BYTES: Final = 16
_TAG_BYTES: Final = 32
_HEADER: Final = len(_MAGIC) + _ID_BYTES
# A sealed secret is at most this long (a 64-byte secret seals to 134 bytes): bounds a blob.
MAX_SEALED_BYTES: Final = 256


class SealError(ValueError):
    """A blob that cannot be opened: sealed under a KEK this ring does not hold, tampered with,
    moved to another row, or not a sealed blob at all. The message names the KEK id, never a
    key or the plaintext."""


class SecretSealer(Protocol):
    """Seals and opens secrets at rest. Implementations must be thread-safe."""

    @property
    def current_kek_id(self) -> str: ...

    def seal(self, plaintext: bytes, aad: bytes) -> bytes: ...

    def open(self, blob: bytes, aad: bytes) -> bytes: ...


class Kek:
    """One key-encryption key: its id and the two subkeys derived from it. Never logged."""

    __slots__ = ("_enc", "_mac", "id_bytes")

    def __init__(self, key: bytes) -> None:
        if len(key) != KEK_BYTES:
            raise ValueError(f"a KEK is {KEK_BYTES} bytes ({2 * KEK_BYTES} hex digits)")
        self._enc = hmac_sm3(key, b"ssc-gateway kek: sm4-cbc")[:16]
        self._mac = hmac_sm3(key, b"ssc-gateway kek: hmac-sm3")
        self.id_bytes = hmac_sm3(key, b"ssc-gateway kek: kek-id")[:_ID_BYTES]

    @property
    def id(self) -> str:
        return self.id_bytes.hex()

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        iv = secrets.token_bytes(_IV_BYTES)
        body = (
            _MAGIC + self.id_bytes + iv + sm4_cbc_encrypt(self._enc, iv, pad_iso9797_m2(plaintext))
        )
        return body + self._tag(body, aad)

    def open(self, blob: bytes, aad: bytes) -> bytes:
        body, tag = blob[:-_TAG_BYTES], blob[-_TAG_BYTES:]
        if not hmac.compare_digest(self._tag(body, aad), tag):
            raise SealError(f"sealed secret fails its MAC under KEK {self.id} (tampered or moved)")
        iv, ciphertext = body[_HEADER : _HEADER + _IV_BYTES], body[_HEADER + _IV_BYTES :]
        padded = sm4_cbc_decrypt(self._enc, iv, ciphertext)
        unpadded = padded.rstrip(b"\x00")
        if not unpadded.endswith(b"\x80"):
            raise SealError("sealed secret has bad padding")  # unreachable past a good MAC
        return unpadded[:-1]

    def _tag(self, body: bytes, aad: bytes) -> bytes:
        # The AAD's length first, so (body, aad) pairs cannot be re-split.
        return hmac_sm3(self._mac, len(aad).to_bytes(4, "big") + aad + body)

    def __repr__(self) -> str:
        return f"Kek(id={self.id}, key=<hidden>)"


def is_sealed(blob: bytes) -> bool:
    """Shaped like a sealed blob (the magic, and room for IV, one block and the tag)."""
    return (
        blob[: len(_MAGIC)] == _MAGIC
        and len(blob) >= _HEADER + _IV_BYTES + 16 + _TAG_BYTES
        and (len(blob) - _HEADER - _IV_BYTES - _TAG_BYTES) % 16 == 0
    )


class KeyRing:
    """The current KEK, which seals, and any older ones, which only open (during a rewrap)."""

    def __init__(self, current: Kek, older: Iterable[Kek] = ()) -> None:
        self._current = current
        self._by_id = {kek.id_bytes: kek for kek in (*older, current)}

    @property
    def current_kek_id(self) -> str:
        return self._current.id

    @property
    def kek_ids(self) -> tuple[str, ...]:
        return tuple(sorted(k.hex() for k in self._by_id))

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        return self._current.seal(plaintext, aad)

    def open(self, blob: bytes, aad: bytes) -> bytes:
        if not is_sealed(blob):
            raise SealError("not a sealed secret")
        kek_id = blob[len(_MAGIC) : _HEADER]
        kek = self._by_id.get(kek_id)
        if kek is None:
            raise SealError(
                f"sealed under KEK {kek_id.hex()}, which this gateway does not hold "
                f"(it holds {', '.join(self.kek_ids)})"
            )
        return kek.open(blob, aad)

    def __repr__(self) -> str:
        return f"KeyRing(current={self._current.id}, holds={list(self.kek_ids)})"


def kek_id_of(blob: bytes) -> str:
    """The id of the KEK that sealed ``blob`` (for listings and the rewrap's count)."""
    return blob[len(_MAGIC) : _HEADER].hex()


def parse_kek_hex(text: str, *, where: str) -> Kek:
    """64 hex digits (surrounding whitespace ignored). ValueError naming ``where`` otherwise;
    the message never quotes the value."""
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        key = b""
    if len(key) != KEK_BYTES:
        raise ValueError(f"{where}: a KEK must be {2 * KEK_BYTES} hex digits")
    return Kek(key)


def load_kek_file(path: Path) -> Kek:
    try:
        text = path.read_text(encoding="ascii", errors="replace")
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the KEK file: {exc.strerror}") from None
    return parse_kek_hex(text, where=str(path))


def new_kek_file(path: Path, key: bytes | None = None) -> bool:
    """Write ``key`` (default: a fresh random KEK) to ``path`` (mode 0600) unless a file is
    there; True if this call wrote it. Safe when several processes race: each writes a private
    file and hard-links it into place, and link() fails if the name exists, so exactly one
    wins and nobody reads a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        return False
    candidate = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    created = False
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            text = key.hex() if key is not None else secrets.token_hex(KEK_BYTES)
            handle.write(text + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(candidate, path)
            created = True
    finally:
        candidate.unlink(missing_ok=True)
    return created
