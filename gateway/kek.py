"""Where this gateway's key-encryption keys come from (settings ``kek_hex``, ``kek_file``,
``kek_previous_files``; the demo world's generated file): resolved once per process."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from gateway.logs import fields
from gateway.sealing import Kek, KeyRing, load_kek_file, new_kek_file, parse_kek_hex
from gateway.settings import Settings
from sscard.crypto import hmac_sm3

__all__ = [
    "DEMO_KEK_FILE",
    "KekUnavailable",
    "ResolvedKeys",
    "demo_kek",
    "require_key_ring",
    "resolve_keys",
]

log = logging.getLogger("gateway.kek")

DEMO_KEK_FILE: Final = "kek"


class KekUnavailable(ValueError):
    """No KEK is configured, or a configured one cannot be read: nothing can be sealed."""


@dataclass(frozen=True, slots=True)
class ResolvedKeys:
    ring: KeyRing | None
    source: str  # where the current KEK comes from (a path or a setting name, never a value)


def resolve_keys(settings: Settings) -> ResolvedKeys:
    """The key ring. Raises KekUnavailable for a KEK that is configured but unreadable or
    malformed (a typo must not silently mean "no KEK"). Reads or creates a file: call it off
    the event loop."""
    try:
        older = [
            load_kek_file(Path(p.strip()))
            for p in settings.kek_previous_files.split(",")
            if p.strip()
        ]
        current: Kek
        if settings.kek_hex:
            current, source = (
                parse_kek_hex(settings.kek_hex, where="kek_hex"),
                "the kek_hex setting",
            )
        elif settings.kek_file is not None:
            current, source = load_kek_file(settings.kek_file), str(settings.kek_file)
        elif settings.should_load_demo_world():
            # Derived from the demo seed, as the demo terminals' secrets are: replicas of one
            # demo world (each with a data dir of its own) must open each other's blobs.
            path = settings.data_dir / DEMO_KEK_FILE
            if new_kek_file(path, demo_kek(settings.demo_seed)):
                # The path, never the value: an operator finds it there.
                log.warning("DEMO ONLY: key-encryption key generated", extra=fields(path=str(path)))
            current, source = load_kek_file(path), f"DEMO ONLY: the file {path}"
        else:
            if older:
                raise KekUnavailable("kek_previous_files is set but no kek_file or kek_hex")
            return ResolvedKeys(None, "none: set kek_file or GATEWAY_KEK_HEX")
    except ValueError as exc:
        if isinstance(exc, KekUnavailable):
            raise
        raise KekUnavailable(str(exc)) from None
    return ResolvedKeys(KeyRing(current, older), source)


def demo_kek(seed: str) -> bytes:
    """DEMO ONLY: the demo world's KEK, anyone with the (public) demo seed can derive it."""
    return hmac_sm3(seed.encode(), b"ssc-gateway demo kek")


def require_key_ring(settings: Settings) -> KeyRing:
    ring = resolve_keys(settings).ring
    if ring is None:
        raise KekUnavailable("no key-encryption key: set kek_file or GATEWAY_KEK_HEX")
    return ring
