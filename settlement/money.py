"""Integer fen, ratios in basis points, and the ONE rounding rule of the package.

Amounts are ``int`` fen (分, 1 yuan = 100 fen) everywhere; ratios are ``int`` basis points
(10000 bp = 100 %), so that no float ever touches money.

Rounding rule (applied only in :func:`share_floor_fen`): when an amount is split by a ratio,
the share that the insurance side carries (the pooling fund's share, the in-scope part of a
partly covered 乙 item, the supplementary fund's share) is rounded DOWN to the fen, and the
remainder goes to the patient. A split therefore never creates or loses a fen, and the fund
never pays a fraction of a fen it does not owe.

>>> share_floor_fen(333, 6500)   # 3.33 yuan at 65 %: 2.1645 -> 2.16 yuan to the fund
216
>>> format_yuan(123456)
'1234.56'
"""

from __future__ import annotations

from typing import Final

BP_PER_UNIT: Final = 10_000  # basis points in 100 %
FEN_PER_YUAN: Final = 100


def is_fen(value: object) -> bool:
    """True for a plain ``int`` (``bool`` is an ``int`` in Python, but never an amount)."""
    return type(value) is int


def share_floor_fen(amount_fen: int, ratio_bp: int) -> int:
    """The insurance side's share of ``amount_fen`` at ``ratio_bp``, rounded down to the fen."""
    assert is_fen(amount_fen), amount_fen
    assert amount_fen >= 0, amount_fen
    assert is_fen(ratio_bp), ratio_bp
    assert 0 <= ratio_bp <= BP_PER_UNIT, ratio_bp
    share_fen = amount_fen * ratio_bp // BP_PER_UNIT
    assert 0 <= share_fen <= amount_fen
    return share_fen


def format_yuan(amount_fen: int) -> str:
    """Render fen as the national interface's numeric(16,2) yuan string ("12.30")."""
    sign = "-" if amount_fen < 0 else ""
    yuan, fen = divmod(abs(amount_fen), FEN_PER_YUAN)
    return f"{sign}{yuan}.{fen:02d}"
