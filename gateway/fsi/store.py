"""The national-interface door's tables, on a MetaData and an Alembic branch of their own
("fsi", gateway/fsi/migrations), so the door's schema moves without touching the gateway's.

``fsi_operators``
    The operators (操作员, ``opter``) an institution has registered: an envelope from any other
    operator is refused, and only a registered one may sign in.
``fsi_sign_ins``
    One row per sign-in (9001): its ``sign_no`` is bound to the institution, the operator and
    the device (``dev_no``), valid until its sign-out (9002) or expiry. Every later envelope
    names it, and it is checked inside that envelope's own unit of work (one primary-key read).
``fsi_transport``
    An institution's transport profile and keys (DOMAIN §4): ``plain`` or ``sm2-sm4``.
    The SM4 key is stored SEALED under the KEK (gateway.sealing; ``sm4_key_sealed``, AAD
    ``fsi_transport.sm4_key:<code>``, migration fsi0002); ``sm4_key`` is the plaintext column
    of before, NULL once sealed (a row that still has one works, and is sealed by `gateway
    admin rewrap` and at every `serve` start). :func:`institution_keys` is the one reader.
    The HIS's SM2 key is public: stored as it is.
``card_presence``
    A card that authenticated (challenge-response, unchanged) at a terminal, until its card
    session would expire: the envelope, which carries no card signature, is accepted for a
    card only while it is present at the envelope's device (``dev_no`` = that terminal's id).
    Written by card authentication; read by the door (gateway.fsi.presence).
``fsi_files``
    Files moved by 9101 (upload: 3202's detail file) and 9102 (download: 3202's differences),
    by ``file_qury_no``, of one institution, until they expire (gateway.fsi.files).

Times are unix seconds in BIGINT columns, as the gateway's other tables keep them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from sqlalchemy import (
    BigInteger,
    Boolean,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    delete,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from dbkit import DriverSQL, new_metadata
from gateway.store import Opener, SecretsUnavailable
from settlement.crossprov.routing import Route

__all__ = [
    "ROUTE_CODES",
    "CardPresence",
    "FoundPresence",
    "FsiFile",
    "FsiOperator",
    "FsiSignIn",
    "FsiTransport",
    "InstitutionKeys",
    "PresenceRecord",
    "SignInRecord",
    "delete_expired_files",
    "delete_expired_presence",
    "find_presence",
    "find_sign_in",
    "institution_keys",
    "metadata",
    "operator_enabled",
    "record_presence",
    "sm4_key_aad",
]

metadata: Final = new_metadata()
# card_presence.route: the card session's route bytes (gateway.card_auth.session).
ROUTE_CODES: Final = {Route.LOCAL: 1, Route.IN_PROVINCE_REMOTE: 2, Route.CROSS_PROVINCE: 3}


class FsiBase(DeclarativeBase):
    metadata = metadata


class FsiOperator(FsiBase):
    __tablename__ = "fsi_operators"

    fixmedins_code: Mapped[str] = mapped_column(String(32), primary_key=True)
    opter: Mapped[str] = mapped_column(String(30), primary_key=True)
    opter_name: Mapped[str] = mapped_column(String(50))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)


class FsiSignIn(FsiBase):
    __tablename__ = "fsi_sign_ins"

    sign_no: Mapped[str] = mapped_column(String(30), primary_key=True)
    fixmedins_code: Mapped[str] = mapped_column(String(32))
    opter: Mapped[str] = mapped_column(String(30))
    dev_no: Mapped[str] = mapped_column(String(64))
    signed_in_at_s: Mapped[int] = mapped_column(BigInteger)
    expires_at_s: Mapped[int] = mapped_column(BigInteger, index=True)
    signed_out_at_s: Mapped[int | None] = mapped_column(BigInteger)


class FsiTransport(FsiBase):
    __tablename__ = "fsi_transport"

    fixmedins_code: Mapped[str] = mapped_column(String(32), primary_key=True)
    profile: Mapped[str] = mapped_column(String(16))  # "plain" or "sm2-sm4"
    # sm2-sm4: the 16-byte SM4 key of the input (MINIMAL STORAGE, see the module docstring)
    # and the HIS's SM2 public key (65 bytes, 04‖x‖y) that verifies cainfo.
    sm4_key: Mapped[bytes | None] = mapped_column(LargeBinary(16))
    his_public_key: Mapped[bytes | None] = mapped_column(LargeBinary(65))
    sm4_key_sealed: Mapped[bytes | None] = mapped_column(LargeBinary(256))


class CardPresence(FsiBase):
    __tablename__ = "card_presence"

    terminal_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    card_sn: Mapped[str] = mapped_column(String(32), primary_key=True)
    holder_id: Mapped[int] = mapped_column(BigInteger)
    generation: Mapped[int] = mapped_column(SmallInteger)
    # The holder's route as card authentication read it (settlement.crossprov.routing.Route:
    # 1 local, 2 in-province remote, 3 cross-province), as the card session carries it.
    route: Mapped[int] = mapped_column(SmallInteger)
    expires_at_s: Mapped[int] = mapped_column(BigInteger, index=True)


class FsiFile(FsiBase):
    __tablename__ = "fsi_files"
    __table_args__ = (
        Index("ix_fsi_files_fixmedins_code_expires_at_s", "fixmedins_code", "expires_at_s"),
    )

    file_qury_no: Mapped[str] = mapped_column(String(40), primary_key=True)
    fixmedins_code: Mapped[str] = mapped_column(String(32))
    filename: Mapped[str] = mapped_column(String(200))
    content: Mapped[bytes] = mapped_column(LargeBinary)
    size: Mapped[int] = mapped_column(Integer)
    created_at_s: Mapped[int] = mapped_column(BigInteger)
    expires_at_s: Mapped[int] = mapped_column(BigInteger)


# --- operators and sign-ins ---------------------------------------------------------------------


def operator_enabled(session: Session, fixmedins_code: str, opter: str) -> bool:
    row = session.get(FsiOperator, (fixmedins_code, opter))
    return row is not None and row.enabled


@dataclass(frozen=True, slots=True)
class SignInRecord:
    sign_no: str
    fixmedins_code: str
    opter: str
    dev_no: str
    expires_at_s: int
    signed_out_at_s: int | None


_FIND_SIGN_IN: Final = DriverSQL(
    "SELECT fixmedins_code, opter, dev_no, expires_at_s, signed_out_at_s FROM fsi_sign_ins "
    "WHERE sign_no = ?"
)


def find_sign_in(session: Session, sign_no: str) -> SignInRecord | None:
    # On the driver's cursor: every envelope after sign-in pays for it.
    row = _FIND_SIGN_IN.fetchone(session.connection(), (sign_no,))
    if row is None:
        return None
    code, opter, dev_no, expires_at_s, signed_out_at_s = row
    return SignInRecord(
        sign_no,
        code,
        opter,
        dev_no,
        int(expires_at_s),
        None if signed_out_at_s is None else int(signed_out_at_s),
    )


# --- transport keys -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InstitutionKeys:
    """An institution's transport profile and keys (None: no row, the default profile)."""

    profile: str
    sm4_key: bytes | None
    his_public_key: bytes | None


def sm4_key_aad(fixmedins_code: str) -> bytes:
    """The associated data that binds a sealed SM4 key to its institution's row."""
    return f"fsi_transport.sm4_key:{fixmedins_code}".encode()


def institution_keys(
    session: Session, fixmedins_code: str, opener: Opener | None = None
) -> InstitutionKeys | None:
    """THE reader of an institution's transport keys, the SM4 key opened with ``opener``
    (the KEK ring). Raises gateway.store.SecretsUnavailable for a sealed key it cannot open."""
    row = session.get(FsiTransport, fixmedins_code)
    if row is None:
        return None
    sm4_key = None if row.sm4_key is None else bytes(row.sm4_key)
    if row.sm4_key_sealed is not None:
        if opener is None:
            raise SecretsUnavailable("a sealed SM4 key and no KEK configured")
        try:
            sm4_key = opener.open(bytes(row.sm4_key_sealed), sm4_key_aad(fixmedins_code))
        except ValueError as exc:  # gateway.sealing.SealError
            raise SecretsUnavailable(str(exc)) from None
    return InstitutionKeys(
        row.profile,
        sm4_key,
        None if row.his_public_key is None else bytes(row.his_public_key),
    )


# --- card presence ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PresenceRecord:
    terminal_id: str
    card_sn: str
    holder_id: int
    generation: int
    route: int
    expires_at_s: int


def record_presence(session: Session, record: PresenceRecord) -> None:
    """The card is present at the terminal until ``expires_at_s`` (a later authentication
    of the same card there moves it on): an upsert, so any worker's write wins cleanly."""
    values = {
        "terminal_id": record.terminal_id,
        "card_sn": record.card_sn,
        "holder_id": record.holder_id,
        "generation": record.generation,
        "route": record.route,
        "expires_at_s": record.expires_at_s,
    }
    changed = {name: values[name] for name in ("holder_id", "generation", "route", "expires_at_s")}
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        pg = postgresql.insert(CardPresence).values(**values)
        session.execute(
            pg.on_conflict_do_update(index_elements=["terminal_id", "card_sn"], set_=changed)
        )
    elif dialect == "sqlite":
        lite = sqlite.insert(CardPresence).values(**values)
        session.execute(
            lite.on_conflict_do_update(index_elements=["terminal_id", "card_sn"], set_=changed)
        )
    else:  # pragma: no cover - gateway.db accepts only these two
        raise ValueError(f"unsupported dialect {dialect}")


@dataclass(frozen=True, slots=True)
class FoundPresence:
    """A presence with the card's number (卡号), which 2201/2206/2207 name instead of the
    card_sn (``mdtrt_cert_no`` for mdtrt_cert_type 03)."""

    record: PresenceRecord
    card_no: str


_PRESENCE_COLUMNS: Final = (
    "SELECT p.card_sn, p.holder_id, p.generation, p.route, p.expires_at_s, c.card_no "
    "FROM card_presence AS p JOIN cards AS c ON c.card_sn = p.card_sn "
)
_FIND_PRESENCE_BY_SN: Final = DriverSQL(
    _PRESENCE_COLUMNS + "WHERE p.terminal_id = ? AND p.card_sn = ?"
)
# The card most recently authenticated at the device with this card number (a card number
# belongs to one card; ordering only makes a stale duplicate lose).
_FIND_PRESENCE_BY_NO: Final = DriverSQL(
    _PRESENCE_COLUMNS
    + "WHERE p.terminal_id = ? AND c.card_no = ? ORDER BY p.expires_at_s DESC LIMIT 1"
)


def find_presence(
    session: Session, terminal_id: str, *, card_sn: str | None, card_no: str | None
) -> FoundPresence | None:
    """The card present at the terminal, by card_sn (when the envelope names it) or else by
    card number. Reads the registry's card row for its number (issuance's ``cards``)."""
    if card_sn is not None:
        row = _FIND_PRESENCE_BY_SN.fetchone(session.connection(), (terminal_id, card_sn))
    else:
        assert card_no is not None
        row = _FIND_PRESENCE_BY_NO.fetchone(session.connection(), (terminal_id, card_no))
    if row is None:
        return None
    found_sn, holder_id, generation, route, expires_at_s, found_no = row
    record = PresenceRecord(
        terminal_id, found_sn, int(holder_id), int(generation), int(route), int(expires_at_s)
    )
    return FoundPresence(record, found_no)


def delete_expired_presence(session: Session, before_s: int, limit: int) -> int:
    """Delete at most ``limit`` presences that expired before ``before_s``; return how many."""
    assert limit >= 1
    expired = (
        select(CardPresence.terminal_id, CardPresence.card_sn)
        .where(CardPresence.expires_at_s < before_s)
        .limit(limit)
    )
    rows = session.execute(expired).all()
    for terminal_id, card_sn in rows:
        session.execute(
            delete(CardPresence).where(
                CardPresence.terminal_id == terminal_id, CardPresence.card_sn == card_sn
            )
        )
    return len(rows)


def delete_expired_files(session: Session, now_s: int, limit: int) -> int:
    """Delete at most ``limit`` files (any institution's) expired at ``now_s``; return how
    many. An upload deletes its own institution's expired files too; this is the periodic
    sweep (gateway.housekeeping), so an institution that stops uploading leaves none behind."""
    assert limit >= 1
    expired = (
        select(FsiFile.file_qury_no).where(FsiFile.expires_at_s <= now_s).limit(limit)
    ).scalar_subquery()
    query = delete(FsiFile).where(FsiFile.file_qury_no.in_(expired))
    removed: int = session.execute(query).rowcount  # type: ignore[attr-defined]
    return removed
