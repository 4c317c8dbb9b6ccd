"""Card authentication end to end, in process: software cards answer APDUs, the terminal
signs its requests, the gateway checks challenge -> chain -> signature -> registry (DESIGN §4).

Runs on SQLite and (mark ``postgres``) PostgreSQL through the shared ``db_url`` fixture.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from card_auth_testkit import (
    LEGACY_ACTIVE,
    LEGACY_LOST,
    LEGACY_SUPERSEDED,
    NEW_ACTIVE,
    NEW_EXPIRED,
    NEW_LOST,
    NEW_NOT_ACTIVATED,
    NEW_UNKNOWN,
    SEED,
    CardTerminal,
    certificate_der,
    demo_pki,
    load_registry,
    read_certificate,
    soft_card,
    stored,
)
from gateway_testkit import (
    HOSPITAL,
    OK_TERMINAL,
    OTHER_TERMINAL,
    SECRETS,
    Client,
    FakeClock,
    Signer,
    assert_problem,
)
from sqlalchemy import Engine, insert, update
from sqlalchemy.orm import Session

from gateway.app import create_app
from gateway.card_auth.service import CARD_AUTH
from gateway.card_auth.tables import delete_expired_challenges
from gateway.errors import GatewayError
from gateway.settings import Settings
from gateway.store import Terminal
from issuance.store import Card
from sscard import demo as sd
from sscard.certs import build_card_certificate, fingerprint_sm3
from sscard.crypto import sm2_sign
from sscard.layout import card_auth_message
from sscard.softcard import make_third_gen_card


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    # The demo PKI and legacy master key on every backend (auto would use them on SQLite only).
    return {"demo_world": "on"}


@pytest.fixture
def registry(engine: Engine) -> Engine:
    load_registry(engine)
    return engine


@pytest.fixture
def terminal(signer: Signer, registry: Engine) -> CardTerminal:
    return CardTerminal(signer)


def card_sn(m: int) -> str:
    return sd.demo_card(SEED, m).card_sn


# -- success --------------------------------------------------------------------------------------


async def test_new_card_authenticates(
    terminal: CardTerminal, client: Client, registry: Engine, settings: Settings
) -> None:
    response = await terminal.authenticate(NEW_ACTIVE)
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body["card_sn"] == card_sn(NEW_ACTIVE)
    assert body["generation"] == 3
    assert body["expires_in_s"] == settings.card_session_ttl_s
    session = client.app[CARD_AUTH].require_card_session(body["card_session"], OK_TERMINAL)
    assert (session.card_sn, session.generation, session.holder_id) == (card_sn(0), 3, 1)
    assert stored(registry) == {"challenges": 1, "used": 1, "certificates": 1}


async def test_challenge_shape_per_generation(
    terminal: CardTerminal, registry: Engine, settings: Settings
) -> None:
    new = await terminal.granted_challenge(card_sn(NEW_ACTIVE), 3)
    old = await terminal.granted_challenge(card_sn(LEGACY_ACTIVE), 2)
    assert len(bytes.fromhex(new["challenge"])) == 16
    assert len(bytes.fromhex(old["challenge"])) == 8
    assert new["expires_in_s"] == old["expires_in_s"] == settings.challenge_ttl_s
    assert new["challenge_id"] != old["challenge_id"]
    assert stored(registry) == {"challenges": 2, "used": 0, "certificates": 0}


async def test_active_legacy_card_authenticates(terminal: CardTerminal, registry: Engine) -> None:
    response = await terminal.authenticate(LEGACY_ACTIVE)
    assert response.status == 200, await response.text()
    body = await response.json()
    assert (body["card_sn"], body["generation"]) == (card_sn(LEGACY_ACTIVE), 2)
    assert stored(registry) == {"challenges": 1, "used": 1, "certificates": 0}


# -- the challenge --------------------------------------------------------------------------------


async def test_answer_from_another_terminal_is_a_mismatch_and_burns_the_challenge(
    terminal: CardTerminal, client: Client, clock: FakeClock, registry: Engine
) -> None:
    card = soft_card(NEW_ACTIVE)
    granted = await terminal.granted_challenge(card.card_sn.hex, 3)
    other = CardTerminal(Signer(client, clock, OTHER_TERMINAL, SECRETS[OTHER_TERMINAL]))
    # The card signs for the terminal that relays it: all the same, the challenge is not its.
    body = terminal.answer(card, granted, terminal_id=OTHER_TERMINAL)
    await assert_problem(await other.respond(body), 403, "CHALLENGE_MISMATCH")
    # Burnt: the rightful terminal cannot use it afterwards either.
    retry = terminal.answer(soft_card(NEW_ACTIVE), granted)
    await assert_problem(await terminal.respond(retry), 409, "CHALLENGE_REUSED")
    assert stored(registry) == {"challenges": 1, "used": 1, "certificates": 0}


async def test_answer_for_another_card_is_a_mismatch(
    terminal: CardTerminal, registry: Engine
) -> None:
    granted = await terminal.granted_challenge(card_sn(NEW_LOST), 3)
    body = terminal.answer(soft_card(NEW_ACTIVE), granted)
    await assert_problem(await terminal.respond(body), 403, "CHALLENGE_MISMATCH")
    assert stored(registry) == {"challenges": 1, "used": 1, "certificates": 0}


async def test_legacy_answer_to_a_new_card_challenge_is_a_mismatch(
    terminal: CardTerminal, registry: Engine
) -> None:
    granted = await terminal.granted_challenge(card_sn(LEGACY_ACTIVE), 3)
    body = {
        "challenge_id": granted["challenge_id"],
        "card_sn": card_sn(LEGACY_ACTIVE),
        "cryptogram": "00" * 8,
    }
    await assert_problem(await terminal.respond(body), 403, "CHALLENGE_MISMATCH")


async def test_expired_challenge(
    terminal: CardTerminal, clock: FakeClock, registry: Engine
) -> None:
    card = soft_card(NEW_ACTIVE)
    granted = await terminal.granted_challenge(card.card_sn.hex, 3)
    clock.now_s += granted["expires_in_s"]
    await assert_problem(
        await terminal.respond(terminal.answer(card, granted)), 410, "CHALLENGE_EXPIRED"
    )
    assert stored(registry)["certificates"] == 0


async def test_reused_challenge(terminal: CardTerminal, registry: Engine) -> None:
    card = soft_card(NEW_ACTIVE)
    granted = await terminal.granted_challenge(card.card_sn.hex, 3)
    body = terminal.answer(card, granted)
    assert (await terminal.respond(body)).status == 200
    # The same answer again (a new request nonce, so it passes the replay guard).
    await assert_problem(await terminal.respond(body), 409, "CHALLENGE_REUSED")
    assert stored(registry) == {"challenges": 1, "used": 1, "certificates": 1}


async def test_unknown_challenge(terminal: CardTerminal, registry: Engine) -> None:
    body = {
        "challenge_id": "A" * 22,
        "card_sn": card_sn(LEGACY_ACTIVE),
        "cryptogram": "00" * 8,
    }
    await assert_problem(await terminal.respond(body), 404, "CHALLENGE_UNKNOWN")
    assert stored(registry) == {"challenges": 0, "used": 0, "certificates": 0}


async def test_concurrent_answers_to_one_challenge_win_once(terminal: CardTerminal) -> None:
    card = soft_card(NEW_ACTIVE)
    granted = await terminal.granted_challenge(card.card_sn.hex, 3)
    body = terminal.answer(card, granted)
    responses = await asyncio.gather(*(terminal.respond(body) for _ in range(4)))
    assert sorted(r.status for r in responses) == [200, 409, 409, 409]


# -- the certificate ------------------------------------------------------------------------------


async def test_certificate_from_another_ca(terminal: CardTerminal, registry: Engine) -> None:
    # A look-alike CA: the demo CA's names, other keys (the demo PKI of another seed).
    rogue = sd.demo_pki("rogue-seed")
    card = sd.demo_card(SEED, NEW_ACTIVE)
    key = sd.demo_card_key(SEED, NEW_ACTIVE)
    cert = build_card_certificate(
        key.public_key,
        card_sn=card.card_sn,
        common_name=card.identity.card_no,
        issuer=rogue.issuing,
        issuer_key=rogue.issuing_key,
        not_before=dt.datetime(2019, 1, 1, tzinfo=dt.UTC),
        not_after=dt.datetime(2029, 1, 1, tzinfo=dt.UTC),
    )
    forged = make_third_gen_card(card.identity, key, cert.der, sd.DEMO_PIN)
    granted = await terminal.granted_challenge(card.card_sn, 3)
    response = await terminal.respond(terminal.answer(forged, granted))
    await assert_problem(response, 401, "CERT_CHAIN_INVALID")
    assert stored(registry) == {"challenges": 1, "used": 1, "certificates": 0}


async def test_tampered_certificate(terminal: CardTerminal, registry: Engine) -> None:
    card = soft_card(NEW_ACTIVE)
    granted = await terminal.granted_challenge(card.card_sn.hex, 3)
    body = terminal.answer(card, granted)
    der = base64.b64decode(body["certificate"])
    card_no = sd.demo_card(SEED, NEW_ACTIVE).identity.card_no.encode()
    assert der.count(card_no) == 1
    body["certificate"] = base64.b64encode(der.replace(card_no, b"S99999999")).decode()
    await assert_problem(await terminal.respond(body), 401, "CERT_SIGNATURE_INVALID")
    assert stored(registry)["certificates"] == 0


async def test_malformed_certificate(terminal: CardTerminal, registry: Engine) -> None:
    card = soft_card(NEW_ACTIVE)
    granted = await terminal.granted_challenge(card.card_sn.hex, 3)
    body = terminal.answer(card, granted) | {"certificate": base64.b64encode(b"0" * 40).decode()}
    await assert_problem(await terminal.respond(body), 401, "CERT_MALFORMED")


async def test_another_cards_genuine_certificate(terminal: CardTerminal, registry: Engine) -> None:
    card = soft_card(NEW_ACTIVE)
    granted = await terminal.granted_challenge(card.card_sn.hex, 3)
    stolen = soft_card(NEW_LOST)
    body = terminal.answer(card, granted)
    body["certificate"] = base64.b64encode(read_certificate(stolen)).decode()
    await assert_problem(await terminal.respond(body), 401, "CERT_CARD_MISMATCH")


async def test_expired_certificate(terminal: CardTerminal, registry: Engine) -> None:
    # Demo card 14 and its certificate expired on 2026-01-04; the chain is checked first.
    await assert_problem(await terminal.authenticate(NEW_EXPIRED), 401, "CERT_EXPIRED")


async def test_certificate_hash_only_before_and_after_it_was_seen(
    terminal: CardTerminal, registry: Engine, settings: Settings, clock: FakeClock
) -> None:
    # Not seen by any worker: the terminal must send the certificate (challenge is burnt).
    await assert_problem(
        await terminal.authenticate(NEW_ACTIVE, hash_only=True), 422, "CERT_UNKNOWN"
    )
    assert stored(registry) == {"challenges": 1, "used": 1, "certificates": 0}
    assert (await terminal.authenticate(NEW_ACTIVE)).status == 200
    assert stored(registry)["certificates"] == 1
    # Seen: this worker (cache) and another worker with a cold cache (the table) accept it.
    assert (await terminal.authenticate(NEW_ACTIVE, hash_only=True)).status == 200
    async with TestClient(TestServer(create_app(settings, clock=clock))) as other_worker:
        other = CardTerminal(Signer(other_worker, clock))
        assert len(other_worker.app[CARD_AUTH].certificates) == 0
        assert (await other.authenticate(NEW_ACTIVE, hash_only=True)).status == 200
    assert stored(registry) == {"challenges": 4, "used": 4, "certificates": 1}


async def test_cached_certificate_is_rechecked_against_the_clock(
    terminal: CardTerminal, client: Client, clock: FakeClock, registry: Engine
) -> None:
    assert (await terminal.authenticate(NEW_ACTIVE)).status == 200
    cache = client.app[CARD_AUTH].certificates
    assert len(cache) == 1
    expiry = sd.demo_card(SEED, NEW_ACTIVE).identity.expiry_date
    clock.now_s = dt.datetime(expiry.year, expiry.month, expiry.day, 1, tzinfo=dt.UTC).timestamp()
    response = await terminal.authenticate(NEW_ACTIVE, hash_only=True)
    await assert_problem(response, 401, "CERT_EXPIRED")


# -- the registry ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("m", "code"),
    [
        (NEW_LOST, "CARD_LOST"),
        (LEGACY_LOST, "CARD_LOST"),
        (LEGACY_SUPERSEDED, "CARD_SUPERSEDED"),
        (NEW_UNKNOWN, "CARD_UNKNOWN"),
        (NEW_NOT_ACTIVATED, "CARD_NOT_ACTIVATED"),
    ],
)
async def test_registry_refuses(
    terminal: CardTerminal,
    registry: Engine,
    rejection_delta: Callable[[str], Callable[[], float]],
    m: int,
    code: str,
) -> None:
    delta = rejection_delta(code)
    body = await assert_problem(await terminal.authenticate(m), 403, code)
    assert delta() == 1
    assert stored(registry) == {"challenges": 1, "used": 1, "certificates": 0}
    holder = sd.demo_holder(SEED, m // 2)
    text = str(body)
    assert holder.citizen_id not in text
    assert holder.name not in text


async def test_superseded_card_tells_the_clerk_to_use_the_new_card(terminal: CardTerminal) -> None:
    body = await assert_problem(
        await terminal.authenticate(LEGACY_SUPERSEDED), 403, "CARD_SUPERSEDED"
    )
    assert "use the new card" in body["message"]
    assert "请使用新卡" in body["message_zh"]


async def test_expired_card_in_the_registry(
    terminal: CardTerminal, clock: FakeClock, registry: Engine
) -> None:
    # Before its certificate expired, the registry already says EXPIRED.
    clock.now_s = dt.datetime(2025, 6, 1, tzinfo=dt.UTC).timestamp()
    await assert_problem(await terminal.authenticate(NEW_EXPIRED), 403, "CARD_EXPIRED")


@pytest.mark.parametrize(
    "settings_overrides",
    [{"demo_world": "on", "legacy_parallel_use_until": "2026-12-31"}],
)
async def test_legacy_card_after_the_parallel_use_period(terminal: CardTerminal) -> None:
    await assert_problem(await terminal.authenticate(LEGACY_ACTIVE), 403, "LEGACY_PERIOD_OVER")
    assert (await terminal.authenticate(NEW_ACTIVE)).status == 200


# -- the card's proof -----------------------------------------------------------------------------


async def test_forged_signature(terminal: CardTerminal, registry: Engine) -> None:
    card = soft_card(NEW_ACTIVE)
    granted = await terminal.granted_challenge(card.card_sn.hex, 3)
    body = terminal.answer(card, granted)
    signature = bytearray.fromhex(body["signature"])
    signature[5] ^= 0x01
    body["signature"] = signature.hex()
    await assert_problem(await terminal.respond(body), 401, "CARD_SIGNATURE_INVALID")
    assert stored(registry) == {"challenges": 1, "used": 1, "certificates": 0}


async def test_signature_made_for_another_terminal(terminal: CardTerminal) -> None:
    # A relayed answer: the card signed a message naming another terminal.
    card = soft_card(NEW_ACTIVE)
    granted = await terminal.granted_challenge(card.card_sn.hex, 3)
    body = terminal.answer(card, granted, terminal_id=OTHER_TERMINAL)
    await assert_problem(await terminal.respond(body), 401, "CARD_SIGNATURE_INVALID")


async def test_wrong_legacy_cryptogram(terminal: CardTerminal, registry: Engine) -> None:
    card = soft_card(LEGACY_ACTIVE)
    granted = await terminal.granted_challenge(card.card_sn.hex, 2)
    body = terminal.answer(card, granted)
    body["cryptogram"] = ("%016x" % (int(body["cryptogram"], 16) ^ 1)).upper()
    await assert_problem(await terminal.respond(body), 401, "CRYPTOGRAM_INVALID")
    assert stored(registry) == {"challenges": 1, "used": 1, "certificates": 0}


# -- bad input changes nothing --------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"card_sn": "310000D1560000050300000000000000", "generation": 4},
        {"card_sn": "310000D1560000060300000000000000", "generation": 3},  # not the RID
        {"card_sn": "31", "generation": 3},
        {"card_sn": "310000D1560000050300000000000000", "generation": "3"},
    ],
)
async def test_bad_challenge_requests(terminal: CardTerminal, registry: Engine, body: Any) -> None:
    response = await terminal.signer.post("/v1/card-auth/challenge", body)
    await assert_problem(response, 422, "VALIDATION_FAILED")
    assert stored(registry) == {"challenges": 0, "used": 0, "certificates": 0}


@pytest.mark.parametrize(
    "change",
    [
        {"cryptogram": "00" * 8},  # both kinds of answer
        {"certificate": None},  # neither certificate nor hash
        {"certificate_sm3": "00" * 32},  # both certificate and hash
        {"signature": "00" * 63},
        {"certificate": "not base64!"},
        {"extra": 1},
    ],
)
async def test_bad_answers_burn_nothing(
    terminal: CardTerminal, registry: Engine, change: dict[str, Any]
) -> None:
    card = soft_card(NEW_ACTIVE)
    granted = await terminal.granted_challenge(card.card_sn.hex, 3)
    body = terminal.answer(card, granted)
    body.update(change)
    body = {k: v for k, v in body.items() if v is not None}
    await assert_problem(await terminal.respond(body), 422, "VALIDATION_FAILED")
    assert stored(registry) == {"challenges": 1, "used": 0, "certificates": 0}
    # The challenge is still good for a well-formed answer.
    assert (await terminal.respond(terminal.answer(card, granted))).status == 200


# -- the card session -----------------------------------------------------------------------------


async def test_card_session_token(terminal: CardTerminal, client: Client, clock: FakeClock) -> None:
    response = await terminal.authenticate(LEGACY_ACTIVE)
    token = (await response.json())["card_session"]
    service = client.app[CARD_AUTH]
    session = service.require_card_session(token, OK_TERMINAL)
    assert (session.terminal_id, session.card_sn, session.generation) == (
        OK_TERMINAL,
        card_sn(LEGACY_ACTIVE),
        2,
    )
    assert session.holder_id == LEGACY_ACTIVE // 2 + 1

    with pytest.raises(GatewayError) as wrong:
        service.require_card_session(token, OTHER_TERMINAL)
    assert wrong.value.code == "CARD_SESSION_WRONG_TERMINAL"

    tampered = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    with pytest.raises(GatewayError) as invalid:
        service.require_card_session(tampered, OK_TERMINAL)
    assert invalid.value.code == "CARD_SESSION_INVALID"

    clock.now_s += session.expires_at_s - clock.now_s
    with pytest.raises(GatewayError) as expired:
        service.require_card_session(token, OK_TERMINAL)
    assert expired.value.code == "CARD_SESSION_EXPIRED"


async def test_every_worker_shares_the_session_key(
    terminal: CardTerminal, settings: Settings, clock: FakeClock
) -> None:
    token = (await (await terminal.authenticate(NEW_ACTIVE)).json())["card_session"]
    async with TestClient(TestServer(create_app(settings, clock=clock))) as other_worker:
        session = other_worker.app[CARD_AUTH].require_card_session(token, OK_TERMINAL)
    assert session.card_sn == card_sn(NEW_ACTIVE)


# -- consistency checks and configuration ---------------------------------------------------------


async def test_certificate_other_than_the_registered_one(
    terminal: CardTerminal, registry: Engine
) -> None:
    with Session(registry) as session, session.begin():
        session.execute(
            update(Card).where(Card.card_sn == card_sn(NEW_ACTIVE)).values(cert_sm3="ab" * 32)
        )
    await assert_problem(await terminal.authenticate(NEW_ACTIVE), 403, "CERT_NOT_CURRENT")
    registered = fingerprint_sm3(certificate_der(NEW_ACTIVE)).hex()
    with Session(registry) as session, session.begin():
        session.execute(
            update(Card).where(Card.card_sn == card_sn(NEW_ACTIVE)).values(cert_sm3=registered)
        )
    assert (await terminal.authenticate(NEW_ACTIVE)).status == 200


async def test_new_card_answer_for_a_card_registered_as_legacy(
    terminal: CardTerminal, registry: Engine
) -> None:
    # A genuine certificate naming the legacy card's card_sn (say, a terminal bug made the
    # gateway believe it is a new card): the registry knows better.
    legacy_sn = card_sn(LEGACY_ACTIVE)
    key = sd.demo_card_key(SEED, NEW_ACTIVE)
    cert = build_card_certificate(
        key.public_key,
        card_sn=legacy_sn,
        common_name="L00000005",
        issuer=demo_pki().issuing,
        issuer_key=demo_pki().issuing_key,
        not_before=dt.datetime(2019, 1, 1, tzinfo=dt.UTC),
        not_after=dt.datetime(2029, 1, 1, tzinfo=dt.UTC),
    )
    granted = await terminal.granted_challenge(legacy_sn, 3)
    challenge = bytes.fromhex(granted["challenge"])
    message = card_auth_message(challenge, bytes.fromhex(legacy_sn), OK_TERMINAL)
    body = {
        "challenge_id": granted["challenge_id"],
        "card_sn": legacy_sn,
        "signature": sm2_sign(key, message).hex(),
        "certificate": base64.b64encode(cert.der).decode(),
    }
    await assert_problem(await terminal.respond(body), 422, "CARD_GENERATION_MISMATCH")


async def test_terminal_id_too_long_for_the_card(
    client: Client, clock: FakeClock, registry: Engine
) -> None:
    long_id = "TEST-" + "L" * 30
    with Session(registry) as session, session.begin():
        session.execute(
            insert(Terminal).values(
                terminal_id=long_id, institution_code=HOSPITAL, secret=b"\x44" * 32, enabled=True
            )
        )
    terminal = CardTerminal(Signer(client, clock, long_id, b"\x44" * 32))
    await assert_problem(
        await terminal.challenge(card_sn(NEW_ACTIVE), 3), 422, "TERMINAL_ID_TOO_LONG"
    )
    # Legacy cards do not sign the terminal id: no limit there.
    assert (await terminal.challenge(card_sn(LEGACY_ACTIVE), 2)).status == 200


@pytest.mark.parametrize("settings_overrides", [{"demo_world": "off"}])
async def test_without_trust_root_or_master_key_card_auth_is_unavailable(
    terminal: CardTerminal, registry: Engine
) -> None:
    for m in (NEW_ACTIVE, LEGACY_ACTIVE):
        response = await terminal.challenge(card_sn(m), sd.demo_card(SEED, m).generation)
        await assert_problem(response, 503, "CARD_AUTH_UNAVAILABLE")
    assert stored(registry)["challenges"] == 0


async def test_old_challenges_are_swept_in_bounded_batches(
    terminal: CardTerminal, registry: Engine, clock: FakeClock
) -> None:
    for _ in range(3):
        await terminal.granted_challenge(card_sn(NEW_ACTIVE), 3)
    now_ms = int(clock.now_s * 1000)
    with Session(registry) as session, session.begin():
        assert delete_expired_challenges(session, before_ms=now_ms, limit=10) == 0
    later_ms = now_ms + 60_000
    with Session(registry) as session, session.begin():
        assert delete_expired_challenges(session, before_ms=later_ms, limit=2) == 2
    assert stored(registry)["challenges"] == 1


async def test_no_personal_data_in_logs_or_answers(
    terminal: CardTerminal, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    answers = []
    for m in (NEW_ACTIVE, NEW_LOST, LEGACY_SUPERSEDED, NEW_UNKNOWN):
        answers.append(await (await terminal.authenticate(m)).text())
    text = caplog.text + "".join(answers)
    for m in (NEW_ACTIVE, NEW_LOST, LEGACY_SUPERSEDED, NEW_UNKNOWN):
        holder = sd.demo_holder(SEED, m // 2)
        assert holder.citizen_id not in text
        assert holder.name not in text
