"""A demo-world card answering a gateway challenge, as a software card does over APDUs.

Shared by the integration tests that authenticate demo card ``m`` against a real
``gateway serve`` (the demo world of :mod:`sscard.demo`, unlike :mod:`cardkit`'s throwaway PKI).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from sscard import demo as sd
from sscard.apdu import internal_authenticate, select_aid
from sscard.layout import CERT_ADF_AID, PKI_AID, card_auth_message
from sscard.softcard import make_third_gen_card

OK = b"\x90\x00"


def card_auth_response(
    seed: str, m: int, granted: Mapping[str, Any], terminal_id: str
) -> dict[str, str]:
    """The body of ``POST /v1/card-auth/response`` for demo card ``m``, given the challenge
    answer ``granted``: the card selects its PKI and certificate applications and signs the
    profile message (INTERNAL AUTHENTICATE) over the challenge, its card_sn and the terminal."""
    card = sd.demo_card(seed, m)
    soft = make_third_gen_card(
        card.identity,
        sd.demo_card_key(seed, m),
        sd.demo_card_certificate(seed, m, sd.demo_pki(seed)).der,
        sd.DEMO_PIN,
    )
    for command in (select_aid(PKI_AID), select_aid(CERT_ADF_AID)):
        assert soft.transmit(command.to_bytes())[-2:] == OK
    message = card_auth_message(bytes.fromhex(granted["challenge"]), soft.card_sn, terminal_id)
    answer = soft.transmit(internal_authenticate(message).to_bytes())
    assert answer[-2:] == OK
    return {
        "challenge_id": granted["challenge_id"],
        "card_sn": card.card_sn,
        "signature": answer[:-2].hex(),
        "certificate": base64.b64encode(soft.certificate_der).decode(),
    }
