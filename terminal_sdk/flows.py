"""Point-of-care flows, each ending in a :class:`~terminal_sdk.receipt.Receipt`.

* :func:`outpatient_visit` — (PIN) → card authentication → eligibility → pre-settle → the card
  still there? → settle. :func:`pharmacy_purchase` is the same with ``visit_type="pharmacy"``.
* :func:`inpatient_admission` / :func:`inpatient_discharge` — admit with the card; at
  discharge, authenticate again, upload the remaining fee lines, settle the stay.
* :func:`cancel` — full cancel of a settlement.
* :func:`recover_settlement` — the outcome of a settlement whose answer was lost
  (:class:`~terminal_sdk.problems.OutcomeUnknown`): authenticate the (reinserted) card again and
  resend with the same Idempotency-Key; the gateway answers the first outcome, never a second
  settlement.

The card is needed for authentication and is checked once more just before the money moves;
the settlement itself is HTTP only, so a card pulled during it changes nothing at the gateway.
Card operations go through ``run_card`` (a thread by default; the synchronous client runs them
on the caller's thread).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial

from terminal_sdk.card import SocialSecurityCard
from terminal_sdk.client import (
    CardRunner,
    CardSession,
    Claim,
    Eligibility,
    FeeLine,
    GatewayClient,
    PendingOperation,
    _to_thread,
    new_idempotency_key,
)
from terminal_sdk.receipt import Receipt

__all__ = [
    "VisitOutcome",
    "cancel",
    "inpatient_admission",
    "inpatient_discharge",
    "outpatient_visit",
    "pharmacy_purchase",
    "recover_settlement",
]


@dataclass(frozen=True, slots=True)
class VisitOutcome:
    """What a settled visit produced. ``idempotency_key`` is the settlement's key (keep it with
    the HIS order: it finds the settlement again)."""

    receipt: Receipt
    estimate: Receipt
    eligibility: Eligibility
    session: CardSession
    idempotency_key: str


def _today() -> str:
    return dt.date.today().isoformat()


async def _authenticate(
    client: GatewayClient, card: SocialSecurityCard, pin: str | None, run_card: CardRunner
) -> CardSession:
    if pin is not None:
        # Before authentication: a wrong PIN stops the visit before the gateway hears of it.
        await run_card(partial(card.verify_pin, pin))
    return await client.authenticate_card(card, run_card=run_card)


async def outpatient_visit(
    client: GatewayClient,
    card: SocialSecurityCard,
    lines: Iterable[FeeLine],
    *,
    pin: str | None = None,
    visit_date: str | None = None,
    visit_type: str = "outpatient",
    idempotency_key: str | None = None,
    run_card: CardRunner = _to_thread,
) -> VisitOutcome:
    """Settle one outpatient (or emergency, pharmacy) visit for the card in the reader.

    Raises CardRemoved if the card is gone before the settlement is sent (nothing was charged),
    OutcomeUnknown if the settlement's answer was lost (use :func:`recover_settlement`).
    """
    session = await _authenticate(client, card, pin, run_card)
    eligibility = await client.eligibility(session)
    claim = Claim(visit_type, visit_date or _today(), tuple(lines))
    estimate = await client.pre_settle(session, claim)
    await run_card(card.check_present)
    key = idempotency_key or new_idempotency_key()
    receipt = await client.settle(session, claim, idempotency_key=key)
    return VisitOutcome(receipt, estimate, eligibility, session, key)


async def pharmacy_purchase(
    client: GatewayClient,
    card: SocialSecurityCard,
    lines: Iterable[FeeLine],
    *,
    pin: str | None = None,
    visit_date: str | None = None,
    idempotency_key: str | None = None,
    run_card: CardRunner = _to_thread,
) -> VisitOutcome:
    """A purchase at a designated pharmacy: the outpatient flow with ``visit_type="pharmacy"``."""
    return await outpatient_visit(
        client,
        card,
        lines,
        pin=pin,
        visit_date=visit_date,
        visit_type="pharmacy",
        idempotency_key=idempotency_key,
        run_card=run_card,
    )


async def inpatient_admission(
    client: GatewayClient,
    card: SocialSecurityCard,
    *,
    admission_date: str | None = None,
    pin: str | None = None,
    run_card: CardRunner = _to_thread,
) -> str:
    """Admit the cardholder; returns the admission_id to keep with the stay."""
    session = await _authenticate(client, card, pin, run_card)
    return await client.admit(session, admission_date or _today())


async def inpatient_discharge(
    client: GatewayClient,
    card: SocialSecurityCard,
    admission_id: str,
    *,
    lines: Iterable[FeeLine] = (),
    discharge_date: str | None = None,
    pin: str | None = None,
    idempotency_key: str | None = None,
    run_card: CardRunner = _to_thread,
) -> Receipt:
    """Upload the stay's remaining fee lines and settle it (the card must be present)."""
    session = await _authenticate(client, card, pin, run_card)
    remaining = tuple(lines)
    if remaining:
        await client.upload_fee_lines(admission_id, remaining)
    await run_card(card.check_present)
    return await client.discharge(
        session,
        admission_id,
        discharge_date or _today(),
        idempotency_key=idempotency_key or new_idempotency_key(),
    )


async def cancel(
    client: GatewayClient, setl_id: str, reason: str, *, idempotency_key: str | None = None
) -> Receipt | None:
    """Cancel a settlement in full; the cancelled settlement as the gateway now has it (None if
    it cannot be read back)."""
    answer = await client.cancel_settlement(setl_id, reason, idempotency_key=idempotency_key)
    try:
        return Receipt.from_json(answer)
    except ValueError:
        # The cancel answer need not repeat the amounts: read the settlement itself.
        return await client.get_settlement(setl_id)


async def recover_settlement(
    client: GatewayClient,
    pending: PendingOperation,
    card: SocialSecurityCard | None = None,
    *,
    session: CardSession | None = None,
    run_card: CardRunner = _to_thread,
) -> Receipt:
    """The outcome of a settlement whose answer was lost: the first outcome if it happened,
    else it happens now, once. A settlement acts for the cardholder: an unexpired ``session``
    is used as it is, otherwise the (reinserted) ``card`` authenticates again first."""
    if pending.needs_card_session and (session is None or session.expired):
        if card is None:
            raise ValueError("this settlement needs the card: pass the reinserted card")
        session = await client.authenticate_card(card, run_card=run_card)
    return Receipt.from_json(await client.resume(pending, session))
