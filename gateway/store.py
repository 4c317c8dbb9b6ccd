"""The gateway's own tables: institutions, their terminals, and used request nonces.

They live on :data:`metadata`, the gateway's own MetaData. Domain packages (settlement,
issuance) own their tables on their own MetaData objects; gateway.migrate hands Alembic the
list of all of them. Schema changes go through Alembic migrations in gateway/migrations, never
``create_all``; a test compares the migrated schema with these models.

Store functions take a Session and run inside a unit of work (see gateway.db); they return
plain frozen dataclasses, never ORM objects, because results cross back to the event loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Protocol

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    LargeBinary,
    SmallInteger,
    String,
    delete,
    false,
    func,
    select,
    tuple_,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from dbkit import DriverSQL, new_metadata

__all__ = [
    "KIND_LEVEL_CHECK",
    "MEDICAL_KINDS",
    "Institution",
    "InstitutionKind",
    "Opener",
    "RequestNonce",
    "SecretsUnavailable",
    "Terminal",
    "TerminalRecord",
    "consume_nonce",
    "count_nonces",
    "delete_expired_nonces",
    "find_terminal",
    "metadata",
    "secret_aad",
]

# Constraint names from the project's one naming convention, so migrations can name them.
metadata: Final = new_metadata()


class GatewayBase(DeclarativeBase):
    metadata = metadata


class InstitutionKind(StrEnum):
    HOSPITAL = "hospital"  # 定点医疗机构
    PHARMACY = "pharmacy"  # 定点零售药店
    # Card issuance only (migration gw0003): their terminals call the issuance API in the role
    # their issuance_agents row gives them, and are refused by every settlement route.
    SERVICE_BANK = "service_bank"  # 服务银行网点
    EMPLOYER = "employer"  # 用人单位
    COMMUNITY_CENTRE = "community_centre"  # 社区事务受理中心
    ONLINE_SERVICE = "online_service"  # 网上服务（网站、微信、App）
    HOTLINE = "hotline"  # 962222
    CARD_CENTRE = "card_centre"  # 市民服务信息中心 (production, post)


# Institutions that settle medical costs; every other kind is refused by the settlement routes.
MEDICAL_KINDS: Final = frozenset({InstitutionKind.HOSPITAL, InstitutionKind.PHARMACY})
# The CHECK constraint's text (migration gw0003 writes the same string).
KIND_LEVEL_CHECK: Final = (
    "(kind = 'hospital' AND level IS NOT NULL AND level IN (1, 2, 3)) OR (kind IN ("
    "'pharmacy', 'service_bank', 'employer', 'community_centre', 'online_service', 'hotline', "
    "'card_centre') AND level IS NULL)"
)


class Institution(GatewayBase):
    """An institution whose terminals call the gateway: a designated medical institution
    (定点医药机构: a hospital, level 1–3, or a pharmacy), or one that only issues cards (a service
    bank, an employer, a community centre, online service, the hotline, the card centre)."""

    __tablename__ = "institutions"

    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16))
    # Hospital grade (医院等级) 1, 2 or 3; None for pharmacies.
    level: Mapped[int | None] = mapped_column(SmallInteger)
    # Suspended (gateway admin institution suspend, gw0005): every terminal of it is refused
    # as if disabled, within the terminal directory's TTL; nothing is deleted.
    # Server-side default only: statements written for an older schema (tests of migrations)
    # name no column it lacks.
    suspended: Mapped[bool] = mapped_column(Boolean, server_default=false())

    __table_args__ = (CheckConstraint(KIND_LEVEL_CHECK, name="kind_level"),)


class Terminal(GatewayBase):
    """A HIS or POS terminal of one institution, holding an HMAC-SM3 secret."""

    __tablename__ = "terminals"

    terminal_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    institution_code: Mapped[str] = mapped_column(
        String(32), ForeignKey("institutions.code"), index=True
    )
    # Symmetric: the gateway must hold it to verify, so it is kept SEALED under the KEK
    # (gateway.sealing; AAD "terminals.secret:<id>"). ``secret`` is the plaintext column of
    # before gw0005: NULL for every terminal the gateway enrolled or sealed since; a row that
    # still has one (inserted by hand, or by tests) works and is sealed by `gateway admin
    # rewrap` and at every `serve` start.
    secret: Mapped[bytes | None] = mapped_column(LargeBinary(64))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    sealed_secret: Mapped[bytes | None] = mapped_column(LargeBinary(256))
    # During a rotation's overlap: the previous secret (sealed, AAD
    # "terminals.previous_secret:<id>"), accepted until previous_until_s (unix seconds).
    previous_sealed: Mapped[bytes | None] = mapped_column(LargeBinary(256))
    previous_until_s: Mapped[int | None] = mapped_column(BigInteger)

    __table_args__ = (CheckConstraint("length(secret) BETWEEN 16 AND 64", name="secret_length"),)


class RequestNonce(GatewayBase):
    """A nonce a terminal has used. The primary key (terminal_id, nonce) IS the replay guard:
    two workers, or two replicas, inserting the same pair race in the database, and exactly one
    wins; the loser gets an IntegrityError. No foreign key to terminals: it would add a lookup
    to every signed request for no protection the signature does not already give."""

    __tablename__ = "request_nonces"

    terminal_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at_s: Mapped[int] = mapped_column(BigInteger, index=True)


@dataclass(frozen=True, slots=True)
class TerminalRecord:
    terminal_id: str
    institution_code: str
    institution_kind: str
    secret: bytes
    enabled: bool
    # The institution's hospital level (1-3), None for every other kind: the settlement use
    # cases take it from here instead of reading the institution in their transaction.
    institution_level: int | None = None
    # The institution speaks the national interface too (it has operators of the /fsi door):
    # its card authentications record the card's presence for that door (gateway.fsi.presence).
    national_door: bool = False
    # A rotation's overlap: the previous secret, still accepted until previous_until_s.
    previous_secret: bytes | None = None
    previous_until_s: int | None = None
    # The institution is suspended: refused like a disabled terminal.
    institution_suspended: bool = False

    def __repr__(self) -> str:  # never the secrets
        return (
            f"TerminalRecord({self.terminal_id}, {self.institution_code}, enabled={self.enabled})"
        )

    def secrets_at(self, now_s: float) -> tuple[bytes, ...]:
        """The secrets a request signed at ``now_s`` may use: the current one, and the
        previous one while the rotation's overlap lasts."""
        previous, until_s = self.previous_secret, self.previous_until_s
        if previous is not None and until_s is not None and now_s < until_s:
            return (self.secret, previous)
        return (self.secret,)


def secret_aad(terminal_id: str, *, previous: bool = False) -> bytes:
    """The associated data that binds a sealed terminal secret to its row and column."""
    column = "previous_secret" if previous else "secret"
    return f"terminals.{column}:{terminal_id}".encode()


class Opener(Protocol):
    def open(self, blob: bytes, aad: bytes) -> bytes: ...


class SecretsUnavailable(RuntimeError):
    """A sealed secret and no KEK to open it with (or a KEK that does not open it)."""


_FIND_TERMINAL: Final = DriverSQL(
    "SELECT t.institution_code, i.kind, t.secret, t.enabled, i.level, "
    "EXISTS (SELECT 1 FROM fsi_operators AS o WHERE o.fixmedins_code = t.institution_code), "
    "t.sealed_secret, t.previous_sealed, t.previous_until_s, i.suspended "
    "FROM terminals AS t "
    "JOIN institutions AS i ON i.code = t.institution_code WHERE t.terminal_id = ?"
)


def find_terminal(
    session: Session, terminal_id: str, opener: Opener | None = None
) -> TerminalRecord | None:
    """The terminal with its secrets opened (``opener``: the KEK ring). Raises
    SecretsUnavailable for a sealed secret with no opener, or one the opener cannot open."""
    # On the driver's cursor: every terminal-cache miss pays for it.
    row = _FIND_TERMINAL.fetchone(session.connection(), (terminal_id,))
    if row is None:
        return None
    (institution_code, kind, plain, enabled, level, national_door) = row[:6]
    sealed, previous_sealed, previous_until_s, suspended = row[6:]
    previous = None
    if sealed is not None:
        secret = _open(opener, bytes(sealed), secret_aad(terminal_id))
        if previous_sealed is not None:
            previous = _open(opener, bytes(previous_sealed), secret_aad(terminal_id, previous=True))
    elif plain is not None:
        secret = bytes(plain)
    else:
        raise SecretsUnavailable(f"terminal {terminal_id} has no secret")
    return TerminalRecord(
        terminal_id=terminal_id,
        institution_code=institution_code,
        institution_kind=kind,
        secret=secret,
        enabled=bool(enabled),
        institution_level=None if level is None else int(level),
        national_door=bool(national_door),
        previous_secret=previous,
        previous_until_s=None if previous_until_s is None else int(previous_until_s),
        institution_suspended=bool(suspended),
    )


def _open(opener: Opener | None, blob: bytes, aad: bytes) -> bytes:
    if opener is None:
        raise SecretsUnavailable("a sealed terminal secret and no KEK configured")
    try:
        return opener.open(blob, aad)
    except ValueError as exc:  # gateway.sealing.SealError
        raise SecretsUnavailable(str(exc)) from None


_INSERT_NONCE: Final = DriverSQL(
    "INSERT INTO request_nonces (terminal_id, nonce, expires_at_s) VALUES (?, ?, ?)"
)


def consume_nonce(session: Session, terminal_id: str, nonce: str, expires_at_s: int) -> None:
    """Record a nonce as used. Raises sqlalchemy.exc.IntegrityError if it was used before.

    On the driver's cursor (:class:`dbkit.DriverSQL`): it runs on every signed request."""
    _INSERT_NONCE.execute(session.connection(), (terminal_id, nonce, expires_at_s))


def delete_expired_nonces(session: Session, now_s: int, limit: int) -> int:
    """Delete at most ``limit`` nonces that expired before ``now_s``; return how many.

    Bounded so that one sweep holds SQLite's write lock for milliseconds, not seconds.
    """
    assert limit >= 1
    expired = (
        select(RequestNonce.terminal_id, RequestNonce.nonce)
        .where(RequestNonce.expires_at_s < now_s)
        .limit(limit)
    )
    result = session.execute(
        delete(RequestNonce).where(
            tuple_(RequestNonce.terminal_id, RequestNonce.nonce).in_(expired)
        )
    )
    deleted: int = result.rowcount  # type: ignore[attr-defined]
    return deleted


def count_nonces(session: Session) -> int:
    return session.execute(select(func.count()).select_from(RequestNonce)).scalar_one()
