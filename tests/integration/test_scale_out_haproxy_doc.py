"""docs/scale-out.md's haproxy block is the configuration the replica tests run: exactly what
``haproxykit.gateway_config`` writes for the doc's example ports (the frontend on 8080,
replicas a and b on 8081 and 8082), the only values the kit fills in. Starts nothing (the kit
itself checks what it writes with ``haproxy -c`` before every run)."""

from __future__ import annotations

import re
from pathlib import Path

from haproxykit import gateway_config

SCALE_OUT = Path(__file__).resolve().parents[2] / "docs" / "scale-out.md"


def _first_block_under(heading: str) -> str:
    text = SCALE_OUT.read_text(encoding="utf-8")
    found = re.search(rf"^{re.escape(heading)}\n.*?^```[a-z]*\n(.*?)^```$", text, re.M | re.S)
    assert found, f"no fenced block under {heading!r} in {SCALE_OUT}"
    return found[1]


def test_the_documented_haproxy_config_is_the_tested_one() -> None:
    documented = _first_block_under("### haproxy")
    assert documented == gateway_config(8080, [("a", 8081), ("b", 8082)])
