"""Fault injection: what tests switch on to make the hub slow, lossy or broken.

Switches (CLI flags at start, ``PUT /hub/admin/faults`` at run time, ``GET`` to read them):

* ``latency_ms``: sleep before processing each call;
* ``drop_after_commit_ratio``: the share of calls that are processed and committed, then
  have their connection aborted with no response;
* ``error_5xx_ratio``: the share of calls answered HTTP 503 *without* being processed;
* ``seed``: reseeds the fault RNG, so a run of requests meets the same faults every time;
* ``refuse_connections_s`` (an action, not a switch; PUT only): stop listening for N seconds.

Per request, ``X-Hub-Fault: drop | 5xx | latency=<ms>`` (comma-separated to combine) forces
a fault whatever the ratios say.

Every call draws exactly two numbers from the seeded RNG (5xx, then drop), whatever the ratios
and the header, so the faults a given sequence of calls meets depend only on the seed.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "MAX_LATENCY_MS",
    "MAX_REFUSE_S",
    "FaultDecision",
    "FaultPlan",
    "FaultSpecInvalid",
    "FaultSwitches",
    "ForcedFault",
    "parse_fault_header",
]

MAX_LATENCY_MS: Final = 60_000
MAX_REFUSE_S: Final = 300.0
MAX_HEADER_CHARS: Final = 100
_SWITCH_KEYS: Final = frozenset(
    {"latency_ms", "drop_after_commit_ratio", "error_5xx_ratio", "seed", "refuse_connections_s"}
)


class FaultSpecInvalid(ValueError):
    """A fault switch or header the hub does not understand (answered HTTP 400)."""

    code = "FAULT_SPEC_INVALID"


@dataclass(frozen=True, slots=True)
class FaultSwitches:
    latency_ms: int = 0
    drop_after_commit_ratio: float = 0.0
    error_5xx_ratio: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        _check_latency(self.latency_ms)
        _check_ratio("drop_after_commit_ratio", self.drop_after_commit_ratio)
        _check_ratio("error_5xx_ratio", self.error_5xx_ratio)
        if type(self.seed) is not int:
            raise FaultSpecInvalid("seed must be an integer")


@dataclass(frozen=True, slots=True)
class ForcedFault:
    """What an ``X-Hub-Fault`` header forces for one request."""

    drop: bool = False
    error_5xx: bool = False
    latency_ms: int | None = None


@dataclass(frozen=True, slots=True)
class FaultDecision:
    latency_ms: int
    error_5xx: bool
    drop: bool


def _check_latency(value: object) -> int:
    if type(value) is not int or not 0 <= value <= MAX_LATENCY_MS:
        raise FaultSpecInvalid(f"latency_ms must be an integer 0..{MAX_LATENCY_MS}")
    return value


def _check_ratio(name: str, value: object) -> float:
    if type(value) not in (int, float) or not 0.0 <= float(value) <= 1.0:  # type: ignore[arg-type]
        raise FaultSpecInvalid(f"{name} must be a number 0..1")
    return float(value)  # type: ignore[arg-type]


def parse_fault_header(value: str | None) -> ForcedFault:
    """``drop``, ``5xx``, ``latency=<ms>``, comma-separated; None or empty forces nothing."""
    if not value:
        return ForcedFault()
    if len(value) > MAX_HEADER_CHARS:
        raise FaultSpecInvalid("X-Hub-Fault is too long")
    drop = error_5xx = False
    latency_ms: int | None = None
    for word in (part.strip().lower() for part in value.split(",")):
        if word == "drop":
            drop = True
        elif word == "5xx":
            error_5xx = True
        elif word.startswith("latency=") and word[8:].isdigit() and word[8:].isascii():
            latency_ms = _check_latency(int(word[8:]))
        else:
            raise FaultSpecInvalid("X-Hub-Fault takes drop, 5xx or latency=<ms>")
    return ForcedFault(drop=drop, error_5xx=error_5xx, latency_ms=latency_ms)


class FaultPlan:
    """The switches in force and the seeded RNG that applies the ratios."""

    def __init__(self, switches: FaultSwitches) -> None:
        self._switches = switches
        self._rng = random.Random(switches.seed)  # noqa: S311 (fault injection, not secrets)

    @property
    def switches(self) -> FaultSwitches:
        return self._switches

    def update(self, body: object) -> float:
        """Apply a ``PUT /hub/admin/faults`` body: the keys given replace their switch, the
        others keep theirs; ``seed`` reseeds the RNG. Returns ``refuse_connections_s`` (0 when
        absent) for the caller to act on. All or nothing: a bad body changes nothing."""
        if not isinstance(body, Mapping):
            raise FaultSpecInvalid("the body must be a JSON object")
        unknown = sorted(str(key)[:40] for key in body if key not in _SWITCH_KEYS)
        if unknown:
            raise FaultSpecInvalid(f"unknown fault switch {unknown[0]!r}")
        refuse_s = body.get("refuse_connections_s", 0)
        if (
            type(refuse_s) not in (int, float)
            or not math.isfinite(refuse_s)
            or not 0 <= refuse_s <= MAX_REFUSE_S
        ):
            raise FaultSpecInvalid(f"refuse_connections_s must be a number 0..{MAX_REFUSE_S:g}")
        current = self._switches
        fresh = FaultSwitches(
            latency_ms=body.get("latency_ms", current.latency_ms),
            drop_after_commit_ratio=body.get(
                "drop_after_commit_ratio", current.drop_after_commit_ratio
            ),
            error_5xx_ratio=body.get("error_5xx_ratio", current.error_5xx_ratio),
            seed=body.get("seed", current.seed),
        )
        self._switches = fresh
        if "seed" in body:
            self._rng = random.Random(fresh.seed)  # noqa: S311
        return float(refuse_s)

    def as_json(self) -> dict[str, Any]:
        s = self._switches
        return {
            "latency_ms": s.latency_ms,
            "drop_after_commit_ratio": s.drop_after_commit_ratio,
            "error_5xx_ratio": s.error_5xx_ratio,
            "refuse_connections_s": 0,
            "seed": s.seed,
        }

    def decide(self, forced: ForcedFault) -> FaultDecision:
        """The faults for one call (always two RNG draws, see the module docstring)."""
        draw_5xx, draw_drop = self._rng.random(), self._rng.random()
        s = self._switches
        return FaultDecision(
            latency_ms=s.latency_ms if forced.latency_ms is None else forced.latency_ms,
            error_5xx=forced.error_5xx or draw_5xx < s.error_5xx_ratio,
            drop=forced.drop or draw_drop < s.drop_after_commit_ratio,
        )
