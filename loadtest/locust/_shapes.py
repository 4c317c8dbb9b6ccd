"""Load shapes as pure functions of the elapsed time: how many users, how fast to get there.

Locust's :class:`~locust.LoadTestShape` (``ShanghaiShape`` in ``locustfile.py``) asks once a
second; :func:`tick` answers ``(users, spawn_rate)`` or ``None`` when the run is over. Four
shapes, picked with ``--ssc-shape`` (docs/load-testing.md):

``day``
    Shanghai's medical day compressed into ``duration_s``: 24 equal slots, one per hour, each
    at :data:`DAY_PROFILE`'s share of ``peak_users``: the night's trickle (emergencies,
    24-hour pharmacies), the clinics opening at 7, the morning peak at 9-10, the lunch dip,
    a smaller afternoon peak, then the evening tail.
``step``
    :data:`STEP_COUNT` equal steps up to ``peak_users``, each held for an equal share of the
    run: where does latency start to climb?
``spike``
    a quiet base (:data:`SPIKE_BASE_SHARE` of the peak) for the first 40 %, then everyone at
    once for 20 %, then the base again: does the gateway recover, and how fast?
``soak``
    ``peak_users`` for the whole run: what leaks or grows over hours?

Every shape keeps at least one user while it runs, so a short compressed day still has
traffic at night.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

__all__ = [
    "DAY_PROFILE",
    "DEFAULT_DURATION_S",
    "MAX_SPAWN_RATE",
    "SHAPES",
    "SPIKE_BASE_SHARE",
    "STEP_COUNT",
    "ShapePlan",
    "tick",
]

#: Share of the peak number of users in each hour of the day (Beijing time, 00:00 first).
#: Made up from the usual outpatient arrival curve [weak]: registration opens around 7:00,
#: the peak is 9:00-10:00, lunch halves it, the afternoon comes back to about 60 %.
# fmt: off
DAY_PROFILE: Final[tuple[float, ...]] = (
    0.04, 0.03, 0.03, 0.03, 0.03, 0.05,   # 00-05 night: emergencies, 24-hour pharmacies
    0.10, 0.40, 0.85, 1.00, 0.95, 0.70,   # 06-11 clinics open, the morning peak
    0.35, 0.50, 0.62, 0.58, 0.45, 0.32,   # 12-17 lunch dip, afternoon clinics
    0.24, 0.20, 0.16, 0.12, 0.08, 0.05,   # 18-23 evening clinics, pharmacies, emergencies
)
# fmt: on

SHAPES: Final = ("day", "step", "spike", "soak")
#: Seconds of a whole run when ``--ssc-duration`` is not given.
DEFAULT_DURATION_S: Final = {"day": 600.0, "step": 300.0, "spike": 180.0, "soak": 3600.0}
STEP_COUNT: Final = 5
SPIKE_BASE_SHARE: Final = 0.2
SPIKE_FROM: Final = 0.4  # of the run
SPIKE_UNTIL: Final = 0.6
#: Locust warns above 100 users/s per process: never ask for more.
MAX_SPAWN_RATE: Final = 100.0


@dataclass(frozen=True, slots=True)
class ShapePlan:
    """One run's shape: which, how long (s) and how many users at the top."""

    shape: str
    duration_s: float
    peak_users: int

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"unknown shape {self.shape!r}: one of {', '.join(SHAPES)}")
        if not (math.isfinite(self.duration_s) and self.duration_s > 0):
            raise ValueError("the duration must be a positive number of seconds")
        if self.peak_users < 1:
            raise ValueError("the peak must be at least one user")


def _users(share: float, peak_users: int) -> int:
    return max(1, round(share * peak_users))


def _rate(users_per_s: float) -> float:
    return min(MAX_SPAWN_RATE, max(1.0, users_per_s))


def tick(plan: ShapePlan, elapsed_s: float) -> tuple[int, float] | None:
    """``(users, spawn_rate)`` at ``elapsed_s`` into the run, or None once it is over.

    >>> plan = ShapePlan("day", 24.0, 100)
    >>> tick(plan, 0.5), tick(plan, 9.5), tick(plan, 24.0)
    ((4, 100.0), (100, 100.0), None)
    """
    if elapsed_s < 0:
        raise ValueError("elapsed time cannot be negative")
    if elapsed_s >= plan.duration_s:
        return None
    fraction = elapsed_s / plan.duration_s
    peak = plan.peak_users
    if plan.shape == "day":
        slot_s = plan.duration_s / len(DAY_PROFILE)
        hour = min(len(DAY_PROFILE) - 1, int(fraction * len(DAY_PROFILE)))
        # Reach the slot's level within a quarter of the slot, whatever its size.
        return _users(DAY_PROFILE[hour], peak), _rate(peak / (slot_s / 4))
    if plan.shape == "step":
        step = min(STEP_COUNT - 1, int(fraction * STEP_COUNT))
        step_s = plan.duration_s / STEP_COUNT
        return _users((step + 1) / STEP_COUNT, peak), _rate(peak / STEP_COUNT / (step_s / 4))
    if plan.shape == "spike":
        if SPIKE_FROM <= fraction < SPIKE_UNTIL:
            return peak, MAX_SPAWN_RATE  # everyone at once: that is the point
        return _users(SPIKE_BASE_SHARE, peak), _rate(peak / 10)
    # soak: ramp up over the first 5 % (at most a minute), then hold.
    ramp_s = min(60.0, plan.duration_s * 0.05)
    return peak, _rate(peak / ramp_s)
