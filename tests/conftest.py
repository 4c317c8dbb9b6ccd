"""Suite-wide test configuration."""

from __future__ import annotations

import sys
from pathlib import Path

# tests/ holds shared helpers (vectors.py); make them importable without a package __init__.
sys.path.insert(0, str(Path(__file__).resolve().parent))
