"""Input shapes shared by several transactions: who the card is, and fee lines."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from pydantic import Field

from gateway.errors import ErrorCode, GatewayError
from gateway.fsi.calls import InputModel
from gateway.fsi.envelope import to_fen
from settlement.claim import MAX_CLAIM_LINES, ClaimLine
from settlement.counter.outcomes import claim_lines

__all__ = ["CardInput", "FeeLineIn", "Lines", "fee_lines", "optional_fen"]

# One upload's lines: the engine's bound on a claim (a visit's total bound is checked by the
# use case under the visit's lock).
MAX_UPLOAD_LINES: Final = MAX_CLAIM_LINES


class CardInput(InputModel):
    """The card the transaction acts for (mdtrt_cert_type 03: the social security card)."""

    psn_no: str = Field("", max_length=30)
    mdtrt_cert_type: str = Field("03", max_length=3)
    mdtrt_cert_no: str = Field("", max_length=50)
    card_sn: str = Field("", max_length=32)
    insutype: str = Field("", max_length=6)
    medfee_sumamt: Any = None


class FeeLineIn(InputModel):
    """One fee line (费用明细) as 2204/2301/2101 send it."""

    feedetl_sn: str = Field("", max_length=30)
    mdtrt_id: str = Field("", max_length=40)
    psn_no: str = Field("", max_length=30)
    chrg_bchno: str = Field("", max_length=30)
    med_list_codg: str = Field(min_length=1, max_length=50)
    medins_list_codg: str = Field("", max_length=50)
    cnt: Any
    pric: Any
    det_item_fee_sumamt: Any = None


@dataclass(frozen=True, slots=True)
class Lines:
    claim: list[ClaimLine]
    feedetl_sns: list[str]
    sum_fen: int


def _count(value: object, field: str) -> int:
    # cnt is numeric(16,4) in the spec; the engine settles whole units, so 2 and "2.0000"
    # are accepted and 1.5 is refused.
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise GatewayError(ErrorCode.FSI_ENVELOPE_INVALID, f"{field} must be a number")
    try:
        number = Decimal(value.strip()) if isinstance(value, str) else Decimal(value)
    except InvalidOperation:
        raise GatewayError(ErrorCode.FSI_ENVELOPE_INVALID, f"{field} must be a number") from None
    if not number.is_finite() or number != number.to_integral_value() or not 0 < number < 10**6:
        raise GatewayError(
            ErrorCode.FSI_ENVELOPE_INVALID, f"{field} must be a whole count from 1 to 999999"
        )
    return int(number)


def fee_lines(raw: Sequence[FeeLineIn], *, where: str = "feedetail") -> Lines:
    """The lines as engine lines: catalogue codes known (UNKNOWN_CATALOGUE_CODE before any
    unit starts), counts whole, each line's total (when sent) its count times its price."""
    if not raw:
        raise GatewayError(ErrorCode.FSI_ENVELOPE_INVALID, f"{where} has no lines")
    if len(raw) > MAX_UPLOAD_LINES:
        raise GatewayError(
            ErrorCode.TOO_MANY_LINES, f"{where} has more than {MAX_UPLOAD_LINES} lines"
        )
    triples = []
    total = 0
    for number, line in enumerate(raw):
        name = f"{where}[{number}]"
        quantity = _count(line.cnt, f"{name}.cnt")
        price_fen = to_fen(line.pric, f"{name}.pric")
        if line.det_item_fee_sumamt is not None:
            sent = to_fen(line.det_item_fee_sumamt, f"{name}.det_item_fee_sumamt")
            if sent != quantity * price_fen:
                raise GatewayError(
                    ErrorCode.FSI_AMOUNT_MISMATCH,
                    f"{name}.det_item_fee_sumamt is not cnt × pric",
                )
        triples.append((line.med_list_codg, quantity, price_fen))
        total += quantity * price_fen
    return Lines(claim_lines(triples), [line.feedetl_sn for line in raw], total)


def optional_fen(value: object, field: str) -> int | None:
    return None if value is None or value == "" else to_fen(value, field)
