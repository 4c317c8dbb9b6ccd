"""Demo third-generation cards for load generation, with SM2 signing split offline/online.

A card's INTERNAL AUTHENTICATE signs a message holding the gateway's fresh challenge, so the
signature itself cannot be computed ahead. Its expensive part can: an SM2 signature (GB/T
32918.2) is ``r = (e + x1) mod n`` and ``s = (1 + d)^-1 (k - r d) mod n`` where ``(x1, y1) = k·G``
for a fresh random ``k``. :func:`make_presignatures` computes the pairs ``(k, x1)`` before a
measurement (one scalar multiplication each, in a process pool); :meth:`BenchCard.sign` then
costs one SM3 and a few big-integer operations, so the load generator does not compete with the
gateway for the CPU with a full SM2 signature per authentication. Each ``k`` is random and used
once, exactly as a card would use it; the result is an ordinary SM2 signature that
:func:`sscard.crypto.sm2_verify` accepts (checked by tests/loadtest).
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Final

from sscard import demo as sd
from sscard.crypto import DEFAULT_SIGNER_ID, SM2PublicKey, curve, default_backend, sm2_digest
from sscard.layout import CardSn

__all__ = ["BenchCard", "Presignature", "make_cards", "make_presignatures", "sign_presigned"]

_CHUNK: Final = 250


@dataclass(frozen=True, slots=True)
class Presignature:
    """A fresh SM2 nonce ``k`` and the x coordinate of ``k·G``. Use once, then discard."""

    k: int
    x1: int


def _presign_chunk(count: int) -> list[Presignature]:
    backend = default_backend()
    out = []
    for _ in range(count):
        k = secrets.randbelow(curve.N - 2) + 1
        out.append(Presignature(k, backend.public_point(k)[0]))
    return out


def make_presignatures(count: int, pool: ProcessPoolExecutor | None = None) -> list[Presignature]:
    """``count`` presignatures; in ``pool`` when given (chunks spread over its processes)."""
    chunks = [_CHUNK] * (count // _CHUNK) + ([count % _CHUNK] if count % _CHUNK else [])
    if pool is None:
        return [p for chunk in chunks for p in _presign_chunk(chunk)]
    return [p for part in pool.map(_presign_chunk, chunks) for p in part]


def sign_presigned(
    d: int,
    public_key: SM2PublicKey,
    message: bytes,
    presignature: Presignature,
    inverse_one_plus_d: int | None = None,
) -> bytes | None:
    """The 64-byte ``r ‖ s`` SM2 signature of ``message`` by key ``d`` with the presignature's
    nonce, or None in the (probability ~2^-255) cases where that nonce cannot sign it.
    ``inverse_one_plus_d`` is ``(1 + d)^-1 mod n``, if the caller keeps it per key."""
    n = curve.N
    e = int.from_bytes(sm2_digest(public_key, message, DEFAULT_SIGNER_ID), "big")
    k = presignature.k
    r = (e + presignature.x1) % n
    if r == 0 or r + k == n:
        return None
    inverse = pow(1 + d, -1, n) if inverse_one_plus_d is None else inverse_one_plus_d
    s = inverse * (k - r * d) % n
    if s == 0:
        return None
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


@dataclass(slots=True)
class BenchCard:
    """A demo card as the load generator holds it: key, certificate, and whether the gateway
    has stored the certificate (then the terminal sends only its SM3 hash)."""

    number: int
    card_sn: str
    d: int
    public_key: SM2PublicKey
    certificate_b64: str
    certificate_sm3_hex: str
    certificate_stored: bool = False
    raw_sn: CardSn = field(init=False)
    _inverse_one_plus_d: int = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.raw_sn = CardSn.from_hex(self.card_sn)
        self._inverse_one_plus_d = pow(1 + self.d, -1, curve.N)

    def sign(self, message: bytes, presignature: Presignature) -> bytes | None:
        return sign_presigned(
            self.d, self.public_key, message, presignature, self._inverse_one_plus_d
        )


def _card_chunk(seed: str, numbers: Sequence[int]) -> list[BenchCard]:
    pki = sd.demo_pki(seed)
    out = []
    for m in numbers:
        key = sd.demo_card_key(seed, m)
        certificate = sd.demo_card_certificate(seed, m, pki)
        out.append(
            BenchCard(
                number=m,
                card_sn=sd.demo_card(seed, m).card_sn,
                d=key.d,
                public_key=key.public_key,
                certificate_b64=base64.b64encode(certificate.der).decode("ascii"),
                certificate_sm3_hex=certificate.fingerprint.hex(),
            )
        )
    return out


def make_cards(seed: str, count: int, pool: ProcessPoolExecutor | None = None) -> list[BenchCard]:
    """The first ``count`` third-generation demo cards in registry state active."""
    numbers = [
        card.number for card in sd.find_demo_cards(seed, generation=3, state=sd.ACTIVE, count=count)
    ]
    if len(numbers) < count:
        raise ValueError(f"only {len(numbers)} active third-generation demo cards")
    chunks = [numbers[i : i + 50] for i in range(0, len(numbers), 50)]
    if pool is None:
        return [card for chunk in chunks for card in _card_chunk(seed, chunk)]
    return [card for part in pool.map(_card_chunk, [seed] * len(chunks), chunks) for card in part]
