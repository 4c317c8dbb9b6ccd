"""The SM known-answer vectors, kept in the repository beside this module (``sm.json``).

``sm.json`` carries its own sources in its ``about`` field: the GB/T 32918 (GM/T 0003) SM2
signature example on the recommended curve, GB/T 32905 (GM/T 0004) SM3 and GB/T 32907
(GM/T 0002) SM4, each value checked against two independent implementations. Nothing outside
the clone is read, so a stranger's checkout collects and runs the tests that use them. A missing
or unreadable file is an error, never a skip: a suite that silently skips its vectors proves
nothing.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

SM_VECTORS_PATH = Path(__file__).resolve().parent / "sm.json"


@cache
def sm_vectors() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(SM_VECTORS_PATH.read_text(encoding="utf-8"))
    return data
