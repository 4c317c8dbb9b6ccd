"""Card-authentication tables, on the gateway's own MetaData (gateway.store.metadata).

``card_challenges``
    One row per challenge handed out. Single use is enforced by the DATABASE, not by an
    application ``if``: :func:`consume_challenge` runs ``UPDATE … SET used_at_ms = :now WHERE
    challenge_id = :id AND used_at_ms IS NULL`` and only the statement that changed the row
    (rowcount 1) owns the challenge. Two workers or two replicas racing for one challenge
    serialise on the row, and exactly one wins.
``card_certificates``
    Card certificates (EF 0018) whose chain verified and whose card then authenticated, keyed
    by their SM3 fingerprint, so a terminal may send only the hash once any worker has seen
    the certificate. Certificates are public; storing them leaks nothing.
``gateway_secrets``
    Keys every worker and replica must share (the card session MAC key). Created once, by the
    first process that needs it; the primary key makes concurrent creation safe. The card
    session key is stored SEALED under the KEK (gateway.sealing) wherever one is configured:
    :func:`load_session_key`, and `rewrap`/`serve` through :func:`rewrap_session_key`.

Times are unix milliseconds in BIGINT columns: the same on SQLite and PostgreSQL, with no
timezone conversion in between.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from sqlalchemy import (
    BigInteger,
    LargeBinary,
    SmallInteger,
    String,
    delete,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column

from dbkit import DriverSQL
from gateway.sealing import MAX_SEALED_BYTES, SealError, SecretSealer, is_sealed, kek_id_of
from gateway.store import GatewayBase, SecretsUnavailable
from sscard.certs import MAX_CERTIFICATE_DER_BYTES

__all__ = [
    "CardCertificate",
    "CardChallenge",
    "ChallengeRecord",
    "ConsumedChallenge",
    "GatewaySecret",
    "consume_challenge",
    "delete_expired_challenges",
    "find_certificate",
    "get_or_create_secret",
    "insert_challenge",
    "load_session_key",
    "rewrap_session_key",
    "store_certificate",
]


class CardChallenge(GatewayBase):
    __tablename__ = "card_challenges"

    challenge_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    terminal_id: Mapped[str] = mapped_column(String(64))
    card_sn: Mapped[str] = mapped_column(String(32))
    generation: Mapped[int] = mapped_column(SmallInteger)
    challenge: Mapped[bytes] = mapped_column(LargeBinary(16))
    expires_at_ms: Mapped[int] = mapped_column(BigInteger, index=True)
    used_at_ms: Mapped[int | None] = mapped_column(BigInteger)


class CardCertificate(GatewayBase):
    __tablename__ = "card_certificates"

    sm3: Mapped[str] = mapped_column(String(64), primary_key=True)  # 64 lower-case hex digits
    der: Mapped[bytes] = mapped_column(LargeBinary(MAX_CERTIFICATE_DER_BYTES))


class GatewaySecret(GatewayBase):
    __tablename__ = "gateway_secrets"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    # A plaintext key (from before sealing, or made with no KEK) or its sealed blob. Neither
    # database enforces the length (bytea, BLOB): gw0002 made the column as 64 bytes.
    value: Mapped[bytes] = mapped_column(LargeBinary(MAX_SEALED_BYTES))


@dataclass(frozen=True, slots=True)
class ChallengeRecord:
    challenge_id: str
    terminal_id: str
    card_sn: str
    generation: int
    challenge: bytes
    expires_at_ms: int


@dataclass(frozen=True, slots=True)
class ConsumedChallenge:
    """What one attempt to use a challenge found. ``record`` is None if there is no such
    challenge; ``consumed`` is True only for the one attempt that marked it used."""

    record: ChallengeRecord | None
    consumed: bool


# Hot-path statements on the driver's cursor (dbkit.DriverSQL): the same SQL
# SQLAlchemy would send, at a fraction of the CPU per statement.
_INSERT_CHALLENGE: Final = DriverSQL(
    "INSERT INTO card_challenges (challenge_id, terminal_id, card_sn, generation, challenge, "
    "expires_at_ms, used_at_ms) VALUES (?, ?, ?, ?, ?, ?, NULL)"
)
_SELECT_CHALLENGE: Final = DriverSQL(
    "SELECT terminal_id, card_sn, generation, challenge, expires_at_ms FROM card_challenges "
    "WHERE challenge_id = ?"
)
# Single use: only the statement that changed the row (rowcount 1) owns the challenge.
_MARK_CHALLENGE_USED: Final = DriverSQL(
    "UPDATE card_challenges SET used_at_ms = ? WHERE challenge_id = ? AND used_at_ms IS NULL"
)
_SELECT_CERTIFICATE: Final = DriverSQL("SELECT der FROM card_certificates WHERE sm3 = ?")


def insert_challenge(session: Session, record: ChallengeRecord) -> None:
    _INSERT_CHALLENGE.execute(
        session.connection(),
        (
            record.challenge_id,
            record.terminal_id,
            record.card_sn,
            record.generation,
            record.challenge,
            record.expires_at_ms,
        ),
    )


def consume_challenge(session: Session, challenge_id: str, now_ms: int) -> ConsumedChallenge:
    """Mark the challenge used, whatever the checks that follow will say (a write unit).

    The caller judges the result with :func:`gateway.card_auth.checks.check_challenge` AFTER
    this transaction committed, so that a rejected attempt still burns the challenge.
    """
    row = _SELECT_CHALLENGE.fetchone(session.connection(), (challenge_id,))
    if row is None:
        return ConsumedChallenge(None, consumed=False)
    rowcount = _MARK_CHALLENGE_USED.execute(session.connection(), (now_ms, challenge_id))
    terminal_id, card_sn, generation, challenge, expires_at_ms = row
    record = ChallengeRecord(
        challenge_id=challenge_id,
        terminal_id=terminal_id,
        card_sn=card_sn,
        generation=int(generation),
        challenge=bytes(challenge),
        expires_at_ms=int(expires_at_ms),
    )
    return ConsumedChallenge(record, consumed=rowcount == 1)


def delete_expired_challenges(session: Session, before_ms: int, limit: int) -> int:
    """Delete at most ``limit`` challenges that expired before ``before_ms``; return how many."""
    assert limit >= 1
    expired = (
        select(CardChallenge.challenge_id)
        .where(CardChallenge.expires_at_ms < before_ms)
        .limit(limit)
    )
    result = session.execute(delete(CardChallenge).where(CardChallenge.challenge_id.in_(expired)))
    deleted: int = result.rowcount  # type: ignore[attr-defined]
    return deleted


def find_certificate(session: Session, sm3_hex: str) -> bytes | None:
    row = _SELECT_CERTIFICATE.fetchone(session.connection(), (sm3_hex,))
    return None if row is None else bytes(row[0])


def _insert_ignoring_duplicates(
    session: Session, table: type[GatewayBase], **values: object
) -> None:
    # ON CONFLICT DO NOTHING rather than catching IntegrityError: on PostgreSQL a failed
    # statement aborts the whole transaction, and two workers may insert the same key at once.
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        session.execute(postgresql.insert(table).values(**values).on_conflict_do_nothing())
    elif dialect == "sqlite":
        session.execute(sqlite.insert(table).values(**values).on_conflict_do_nothing())
    else:  # pragma: no cover - gateway.db accepts only these two
        raise ValueError(f"unsupported dialect {dialect}")


def store_certificate(session: Session, sm3_hex: str, der: bytes) -> None:
    _insert_ignoring_duplicates(session, CardCertificate, sm3=sm3_hex, der=der)


def get_or_create_secret(session: Session, name: str, candidate: bytes) -> bytes:
    """The stored secret ``name``; if there is none yet, store ``candidate`` and return it.

    Every process offers its own random candidate; the first insert wins and all of them read
    back the winner, so all workers and replicas end up with the same key.
    """
    _insert_ignoring_duplicates(session, GatewaySecret, name=name, value=candidate)
    value = session.execute(
        select(GatewaySecret.value).where(GatewaySecret.name == name)
    ).scalar_one()
    return bytes(value)


SESSION_KEY_NAME: Final = "card_session_key"
# Binds the sealed blob to its row: a blob copied from elsewhere does not open here.
SESSION_KEY_AAD: Final = b"gateway_secrets.value:" + SESSION_KEY_NAME.encode()


def load_session_key(session: Session, *, sealer: SecretSealer | None, candidate: bytes) -> bytes:
    """The card-session MAC key every worker and replica shares, made from ``candidate`` if
    there is none yet. Stored sealed under ``sealer``'s current KEK (a plaintext row, from
    before sealing, is sealed in place here); with no KEK configured, in plaintext, as before.

    Raises SecretsUnavailable for a sealed key that ``sealer`` cannot open (or no sealer)."""
    offered = candidate if sealer is None else sealer.seal(candidate, SESSION_KEY_AAD)
    stored = get_or_create_secret(session, SESSION_KEY_NAME, offered)
    if is_sealed(stored):
        if sealer is None:
            raise SecretsUnavailable("the card-session key is sealed and no KEK is configured")
        try:
            return sealer.open(stored, SESSION_KEY_AAD)
        except SealError as exc:
            raise SecretsUnavailable(f"the card-session key: {exc}") from None
    if sealer is not None:
        # Guarded by the old value: of two workers sealing at once, one write lands, and both
        # keep the same key.
        session.execute(
            update(GatewaySecret)
            .where(GatewaySecret.name == SESSION_KEY_NAME, GatewaySecret.value == stored)
            .values(value=sealer.seal(stored, SESSION_KEY_AAD))
        )
    return stored


def rewrap_session_key(
    session: Session, sealer: SecretSealer, *, plaintext_only: bool = False
) -> tuple[int, int, int]:
    """As gateway.enrolment.terminals.rewrap_terminals, for the card-session key: (moved,
    sealed, unchanged), each 0 or 1. Raises SealError for a blob ``sealer`` cannot open,
    before anything is written."""
    row = session.get(GatewaySecret, SESSION_KEY_NAME, with_for_update=True)
    if row is None:
        return 0, 0, 0
    value = bytes(row.value)
    if not is_sealed(value):
        row.value = sealer.seal(value, SESSION_KEY_AAD)
        return 0, 1, 0
    if plaintext_only or kek_id_of(value) == sealer.current_kek_id:
        return 0, 0, 1
    row.value = sealer.seal(sealer.open(value, SESSION_KEY_AAD), SESSION_KEY_AAD)
    return 1, 0, 0
