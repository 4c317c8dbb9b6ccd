"""The load shapes: a compressed Shanghai day (its morning peak), step, spike and soak, each
ending on time, never asking for fewer than one user or a spawn rate Locust warns about."""

from __future__ import annotations

import math

import pytest

from loadtest.locust._shapes import (
    DAY_PROFILE,
    DEFAULT_DURATION_S,
    MAX_SPAWN_RATE,
    SHAPES,
    SPIKE_BASE_SHARE,
    STEP_COUNT,
    ShapePlan,
    tick,
)


def _users(plan: ShapePlan, at_s: float) -> int:
    answer = tick(plan, at_s)
    assert answer is not None
    return answer[0]


def _samples(plan: ShapePlan, per_s: int = 10) -> list[tuple[float, int, float]]:
    out = []
    for i in range(int(plan.duration_s * per_s)):
        at = i / per_s
        answer = tick(plan, at)
        assert answer is not None, at
        out.append((at, *answer))
    return out


def test_the_day_profile_has_an_hour_each_and_peaks_in_the_morning() -> None:
    assert len(DAY_PROFILE) == 24
    assert all(0 < share <= 1 for share in DAY_PROFILE)
    assert DAY_PROFILE.index(max(DAY_PROFILE)) in (9, 10)
    morning, lunch, afternoon = max(DAY_PROFILE[8:11]), DAY_PROFILE[12], max(DAY_PROFILE[14:17])
    assert morning > afternoon > lunch
    assert max(DAY_PROFILE[0:6]) < 0.1  # the night is quiet


def test_the_day_is_compressed_into_the_duration_hour_by_hour() -> None:
    plan = ShapePlan("day", 24.0, 200)  # one second per hour
    for hour, share in enumerate(DAY_PROFILE):
        assert _users(plan, hour + 0.5) == max(1, round(share * 200)), hour
    assert _users(plan, 9.5) == 200


@pytest.mark.parametrize("duration_s", [20.0, 330.0, 600.0])
def test_the_day_reaches_its_peak_and_ends_on_time(duration_s: float) -> None:
    plan = ShapePlan("day", duration_s, 40)
    users = [u for _, u, _ in _samples(plan)]
    assert max(users) == 40
    assert min(users) == 1  # night: one user keeps traffic flowing
    assert tick(plan, duration_s) is None
    assert tick(plan, duration_s + 100) is None


def test_the_peak_comes_at_nine_to_ten_of_the_compressed_day() -> None:
    plan = ShapePlan("day", 600.0, 40)
    peak_at = [at for at, users, _ in _samples(plan) if users == 40]
    assert min(peak_at) >= 9 * 25
    assert max(peak_at) < 10 * 25


def test_step_climbs_in_equal_steps_to_the_peak() -> None:
    plan = ShapePlan("step", 100.0, 50)
    seen = [_users(plan, (k + 0.5) * 100.0 / STEP_COUNT) for k in range(STEP_COUNT)]
    assert seen == [10, 20, 30, 40, 50]
    assert tick(plan, 100.0) is None


def test_spike_jumps_to_the_peak_in_the_middle_then_comes_back() -> None:
    plan = ShapePlan("spike", 100.0, 50)
    base = round(SPIKE_BASE_SHARE * 50)
    assert _users(plan, 10) == base
    assert tick(plan, 50) == (50, MAX_SPAWN_RATE)
    assert _users(plan, 70) == base
    assert tick(plan, 100) is None


def test_soak_holds_the_peak() -> None:
    plan = ShapePlan("soak", 3600.0, 30)
    assert {_users(plan, t) for t in (0, 60, 1800, 3599)} == {30}
    assert tick(plan, 3600) is None


@pytest.mark.parametrize("shape", SHAPES)
def test_spawn_rates_stay_within_locusts_comfort(shape: str) -> None:
    for plan in (ShapePlan(shape, 20.0, 5), ShapePlan(shape, DEFAULT_DURATION_S[shape], 5000)):
        for _, users, rate in _samples(plan, per_s=1):
            assert users >= 1
            assert 1.0 <= rate <= MAX_SPAWN_RATE


@pytest.mark.parametrize(
    ("shape", "duration_s", "peak"),
    [
        ("night", 10.0, 1),
        ("day", 0.0, 1),
        ("day", math.inf, 1),
        ("day", math.nan, 1),
        ("day", 10.0, 0),
    ],
)
def test_a_plan_that_cannot_run_is_refused(shape: str, duration_s: float, peak: int) -> None:
    with pytest.raises(ValueError, match=r"shape|duration|peak"):
        ShapePlan(shape, duration_s, peak)


def test_time_does_not_run_backwards() -> None:
    with pytest.raises(ValueError, match="negative"):
        tick(ShapePlan("day", 10.0, 1), -1.0)
