"""Card presence: the national envelope names a card (``card_sn``) but carries no card
signature, so the card must have authenticated (the /v1 challenge-response, unchanged: SM2 on
a third-generation card, the cryptogram on a legacy one) at a terminal of the same
institution, the envelope's device, within the card-session lifetime.

How a device relates to a terminal: the envelope's ``dev_no`` IS the terminal id of the card
reader's terminal (the one ``ssc-terminal his-card`` authenticates at); that terminal must
be enabled and belong to the envelope's institution. Card authentication writes the presence
(gateway.fsi.store.record_presence) in the database, so every worker and replica sees it.

Each worker keeps recent presences (bounded LRU, never past their own expiry): a settle then
reads no presence at all. Safe because a presence only ever gets later (a new authentication),
and the card's registry status is re-checked inside the use case's unit anyway.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from functools import partial
from typing import Final

from aiohttp import web

from gateway.errors import ErrorCode, GatewayError
from gateway.fsi.calls import FsiCall
from gateway.fsi.store import ROUTE_CODES, FoundPresence, find_presence, record_presence
from gateway.settlement_api.calls import registry_check
from gateway.state import DATABASE, TERMINALS
from settlement.counter.ports import AtCounter
from settlement.crossprov.routing import Route

__all__ = [
    "PRESENCE_CACHE",
    "ROUTE_CODES",
    "CardAtCounter",
    "PresenceCache",
    "card_at_counter",
    "record_presence",
]

# Presences remembered per worker: a busy worker's cards of the last minutes.
PRESENCE_CACHE_ENTRIES: Final = 20_000
_ROUTES: Final = {code: route for route, code in ROUTE_CODES.items()}


class PresenceCache:
    """Recent presences of this worker, by (device, card_sn) and (device, card number)."""

    def __init__(self, max_entries: int = PRESENCE_CACHE_ENTRIES) -> None:
        assert max_entries >= 1
        self._max = max_entries
        self._entries: OrderedDict[tuple[str, str], FoundPresence] = OrderedDict()

    def get(self, key: tuple[str, str], now_s: int) -> FoundPresence | None:
        found = self._entries.get(key)
        if found is None:
            return None
        if now_s >= found.record.expires_at_s:
            del self._entries[key]  # a later authentication may exist: read it
            return None
        self._entries.move_to_end(key)
        return found

    def put(self, found: FoundPresence) -> None:
        device = found.record.terminal_id
        for key in ((device, found.record.card_sn), (device, "no:" + found.card_no)):
            self._entries[key] = found
            self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)


PRESENCE_CACHE: Final = web.AppKey("fsi_presence", PresenceCache)


@dataclass(frozen=True, slots=True)
class CardAtCounter:
    at: AtCounter
    route: Route
    card_sn: str
    card_no: str
    generation: int


def _not_present(detail: str) -> GatewayError:
    return GatewayError(ErrorCode.FSI_CARD_NOT_PRESENT, detail)


_CARD_NO_CHARS: Final = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ")


async def card_at_counter(
    call: FsiCall, *, mdtrt_cert_type: str, mdtrt_cert_no: str, card_sn: str | None
) -> CardAtCounter:
    """The cardholder at this counter, if their card is present at the envelope's device:
    named by ``card_sn`` where the client sends it (1101 and most clients), else by its card
    number (``mdtrt_cert_no`` of mdtrt_cert_type 03). Both given: they must be one card."""
    if mdtrt_cert_type != "03":
        raise GatewayError(
            ErrorCode.FSI_CERT_TYPE_UNSUPPORTED,
            f"mdtrt_cert_type {mdtrt_cert_type[:4]!r}: only 03 (social security card) is accepted",
        )
    card_no = mdtrt_cert_no.strip().upper()
    if card_no and (len(card_no) != 9 or not set(card_no) <= _CARD_NO_CHARS):
        raise GatewayError(
            ErrorCode.FSI_ENVELOPE_INVALID, "mdtrt_cert_no must be the 9-character card number"
        )
    sn = None
    if card_sn:
        sn = card_sn.strip().upper()
        if len(sn) != 32 or not set(sn) <= _HEX:
            raise GatewayError(ErrorCode.FSI_ENVELOPE_INVALID, "card_sn must be 32 hex digits")
    elif not card_no:
        raise GatewayError(
            ErrorCode.FSI_ENVELOPE_INVALID, "name the card: card_sn or mdtrt_cert_no"
        )
    dev_no = call.envelope.dev_no
    terminal = await call.app[TERMINALS].get(dev_no)
    if (
        terminal is None
        or not terminal.enabled
        or terminal.institution_suspended
        or terminal.institution_code != call.counter.fixmedins_code
    ):
        raise _not_present("dev_no is not an enabled card terminal of this institution")
    now_s = int(call.now.timestamp())
    cache = call.app[PRESENCE_CACHE]
    key = (dev_no, sn) if sn is not None else (dev_no, "no:" + card_no)
    found = cache.get(key, now_s)
    if found is None:
        found = await call.app[DATABASE].read(
            partial(
                find_presence,
                terminal_id=dev_no,
                card_sn=sn,
                card_no=None if sn is not None else card_no,
            )
        )
        if found is None:
            raise _not_present("this card was not authenticated at this device")
        if now_s >= found.record.expires_at_s:
            raise _not_present("this card's authentication at this device has expired")
        cache.put(found)
    if card_no and found.card_no != card_no:
        raise GatewayError(
            ErrorCode.FSI_CARD_MISMATCH, "mdtrt_cert_no is not the number of the card read"
        )
    record = found.record
    return CardAtCounter(
        AtCounter(call.counter, record.holder_id, registry_check(call.app, record.card_sn)),
        _ROUTES[record.route],
        record.card_sn,
        found.card_no,
        record.generation,
    )


_HEX: Final = frozenset("0123456789ABCDEF")
