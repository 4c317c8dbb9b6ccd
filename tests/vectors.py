"""Where the shared known-answer vectors live, found the same way in a checkout and in CI.

CI clones the repository into a fresh folder with ``shared/`` beside it, as in development, so
``<repo>/../shared`` works in both. ``SSC_SHARED_DIR`` overrides it. A missing file is an error,
never a skip: a suite that silently skips its vectors proves nothing.
"""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent


def shared_dir() -> Path:
    return Path(os.environ.get("SSC_SHARED_DIR", REPO_ROOT.parent / "shared"))


@cache
def sm_vectors() -> dict[str, Any]:
    path = shared_dir() / "vectors" / "sm.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"known-answer vectors not found at {path}; set SSC_SHARED_DIR to the shared/ folder"
        )
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data
