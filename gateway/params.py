"""Numbers in a request's path or query: ASCII digits only.

``str.isdigit`` accepts "¹" (which ``int`` then refuses: a 500) and "٣" (which ``int`` reads as
3: a different number than the client wrote). A path or query number is parsed here instead.

>>> ascii_int("42", max_digits=18), ascii_int("¹", max_digits=18), ascii_int("٣", max_digits=18)
(42, None, None)
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["ascii_int"]

_ASCII_DIGITS: Final = re.compile(r"[0-9]+")


def ascii_int(text: str, *, max_digits: int) -> int | None:
    """The number ``text`` writes in 1 to ``max_digits`` ASCII digits, else None."""
    if len(text) > max_digits or not _ASCII_DIGITS.fullmatch(text):
        return None
    return int(text)
