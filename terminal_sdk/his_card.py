"""The card-reader step of an HIS on the national-interface door (docs/national-interface.md §4).

An envelope names a card (``card_sn``, ``mdtrt_cert_no``) but carries no card signature: the
gateway accepts it only if that card authenticated at the envelope's device (``dev_no`` = this
terminal's id) within the card-session lifetime. :func:`read_his_card` is that step, without
any crypto in the HIS: read the card, (optionally) verify the PIN, authenticate it at the
gateway (the SDK's challenge-response, unchanged), and hand back what the HIS passes on, as it
passes on its card-reader DLL's output today::

    with SyncGatewayClient(url, terminal_id, secret) as client:
        read = read_his_card(client, card)
    read.to_line()
    # "A12345678|310000D156000005...|张三|11010519491231002X|2027-01-15 09:05:00|H31000000001-01|"

``ssc-terminal his-card`` prints the same line (or ``--json``).

The line, like ``iReadCardBas``, is ``|``-separated with a ``|`` after every field::

    #  field                         envelope field it feeds
    1  卡号 card number (9)           mdtrt_cert_no (mdtrt_cert_type 03)
    2  卡识别码 card_sn (32 hex)       card_sn
    3  姓名 name                      psn_name (display)
    4  社会保障号码 citizen id (18)     certno (display, check)
    5  session expiry, Beijing time  the HIS must settle before it (yyyy-MM-dd HH:mm:ss)
    6  dev_no (this terminal's id)   dev_no

The expiry is this machine's clock plus the lifetime the gateway granted (``expires_in_s``),
taken when the answer arrived: a little early, never late. The output holds personal data: it
is for the HIS that asked for it, never for a log (the ``repr`` is masked).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from sscard.masking import mask_card_no, mask_citizen_id, mask_name
from terminal_sdk.card import BASIC_INFO_SEPARATOR, SocialSecurityCard
from terminal_sdk.client import CardSession
from terminal_sdk.errors import CardDataInvalid
from terminal_sdk.sync_client import SyncGatewayClient

__all__ = ["HisCard", "read_his_card"]

BEIJING: Final = dt.timezone(dt.timedelta(hours=8), "Asia/Shanghai")
TIME_FORMAT: Final = "%Y-%m-%d %H:%M:%S"


@dataclass(frozen=True, slots=True, repr=False)
class HisCard:
    """A card read and authenticated at this terminal: what the HIS puts into its envelopes."""

    card_no: str
    card_sn: str
    name: str
    citizen_id: str
    generation: int
    dev_no: str
    expires_at: dt.datetime
    expires_in_s: int

    def fields(self) -> tuple[str, ...]:
        return (
            self.card_no,
            self.card_sn,
            self.name,
            self.citizen_id,
            self.expires_at.astimezone(BEIJING).strftime(TIME_FORMAT),
            self.dev_no,
        )

    def to_line(self) -> str:
        """``card_no|card_sn|name|citizen_id|expiry|dev_no|``."""
        values = self.fields()
        if any(BASIC_INFO_SEPARATOR in value for value in values):
            raise ValueError(f"a field contains '{BASIC_INFO_SEPARATOR}'")
        return BASIC_INFO_SEPARATOR.join(values) + BASIC_INFO_SEPARATOR

    def to_json(self) -> dict[str, Any]:
        """The same, named as the envelope names them (plus the card's generation)."""
        return {
            "mdtrt_cert_type": "03",
            "mdtrt_cert_no": self.card_no,
            "card_sn": self.card_sn,
            "psn_name": self.name,
            "certno": self.citizen_id,
            "generation": self.generation,
            "dev_no": self.dev_no,
            "expires_at": self.fields()[4],
            "expires_in_s": self.expires_in_s,
        }

    def __repr__(self) -> str:
        return (
            f"HisCard(card_no={mask_card_no(self.card_no)!r}, card_sn={self.card_sn!r}, "
            f"name={mask_name(self.name)!r}, citizen_id={mask_citizen_id(self.citizen_id)!r}, "
            f"generation={self.generation}, dev_no={self.dev_no!r}, "
            f"expires_at={self.fields()[4]!r})"
        )


def read_his_card(
    client: SyncGatewayClient,
    card: SocialSecurityCard,
    *,
    pin: str | None = None,
    clock: Callable[[], float] = time.time,
) -> HisCard:
    """Read the card, verify ``pin`` if given, authenticate the card at the gateway as this
    client's terminal, and return what the HIS passes on. Raises the SDK's typed errors (a
    card the gateway refuses: its GatewayProblem; a card swapped between the read and the
    authentication: CardDataInvalid)."""
    info = card.read_basic_info(device_no=client.terminal_id)
    if pin is not None:
        card.verify_pin(pin)
    session: CardSession = client.authenticate_card(card)
    granted_at = clock()
    if session.card_sn.upper() != info.card_sn.upper():
        raise CardDataInvalid(
            "The card authenticated is not the card read: read the card again.",
            message_zh="认证的卡不是读取的卡，请重新读卡。",
        )
    return HisCard(
        card_no=info.card_no,
        card_sn=info.card_sn.upper(),
        name=info.name,
        citizen_id=info.citizen_id,
        generation=session.generation,
        dev_no=client.terminal_id,
        expires_at=dt.datetime.fromtimestamp(granted_at + session.expires_in_s, BEIJING),
        expires_in_s=session.expires_in_s,
    )
