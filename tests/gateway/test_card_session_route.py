"""The card session carries the route of the holder's settlements (version 2 tokens), so the
settlement routes decide local vs through the hub before any transaction of theirs; a version 1
token (issued before the route was carried) still verifies and leaves the route to be read."""

from __future__ import annotations

import base64

import pytest

from gateway.card_auth.session import (
    CardSession,
    _mac,
    issue_card_session,
    require_card_session,
)
from gateway.errors import GatewayError
from settlement.crossprov.routing import Route

KEY = bytes(range(32))
CARD_SN = "310000D15600000503000000000000A0"


@pytest.mark.parametrize("route", list(Route))
def test_every_route_travels_in_the_token(route: Route) -> None:
    session = CardSession("T1", CARD_SN, 3, 42, 1_000, route=route)
    token = issue_card_session(KEY, session)
    assert require_card_session(KEY, token, "T1", 999.0).route is route


def _version_1_token(session: CardSession) -> str:
    terminal = session.terminal_id.encode()
    payload = (
        bytes([1, session.generation])
        + session.expires_at_s.to_bytes(8, "big")
        + session.holder_id.to_bytes(8, "big")
        + bytes.fromhex(session.card_sn)
        + bytes([len(terminal)])
        + terminal
    )
    raw = payload + _mac(KEY, payload)
    return "cs1." + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_a_version_1_token_verifies_without_a_route() -> None:
    session = CardSession("T1", CARD_SN, 2, 7, 1_000, route=None)
    assert require_card_session(KEY, _version_1_token(session), "T1", 10.0) == session


def test_an_unknown_route_byte_is_not_a_token_of_ours() -> None:
    token = issue_card_session(KEY, CardSession("T1", CARD_SN, 3, 42, 1_000))
    raw = bytearray(base64.urlsafe_b64decode(token[4:] + "=" * (-len(token[4:]) % 4)))
    payload = bytes(raw[:-32])
    forged = payload[:34] + b"\x09" + payload[35:]  # a route byte no version defines
    raw = bytearray(forged + _mac(KEY, forged))
    bad = "cs1." + base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    with pytest.raises(GatewayError) as refused:
        require_card_session(KEY, bad, "T1", 10.0)
    assert refused.value.code == "CARD_SESSION_INVALID"
