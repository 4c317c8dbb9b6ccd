"""The gateway's own tables: institutions, their terminals, and used request nonces.

They live on :data:`metadata`, the gateway's own MetaData. Domain packages (settlement,
issuance) own their tables on their own MetaData objects; gateway.migrate hands Alembic the
list of all of them. Schema changes go through Alembic migrations in gateway/migrations, never
``create_all``; a test compares the migrated schema with these models.

Store functions take a Session and run inside a unit of work (see gateway.db); they return
plain frozen dataclasses, never ORM objects, because results cross back to the event loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    delete,
    func,
    select,
    tuple_,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

__all__ = [
    "KIND_LEVEL_CHECK",
    "MEDICAL_KINDS",
    "Institution",
    "InstitutionKind",
    "RequestNonce",
    "Terminal",
    "TerminalRecord",
    "consume_nonce",
    "count_nonces",
    "delete_expired_nonces",
    "find_terminal",
    "metadata",
]

# Explicit constraint names, so that migrations can name what they alter on every backend.
NAMING_CONVENTION: Final = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata: Final = MetaData(naming_convention=NAMING_CONVENTION)


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

    __table_args__ = (CheckConstraint(KIND_LEVEL_CHECK, name="kind_level"),)


class Terminal(GatewayBase):
    """A HIS or POS terminal of one institution, holding an HMAC-SM3 secret."""

    __tablename__ = "terminals"

    terminal_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    institution_code: Mapped[str] = mapped_column(
        String(32), ForeignKey("institutions.code"), index=True
    )
    # Symmetric: the gateway must hold it to verify. TODO(ops): encrypt at rest with a KEK.
    secret: Mapped[bytes] = mapped_column(LargeBinary(64))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)

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


class DriverStatement:
    """One hot-path statement, run straight on the DBAPI cursor of the unit's connection.

    Why: even a prebuilt SQLAlchemy Core statement costs 15–80 µs of Python per execution
    (execution context, result metadata, type processors), a DBAPI ``cursor.execute`` 3–10 µs,
    and the few statements every card authentication runs were a large part of its CPU. Only
    for those statements; everything else goes through SQLAlchemy.

    The SQL is written once for both backends with ``?`` placeholders (sqlite3's qmark style;
    turned into ``%s`` for psycopg). It runs inside the session's transaction (the session's
    own connection: BEGIN, SAVEPOINTs and COMMIT stay SQLAlchemy's), and a driver error is
    raised as the SQLAlchemy exception SQLAlchemy itself would raise (IntegrityError,
    OperationalError …), parameters hidden, so callers and gateway.db treat it the same way.
    Results are raw driver values: the caller converts them (see gateway.card_auth.tables).
    Not seen by SQLAlchemy's cursor events or ``echo``: a listener that counts or logs
    statements does not count these.
    """

    __slots__ = ("_format_sql", "_qmark_sql")

    def __init__(self, sql: str) -> None:
        assert "%" not in sql, "a literal % would need escaping for psycopg"
        self._qmark_sql = sql
        self._format_sql = sql.replace("?", "%s")

    def execute(self, session: Session, params: Sequence[Any]) -> Any:
        """The DBAPI cursor after executing with ``params`` (positional, in ``?`` order)."""
        connection = session.connection()
        dialect = connection.dialect
        sql = self._qmark_sql if dialect.paramstyle == "qmark" else self._format_sql
        driver = connection.connection.driver_connection
        assert driver is not None
        cursor = driver.cursor()
        try:
            cursor.execute(sql, params)
        except dialect.loaded_dbapi.Error as exc:
            raise DBAPIError.instance(
                sql, params, exc, dialect.loaded_dbapi.Error, hide_parameters=True, dialect=dialect
            ) from exc
        return cursor


_FIND_TERMINAL: Final = DriverStatement(
    "SELECT t.institution_code, i.kind, t.secret, t.enabled FROM terminals AS t "
    "JOIN institutions AS i ON i.code = t.institution_code WHERE t.terminal_id = ?"
)


def find_terminal(session: Session, terminal_id: str) -> TerminalRecord | None:
    # On the driver's cursor: every terminal-cache miss pays for it.
    row = _FIND_TERMINAL.execute(session, (terminal_id,)).fetchone()
    if row is None:
        return None
    institution_code, kind, secret, enabled = row
    return TerminalRecord(
        terminal_id=terminal_id,
        institution_code=institution_code,
        institution_kind=kind,
        secret=bytes(secret),
        enabled=bool(enabled),
    )


_INSERT_NONCE: Final = DriverStatement(
    "INSERT INTO request_nonces (terminal_id, nonce, expires_at_s) VALUES (?, ?, ?)"
)


def consume_nonce(session: Session, terminal_id: str, nonce: str, expires_at_s: int) -> None:
    """Record a nonce as used. Raises sqlalchemy.exc.IntegrityError if it was used before.

    On the driver's cursor (:class:`DriverStatement`): it runs on every signed request."""
    _INSERT_NONCE.execute(session, (terminal_id, nonce, expires_at_s))


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
