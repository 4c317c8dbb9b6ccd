"""Card authentication as a service: the I/O around the pure checks of gateway.card_auth.checks.

One :class:`CardAuthService` per worker process, built at start-up by :func:`card_auth_context`
(an aiohttp cleanup context, after the database). It owns the trust anchors, the key manager,
the card-session key (shared by every worker through the ``gateway_secrets`` table) and the
worker's cache of verified certificates.

Transactions of one authentication, each one thread hop (both routes are
``nonce_in_handler`` routes: the request nonce is inserted by the same write unit, first):

1. write: consume the challenge (committed BEFORE any check can fail, so it is burnt anyway),
          and in the same transaction read the registry row (never cached: a card reported
          lost is refused at once), the route of the holder's settlements (carried in the card
          session, so settlement knows which way a visit goes before it transacts) and, when
          the terminal sent only the certificate's SM3 hash and this worker has not verified
          it, the stored certificate;
2. write: store the certificate, only the first time this worker sees it authenticate a card.

The checks themselves run afterwards, in DESIGN §4's order, on what was read: the card's
own proof before its registry status, so nothing about the registry reaches a caller that
has not shown the card (docs/card-authentication.md §5).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from functools import partial
from typing import Final

from aiohttp import web
from sqlalchemy.orm import Session

from dbkit import beijing_date
from gateway import metrics
from gateway.card_auth import checks
from gateway.card_auth.keys import KeyManager, SoftwareKeyManager, load_master_key_file
from gateway.card_auth.revocation import RevokedSerials, refresh_forever
from gateway.card_auth.session import (
    SESSION_KEY_LEN,
    CardSession,
    issue_card_session,
    require_card_session,
)
from gateway.card_auth.tables import (
    ChallengeRecord,
    ConsumedChallenge,
    consume_challenge,
    delete_expired_challenges,
    find_certificate,
    insert_challenge,
    load_session_key,
    store_certificate,
)
from gateway.card_auth.trust import TrustAnchors, VerifiedCertificateCache
from gateway.db import Database
from gateway.errors import ErrorCode, GatewayError
from gateway.fsi.store import ROUTE_CODES, PresenceRecord, record_presence
from gateway.logs import fields
from gateway.routing import NonceClaim
from gateway.settings import Settings
from gateway.state import CLOCK, DATABASE, KEY_RING, SETTINGS
from gateway.store import SecretsUnavailable
from issuance.registry import CardRecord, read_card
from settlement.counter.holders import insured_route
from settlement.crossprov.routing import Route
from sscard import demo as sscard_demo
from sscard.certs import VerifiedCertificate, fingerprint_sm3
from sscard.layout import CHALLENGE_LEN_GEN2, CHALLENGE_LEN_GEN3, MAX_TERMINAL_ID_LEN

__all__ = [
    "CARD_AUTH",
    "AuthAttempt",
    "CardAuthService",
    "IssuedChallenge",
    "IssuedSession",
    "LoadedAttempt",
    "card_auth_context",
    "consume_and_read",
    "insert_challenge_claiming",
]

log = logging.getLogger("gateway.card_auth")

# Expired challenges are kept this long (so a late answer is told EXPIRED, not UNKNOWN), then
# swept in bounded batches.
CHALLENGE_RETENTION_S: Final = 600


@dataclass(frozen=True, slots=True)
class IssuedChallenge:
    challenge_id: str
    challenge: bytes
    expires_in_s: int


@dataclass(frozen=True, slots=True)
class AuthAttempt:
    """A card's answer, as the terminal sent it (already schema-validated).

    Generation 3: ``signature`` and one of ``certificate_der`` / ``certificate_sm3``.
    Generation 2: ``cryptogram``.
    """

    challenge_id: str
    card_sn: str
    signature: bytes | None = None
    certificate_der: bytes | None = None
    certificate_sm3: bytes | None = None
    cryptogram: bytes | None = None

    @property
    def generation(self) -> int:
        return 3 if self.signature is not None else 2


@dataclass(frozen=True, slots=True)
class IssuedSession:
    token: str
    expires_in_s: int
    card_sn: str
    generation: int


class CardAuthService:
    def __init__(
        self,
        *,
        db: Database,
        clock: Callable[[], float],
        settings: Settings,
        trust: TrustAnchors | None,
        keys: KeyManager | None,
        session_key: bytes | None,
        revoked: RevokedSerials | None = None,
    ) -> None:
        # None: the stored key is sealed under a KEK this worker does not hold; every use of
        # it answers 503 KEK_UNAVAILABLE, as a terminal whose secret cannot be opened does.
        assert session_key is None or len(session_key) == SESSION_KEY_LEN
        self._db = db
        self._clock = clock
        self._settings = settings
        self._trust = trust
        # The pinned PKI, for the ops API's CRL import (gateway.ops.crl_routes).
        self.trust = trust
        self._keys = keys
        self._session_key = session_key
        self.certificates = VerifiedCertificateCache(settings.card_cert_cache_max_entries)
        # Imported CRLs (gateway.card_auth.revocation), refreshed by a task of this worker.
        self.revoked = RevokedSerials() if revoked is None else revoked

    # -- POST /v1/card-auth/challenge -----------------------------------------------------------

    async def issue_challenge(
        self, *, terminal_id: str, card_sn: str, generation: int, nonce: NonceClaim | None = None
    ) -> IssuedChallenge:
        if generation == 3 and len(terminal_id) > MAX_TERMINAL_ID_LEN:
            # The card signs the terminal id; a longer one cannot be put in its message.
            raise GatewayError(
                ErrorCode.TERMINAL_ID_TOO_LONG,
                f"terminal id is {len(terminal_id)} characters; cards sign at most "
                f"{MAX_TERMINAL_ID_LEN}",
            )
        self._require_configured(generation)
        ttl_s = self._settings.challenge_ttl_s
        record = ChallengeRecord(
            challenge_id=secrets.token_urlsafe(16),
            terminal_id=terminal_id,
            card_sn=card_sn,
            generation=generation,
            challenge=secrets.token_bytes(
                CHALLENGE_LEN_GEN3 if generation == 3 else CHALLENGE_LEN_GEN2
            ),
            expires_at_ms=int(self._clock() * 1000) + ttl_s * 1000,
        )
        # durable=False: losing this transaction in a power cut loses a fresh challenge (its
        # answer then gets CHALLENGE_UNKNOWN) and the nonce of a request whose replay could
        # only hand out another fresh challenge. Nothing is weakened; see gateway.db.
        await self._db.write(
            partial(insert_challenge_claiming, record=record, nonce=nonce),
            durable=False,
            grouped=True,
        )
        return IssuedChallenge(record.challenge_id, record.challenge, ttl_s)

    # -- POST /v1/card-auth/response ------------------------------------------------------------

    async def authenticate(
        self,
        attempt: AuthAttempt,
        *,
        terminal_id: str,
        nonce: NonceClaim | None = None,
        national_door: bool = False,
    ) -> IssuedSession:
        now_s = self._clock()
        now_ms = int(now_s * 1000)
        at = dt.datetime.fromtimestamp(int(now_s), dt.UTC)
        generation = attempt.generation

        # One transaction consumes the challenge (committed whatever the checks below decide)
        # and reads what the checks need: the registry row and, when only its hash was sent
        # and this worker has not verified it, the stored certificate. The checks still run
        # in DESIGN §4's order; reading early only saves two thread hops.
        wanted_sm3 = None
        sm3 = attempt.certificate_sm3
        if sm3 is not None and self.certificates.get(sm3, at) is None:
            wanted_sm3 = sm3.hex()
        loaded = await self._db.write(
            partial(
                consume_and_read,
                challenge_id=attempt.challenge_id,
                now_ms=now_ms,
                card_sn=attempt.card_sn,
                certificate_sm3_hex=wanted_sm3,
                nonce=nonce,
            ),
            grouped=True,
        )

        # 1. The challenge.
        challenge = checks.check_challenge(
            loaded.challenge,
            terminal_id=terminal_id,
            card_sn=attempt.card_sn,
            generation=generation,
            now_ms=now_ms,
        )
        self._require_configured(generation)

        # 2. The certificate chain (third generation only).
        verified: VerifiedCertificate | None = None
        store_der: bytes | None = None
        if generation == 3:
            verified, store_der = self._verified_certificate(attempt, at, loaded.certificate_der)
            # Checked on every answer, cached chain or not: a set lookup per link.
            self.revoked.check(verified.chain)

        # 3. The card's own proof, BEFORE anything from the registry is told: a terminal
        # without the card (a card_sn and the public certificate are easy to come by) gets
        # the same refusal for a lost, superseded, unknown or active card. Registry refusals
        # below reach only a caller whose card has just proven possession.
        if verified is not None:
            assert attempt.signature is not None
            checks.check_signature(
                verified,
                challenge=challenge.challenge,
                card_sn=attempt.card_sn,
                terminal_id=terminal_id,
                signature=attempt.signature,
            )
        else:
            assert attempt.cryptogram is not None
            assert self._keys is not None
            checks.check_cryptogram(
                self._keys,
                challenge=challenge.challenge,
                card_sn=attempt.card_sn,
                cryptogram=attempt.cryptogram,
            )

        # 4. The registry.
        usable = checks.check_card_status(
            loaded.card,
            card_sn=attempt.card_sn,
            generation=generation,
            certificate_sm3=None if verified is None else verified.fingerprint.hex(),
            today=beijing_date(dt.datetime.fromtimestamp(now_s, dt.UTC)),
            legacy_accepted_until=self._settings.legacy_parallel_use_until,
        )
        if verified is not None:
            if store_der is not None:
                # Only the first time this worker sees the certificate authenticate a card.
                await self._db.write(
                    partial(store_certificate, sm3_hex=verified.fingerprint.hex(), der=store_der),
                    grouped=True,
                )
            self.certificates.put(verified)

        ttl_s = self._settings.card_session_ttl_s
        # The card is present at this terminal for the national door (gateway.fsi.presence),
        # as long as its card session lasts: only for an institution that uses that door (a
        # /v1-only institution pays no write for it). durable=False: a power cut may lose it,
        # and the clerk then reads the card again; nothing else depends on it.
        if national_door:
            presence = PresenceRecord(
                terminal_id=terminal_id,
                card_sn=attempt.card_sn.upper(),
                holder_id=usable.holder_id,
                generation=generation,
                route=ROUTE_CODES[loaded.route],
                expires_at_s=int(now_s) + ttl_s,
            )
            await self._db.write(
                partial(record_presence, record=presence), durable=False, grouped=True
            )
        token = issue_card_session(
            self._key(),
            CardSession(
                terminal_id=terminal_id,
                card_sn=attempt.card_sn,
                generation=generation,
                holder_id=usable.holder_id,
                expires_at_s=int(now_s) + ttl_s,
                route=loaded.route,
            ),
        )
        return IssuedSession(token, ttl_s, attempt.card_sn, generation)

    def _verified_certificate(
        self, attempt: AuthAttempt, at: dt.datetime, stored_der: bytes | None
    ) -> tuple[VerifiedCertificate, bytes | None]:
        """The verified chain, and the DER to store if this worker has not cached it yet."""
        assert self._trust is not None
        if attempt.certificate_der is not None:
            der = attempt.certificate_der
            cached = self.certificates.get(fingerprint_sm3(der), at)
            _count_cache_lookup(cached)
            if cached is not None and cached.card_sn == attempt.card_sn:
                return cached, None
            leaf = checks.parse_certificate(der)
            verified = checks.verify_certificate(
                leaf, card_sn=attempt.card_sn, trust=self._trust, cache=self.certificates, at=at
            )
            return verified, der
        assert attempt.certificate_sm3 is not None
        cached = self.certificates.get(attempt.certificate_sm3, at)
        _count_cache_lookup(cached)
        if cached is not None:
            leaf = cached.leaf
        elif stored_der is not None:
            leaf = checks.parse_certificate(stored_der)
        else:
            raise GatewayError(
                ErrorCode.CERT_UNKNOWN,
                "no certificate with this SM3 hash has been seen; send the certificate",
            )
        verified = checks.verify_certificate(
            leaf, card_sn=attempt.card_sn, trust=self._trust, cache=self.certificates, at=at
        )
        return verified, None

    # -- card sessions --------------------------------------------------------------------------

    def require_card_session(self, token: str, terminal_id: str) -> CardSession:
        """For the settlement routes: the card session ``token`` proves, at this terminal, now."""
        return require_card_session(self._key(), token, terminal_id, self._clock())

    def _key(self) -> bytes:
        if self._session_key is None:
            raise GatewayError(
                ErrorCode.KEK_UNAVAILABLE,
                "the card-session key is sealed under a KEK this gateway does not hold",
            )
        return self._session_key

    def _require_configured(self, generation: int) -> None:
        if generation == 3 and self._trust is None:
            raise GatewayError(ErrorCode.CARD_AUTH_UNAVAILABLE, "no card trust root is configured")
        if generation == 2 and self._keys is None:
            raise GatewayError(
                ErrorCode.CARD_AUTH_UNAVAILABLE, "no legacy master key is configured"
            )


def _count_cache_lookup(cached: VerifiedCertificate | None) -> None:
    # Once per answer, here: verify_certificate looks in the cache again, and a cached chain
    # it finds there is the one found here (same fingerprint, same instant).
    (metrics.CARD_CERT_CACHE_MISSES if cached is None else metrics.CARD_CERT_CACHE_HITS).inc()


@dataclass(frozen=True, slots=True)
class LoadedAttempt:
    challenge: ConsumedChallenge
    card: CardRecord | None
    certificate_der: bytes | None
    # The holder's route (local when they have no employee insurance: the local use cases
    # then give the precise refusal).
    route: Route = Route.LOCAL


def insert_challenge_claiming(
    session: Session, record: ChallengeRecord, nonce: NonceClaim | None
) -> None:
    """A write unit: the request nonce (if the route left it to us), then the challenge."""
    if nonce is not None:
        nonce.claim(session)
    insert_challenge(session, record)


def consume_and_read(
    session: Session,
    challenge_id: str,
    now_ms: int,
    card_sn: str,
    certificate_sm3_hex: str | None,
    *,
    nonce: NonceClaim | None = None,
) -> LoadedAttempt:
    """A write unit: the request nonce (if the route left it to us: a replay raises
    REQUEST_REPLAYED before anything is touched), consume the challenge, then read the
    registry row and (if asked) the stored certificate. Nothing is read for a challenge that
    does not exist."""
    if nonce is not None:
        nonce.claim(session)
    found = consume_challenge(session, challenge_id, now_ms)
    if found.record is None:
        return LoadedAttempt(found, None, None)
    # The registry row is read here, never cached, so a card reported lost a moment ago is
    # refused now.
    card = read_card(session, card_sn)
    route = None if card is None else insured_route(session, card.holder_id)
    der = None if certificate_sm3_hex is None else find_certificate(session, certificate_sm3_hex)
    return LoadedAttempt(found, card, der, route or Route.LOCAL)


def trust_anchors_from_settings(settings: Settings) -> TrustAnchors | None:
    """Configured PEM files first; the demo PKI in the embedded demo world; else None."""
    if settings.card_trust_root_pem is not None:
        return TrustAnchors.from_pem_files(
            settings.card_trust_root_pem, settings.card_issuing_ca_pem_paths
        )
    if settings.should_load_demo_world():
        return TrustAnchors.demo(settings.demo_seed)
    return None


def key_manager_from_settings(settings: Settings) -> KeyManager | None:
    if settings.legacy_master_key_file is not None:
        return SoftwareKeyManager(load_master_key_file(settings.legacy_master_key_file))
    if settings.should_load_demo_world():
        return SoftwareKeyManager(sscard_demo.legacy_master_key(settings.demo_seed))
    return None


CARD_AUTH: Final = web.AppKey("card_auth", CardAuthService)


async def card_auth_context(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: build the service (after the database), sweep old challenges."""
    settings, db = app[SETTINGS], app[DATABASE]
    trust = await asyncio.to_thread(trust_anchors_from_settings, settings)
    keys = key_manager_from_settings(settings)
    if trust is None or keys is None:
        log.warning(
            "card authentication is not fully configured",
            extra=fields(trust_root=trust is not None, legacy_master_key=keys is not None),
        )
    # Sealed under the KEK where one is configured (docs/operations.md, "Keys at rest").
    session_key: bytes | None
    try:
        session_key = await db.write(
            partial(
                load_session_key,
                sealer=app[KEY_RING],
                candidate=secrets.token_bytes(SESSION_KEY_LEN),
            )
        )
    except SecretsUnavailable:
        session_key = None
        log.error(
            "card-session key sealed under a KEK this gateway does not hold: card "
            "authentication and settlement answer 503 KEK_UNAVAILABLE (set kek_file, or add "
            "the old KEK to kek_previous_files)"
        )
    # Loaded before the worker serves: a revoked card is never accepted for want of a list.
    revoked = RevokedSerials(
        observe=metrics.observe_card_crls,
        pinned=() if trust is None else (trust.root, *trust.issuing_cas),
    )
    await revoked.refresh(db, int(app[CLOCK]() * 1000))
    app[CARD_AUTH] = CardAuthService(
        db=db,
        clock=app[CLOCK],
        settings=settings,
        trust=trust,
        keys=keys,
        session_key=session_key,
        revoked=revoked,
    )
    tasks = (
        asyncio.create_task(_sweep_challenges_forever(app), name="challenge-sweeper"),
        asyncio.create_task(
            refresh_forever(revoked, db, app[CLOCK], settings.card_crl_refresh_s),
            name="crl-refresh",
        ),
    )
    yield
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _sweep_challenges_forever(app: web.Application) -> None:
    settings, db, clock = app[SETTINGS], app[DATABASE], app[CLOCK]
    while True:
        await asyncio.sleep(settings.nonce_sweep_interval_s)
        before_ms = int((clock() - CHALLENGE_RETENTION_S) * 1000)
        try:
            await db.write(
                partial(
                    delete_expired_challenges, before_ms=before_ms, limit=settings.nonce_sweep_batch
                )
            )
        except Exception:  # a failed sweep must not kill the worker; the next one retries
            log.exception("challenge sweep failed")
