"""terminal_sdk: what HIS and POS integrators install to use the social security card.

Read a card in a few lines::

    from terminal_sdk import PcscReader, SocialSecurityCard

    with PcscReader() as reader:
        reader.wait_for_card(timeout_s=30)
        card = SocialSecurityCard.connect(reader)
        info = card.read_basic_info(terminal_no="000000000001", device_no="POS-01")
        his_string = info.to_ireadcardbas()      # "310000|...|" as iReadCardBas gives it
        card.verify_pin(pin_from_pinpad)         # WrongPin(.tries_left) / PinBlocked
        certificate = card.read_certificate()    # third generation: EF 0018, DER
        signature = card.internal_authenticate(challenge, terminal_id)

Card authentication with the gateway (the HTTP part is the caller's for now)::

        body = challenge_request(card)            # POST /v1/card-auth/challenge
        proof = prove(card, challenge, terminal_id)
        body = proof.to_request(challenge_id)      # POST /v1/card-auth/response

Everything raises :class:`TerminalError` subclasses, whose ``str()`` a clerk can act on
(``message_zh`` in Chinese). The SDK talks to the gateway over HTTP only (DESIGN §3): it
imports nothing of ``gateway``, ``settlement`` or ``issuance``.
"""

from terminal_sdk.card import BasicInfo, CardGeneration, SocialSecurityCard
from terminal_sdk.card_auth import CardAuthProof, challenge_request, prove
from terminal_sdk.errors import (
    CardDataInvalid,
    CardError,
    CardLocked,
    CardRefused,
    CardRemoved,
    NoCard,
    NoReader,
    PinBlocked,
    ReaderBusy,
    ReaderError,
    TerminalError,
    TransmitFailed,
    UnsupportedCard,
    WrongPin,
)
from terminal_sdk.readers import (
    ApduTrace,
    ApduTransport,
    CardInfo,
    CardInterface,
    EventKind,
    EventStream,
    MemoryReader,
    PcscReader,
    Reader,
    ReaderEvent,
    ReaderInfo,
)

__all__ = [
    "ApduTrace",
    "ApduTransport",
    "BasicInfo",
    "CardAuthProof",
    "CardDataInvalid",
    "CardError",
    "CardGeneration",
    "CardInfo",
    "CardInterface",
    "CardLocked",
    "CardRefused",
    "CardRemoved",
    "EventKind",
    "EventStream",
    "MemoryReader",
    "NoCard",
    "NoReader",
    "PcscReader",
    "PinBlocked",
    "Reader",
    "ReaderBusy",
    "ReaderError",
    "ReaderEvent",
    "ReaderInfo",
    "SocialSecurityCard",
    "TerminalError",
    "TransmitFailed",
    "UnsupportedCard",
    "WrongPin",
    "challenge_request",
    "prove",
]
