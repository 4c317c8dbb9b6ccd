"""CI detection, in one place: `.ci/run` exports ``SSC_CI=1`` (and ``CI=true``, which hosted CI
services set and which means the same here).

A test whose prerequisite is missing (PostgreSQL, pcscd, Chromium, Prometheus, openssl) calls
:func:`fail_or_skip`: under CI the prerequisite is part of the contract and its absence is a
FAILURE; on a developer's machine it is a skip with the reason in the summary.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Final, NoReturn

import pytest

__all__ = ["CI_VARIABLE", "fail_or_skip", "in_ci"]

CI_VARIABLE: Final = "SSC_CI"
_TRUE: Final = frozenset({"1", "true", "yes"})


def in_ci(environ: Mapping[str, str] | None = None) -> bool:
    """True when ``SSC_CI`` (set by `.ci/run`) or ``CI`` is 1, true or yes."""
    env = os.environ if environ is None else environ
    return any(env.get(name, "").strip().lower() in _TRUE for name in (CI_VARIABLE, "CI"))


def fail_or_skip(reason: str) -> NoReturn:
    """Fail under CI (this test must run there), skip with the reason elsewhere."""
    if in_ci():
        pytest.fail(f"{reason} ({CI_VARIABLE}=1: this test must run in CI)")
    pytest.skip(f"SKIPPED: {reason}; under CI ({CI_VARIABLE}=1) this would fail instead")
