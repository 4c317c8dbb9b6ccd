"""Card certificate revocation: CRLs of the card PKI, imported into the database, and the
per-worker set of revoked serials that card authentication consults.

Tables (on the gateway's MetaData):

``card_crls``
    The CRL in force for each CA of the pinned PKI (one row per issuer, keyed by the SM3 of
    the issuer's name DER): its number, its window, its fingerprint and its DER.
``card_revoked_serials``
    Its entries: (issuer, serial) → revocation date and reason. Serials are stored as 40
    zero-padded hex digits (up to 20 octets, RFC 5280), so text order is numeric order on
    both databases.

Importing (:func:`import_crl`, one write unit) replaces an issuer's entries with the new
list's, all or nothing. It refuses, changing nothing: a list that is malformed, not signed by
a CA of the pinned PKI (the root or a configured issuing CA), outside its window
(``thisUpdate`` … ``nextUpdate``), larger than ``card_crl_max_entries``, or not newer (by
cRLNumber) than the list already in force. Importing the list in force again is a no-op.

Checking (:class:`RevokedSerials`) costs no database round trip: each worker keeps every
issuer's revoked serials in memory and re-reads the small ``card_crls`` table every
``card_crl_refresh_s`` seconds (a background task), reloading an issuer's serials only when
its list changed. So a certificate revoked by an import is refused by every worker within
that TTL. The set is bounded: at most ``card_crl_max_entries`` serials per issuer, which the
import enforces (each serial ~90 bytes of memory per worker, measured: 18 MB at 200,000).

When a CRL in force passes its ``nextUpdate`` and no newer one is imported, the gateway keeps
using it (fail open: refusing every card of Shanghai because a file was not copied in time
would stop every counter) and says so in the log, once per worker and list. Each refresh also
hands every list's ``nextUpdate`` to an observer (the worker's metric
``gateway_card_crl_next_update_timestamp_seconds``, which the alert CardCrlPastNextUpdate
watches): a log line is read by nobody at 3 a.m.

A CA of the pinned PKI with no CRL imported at all is the same gap, worse: nothing it revoked
is refused, and there is no ``nextUpdate`` to pass. So the observer is also told, for each
pinned CA, whether a list of it is in force (``gateway_card_crl_loaded``, alert CardCrlMissing)
and each worker logs it once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from sqlalchemy import (
    BigInteger,
    LargeBinary,
    SmallInteger,
    String,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from gateway.audit import SUBJECT_MAX, record_audit
from gateway.card_auth.trust import TrustAnchors
from gateway.db import Database
from gateway.errors import ErrorCode, GatewayError
from gateway.logs import fields
from gateway.store import GatewayBase
from sscard.certs import (
    MAX_CRL_DER_BYTES,
    Certificate,
    CertificateRevocationList,
    CrlError,
    CrlIssuerMismatch,
    load_crl,
    verify_crl,
)
from sscard.crypto import sm3

__all__ = [
    "CardCrl",
    "CardRevokedSerial",
    "CrlImportRefused",
    "CrlImported",
    "ImportedCrl",
    "RevokedSerials",
    "import_crl",
    "imported_crls",
    "issuer_key",
    "parse_crl_file",
]

log = logging.getLogger("gateway.card_auth.revocation")

_SERIAL_HEX_DIGITS: Final = 40  # 20 octets
# Entries inserted per statement on import (bounded parameter count on both databases).
_INSERT_BATCH: Final = 2000


class CardCrl(GatewayBase):
    __tablename__ = "card_crls"

    issuer_sm3: Mapped[str] = mapped_column(String(64), primary_key=True)
    crl_number_hex: Mapped[str] = mapped_column(String(_SERIAL_HEX_DIGITS))
    this_update_ms: Mapped[int] = mapped_column(BigInteger)
    next_update_ms: Mapped[int] = mapped_column(BigInteger)
    entries: Mapped[int] = mapped_column(BigInteger)
    crl_sm3: Mapped[str] = mapped_column(String(64))
    imported_at_ms: Mapped[int] = mapped_column(BigInteger)
    der: Mapped[bytes] = mapped_column(LargeBinary(MAX_CRL_DER_BYTES))


class CardRevokedSerial(GatewayBase):
    __tablename__ = "card_revoked_serials"

    issuer_sm3: Mapped[str] = mapped_column(String(64), primary_key=True)
    serial_hex: Mapped[str] = mapped_column(String(_SERIAL_HEX_DIGITS), primary_key=True)
    revoked_at_ms: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[int | None] = mapped_column(SmallInteger)


@functools.lru_cache(maxsize=64)
def issuer_key(name_der: bytes) -> str:
    """The key of an issuer in both tables: SM3 of its name DER, hex. Remembered: a PKI has a
    handful of CA names, and card authentication asks for one per link of each chain."""
    return sm3(name_der).hex()


def _serial_hex(serial: int) -> str:
    return format(serial, f"0{_SERIAL_HEX_DIGITS}x")


def _ms(moment: dt.datetime) -> int:
    return int(moment.timestamp() * 1000)


# --- import ---------------------------------------------------------------------------------


class CrlImportRefused(ValueError):
    """The CRL was not imported; nothing changed. ``code`` is stable, ``str()`` is for the
    operator (no personal data: a CRL holds serial numbers only)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class CrlImported:
    issuer: str  # the issuing CA's common name, for the operator
    issuer_sm3: str
    crl_number: int
    entries: int
    this_update: dt.datetime
    next_update: dt.datetime
    #: False when this very list was in force already (nothing written).
    changed: bool
    previous_number: int | None


def parse_crl_file(data: bytes) -> CertificateRevocationList:
    """DER or PEM; raises CrlImportRefused(CRL_MALFORMED …)."""
    try:
        return load_crl(data)
    except CrlError as exc:
        raise CrlImportRefused(exc.code, str(exc)) from None


def _issuing_ca(crl: CertificateRevocationList, trust: TrustAnchors) -> Certificate:
    for ca in (*trust.issuing_cas, trust.root):
        if ca.subject_der != crl.issuer_der:
            continue
        if (
            crl.authority_key_id is not None
            and ca.subject_key_id is not None
            and crl.authority_key_id != ca.subject_key_id
        ):
            continue
        return ca
    raise CrlImportRefused(
        "CRL_ISSUER_UNKNOWN",
        "the CRL's issuer is not a CA of the pinned card PKI (the root or a configured issuing "
        "CA): it cannot be checked, so it is not imported",
    )


def check_crl(
    crl: CertificateRevocationList, trust: TrustAnchors, *, at: dt.datetime, max_entries: int
) -> Certificate:
    """The CA of the pinned PKI that signed ``crl``, which is current at ``at``; else raise
    CrlImportRefused. Pure: no database."""
    ca = _issuing_ca(crl, trust)
    try:
        verify_crl(crl, ca, at=at)
    except CrlIssuerMismatch as exc:  # pragma: no cover - _issuing_ca matched name and key id
        raise CrlImportRefused("CRL_ISSUER_UNKNOWN", str(exc)) from None
    except CrlError as exc:
        raise CrlImportRefused(exc.code, str(exc)) from None
    if len(crl.revoked) > max_entries:
        raise CrlImportRefused(
            "CRL_TOO_LARGE",
            f"the CRL lists {len(crl.revoked)} certificates, over card_crl_max_entries "
            f"({max_entries}) that each worker keeps in memory",
        )
    return ca


def import_crl(
    session: Session,
    crl: CertificateRevocationList,
    trust: TrustAnchors,
    *,
    now: dt.datetime,
    max_entries: int,
    actor: str = "cli:unknown",
    source: str = "cli",
) -> CrlImported:
    """A write unit: check ``crl`` (:func:`check_crl`), then make it the issuer's list in
    force, replacing the previous one's entries and appending an audit row (``crl.import``,
    gateway.audit) in the same transaction. Raises CrlImportRefused (CRL_STALE when it is not
    newer than the list in force); a refusal and a no-op write nothing."""
    ca = check_crl(crl, trust, at=now, max_entries=max_entries)
    key = issuer_key(crl.issuer_der)
    current = session.execute(
        select(CardCrl.crl_number_hex, CardCrl.crl_sm3)
        .where(CardCrl.issuer_sm3 == key)
        .with_for_update()
    ).one_or_none()
    previous = None if current is None else int(current.crl_number_hex, 16)
    summary = CrlImported(
        issuer=ca.common_name or "(no CN)",
        issuer_sm3=key,
        crl_number=crl.crl_number,
        entries=len(crl.revoked),
        this_update=crl.this_update,
        next_update=crl.next_update,
        changed=True,
        previous_number=previous,
    )
    if current is not None and current.crl_sm3 == crl.fingerprint.hex():
        return dataclasses.replace(summary, changed=False)
    if previous is not None and crl.crl_number <= previous:
        raise CrlImportRefused(
            "CRL_STALE",
            f"CRL number {crl.crl_number} is not newer than number {previous}, in force for "
            "this issuer: import the newest list",
        )
    session.execute(delete(CardRevokedSerial).where(CardRevokedSerial.issuer_sm3 == key))
    rows = [
        {
            "issuer_sm3": key,
            "serial_hex": _serial_hex(entry.serial_number),
            "revoked_at_ms": _ms(entry.revoked_at),
            "reason": None if entry.reason is None else int(entry.reason),
        }
        for entry in crl.revoked
    ]
    for start in range(0, len(rows), _INSERT_BATCH):
        session.execute(insert(CardRevokedSerial), rows[start : start + _INSERT_BATCH])
    values = {
        "crl_number_hex": _serial_hex(crl.crl_number),
        "this_update_ms": _ms(crl.this_update),
        "next_update_ms": _ms(crl.next_update),
        "entries": len(rows),
        "crl_sm3": crl.fingerprint.hex(),
        "imported_at_ms": _ms(now),
        "der": crl.der,
    }
    if current is None:
        session.execute(insert(CardCrl).values(issuer_sm3=key, **values))
    else:
        session.execute(update(CardCrl).where(CardCrl.issuer_sm3 == key).values(**values))
    record_audit(
        session,
        actor=actor,
        action="crl.import",
        subject=f"crl:{summary.issuer}"[:SUBJECT_MAX],
        changes={
            # Numbers as text: a cRLNumber may be 20 octets, beyond a JSON reader's integers.
            "crl_number": [None if previous is None else str(previous), str(crl.crl_number)],
            "entries_count": len(rows),
            "issuer_sm3": key,
            "crl_sm3": crl.fingerprint.hex(),
            "next_update": crl.next_update.isoformat(),
        },
        source=source,
        at_ms=_ms(now),
    )
    return summary


@dataclass(frozen=True, slots=True)
class ImportedCrl:
    issuer_sm3: str
    crl_number: int
    this_update: dt.datetime
    next_update: dt.datetime
    entries: int
    crl_sm3: str
    imported_at: dt.datetime


def _from_ms(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC)


def imported_crls(session: Session) -> list[ImportedCrl]:
    """A read unit: the list in force for each issuer."""
    rows = session.execute(
        select(
            CardCrl.issuer_sm3,
            CardCrl.crl_number_hex,
            CardCrl.this_update_ms,
            CardCrl.next_update_ms,
            CardCrl.entries,
            CardCrl.crl_sm3,
            CardCrl.imported_at_ms,
        ).order_by(CardCrl.issuer_sm3)
    ).all()
    return [
        ImportedCrl(
            issuer_sm3=row.issuer_sm3,
            crl_number=int(row.crl_number_hex, 16),
            this_update=_from_ms(row.this_update_ms),
            next_update=_from_ms(row.next_update_ms),
            entries=int(row.entries),
            crl_sm3=row.crl_sm3,
            imported_at=_from_ms(row.imported_at_ms),
        )
        for row in rows
    ]


def _revoked_serials_of(session: Session, issuer_sm3: str) -> frozenset[int]:
    rows = session.execute(
        select(CardRevokedSerial.serial_hex).where(CardRevokedSerial.issuer_sm3 == issuer_sm3)
    ).scalars()
    return frozenset(int(serial, 16) for serial in rows)


# --- the per-worker revoked set -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _IssuerList:
    crl_sm3: str
    next_update_ms: int
    serials: frozenset[int]


class RevokedSerials:
    """Every issuer's revoked serials, in this worker's memory (event loop only, no lock).

    :meth:`check` is a set lookup per link of the chain. :meth:`refresh` (a read unit, run by
    :func:`refresh_forever` every ``refresh_s``) reloads an issuer's serials only when its
    list in force changed. The staleness bound is ``refresh_s`` (setting
    ``card_crl_refresh_s``); the memory bound is ``card_crl_max_entries`` serials per issuer,
    enforced by the import.

    ``pinned`` are the CAs of the pinned card PKI (the root and the issuing CAs): each should
    have a list in force, since :meth:`check` consults every link's issuer.

    ``observe``, if given, is called after every refresh with each issuer's ``nextUpdate``
    (Unix ms) of the list in force, and for each pinned CA (by issuer key) whether it has a
    list in force: the seam for the worker's metrics (gateway.metrics), which this module does
    not import (the supervisor imports it through gateway.migrate, before it may import
    prometheus_client).
    """

    def __init__(
        self,
        observe: Callable[[Mapping[str, int], Mapping[str, bool]], None] | None = None,
        pinned: Sequence[Certificate] = (),
    ) -> None:
        self._lists: dict[str, _IssuerList] = {}
        self._overdue_logged: set[str] = set()
        self._missing_logged: set[str] = set()
        self._pinned = tuple(dict.fromkeys(issuer_key(ca.subject_der) for ca in pinned))
        self._observe = observe

    def check(self, chain: Sequence[Certificate]) -> None:
        """Raise GatewayError(CARD_CERT_REVOKED) if a certificate of ``chain`` (leaf first,
        the pinned root last) is on its issuer's list in force."""
        for depth, cert in enumerate(chain[:-1]):
            entry = self._lists.get(issuer_key(cert.issuer_der))
            if entry is not None and cert.serial_number in entry.serials:
                raise GatewayError(
                    ErrorCode.CARD_CERT_REVOKED,
                    "the card certificate is on the card issuer's revocation list"
                    if depth == 0
                    else f"the CA certificate at depth {depth} is on its issuer's revocation list",
                )

    def refresh_unit(self, session: Session) -> dict[str, _IssuerList]:
        """A read unit (runs in a database thread): the lists that changed, loaded."""
        changed: dict[str, _IssuerList] = {}
        for row in session.execute(
            select(CardCrl.issuer_sm3, CardCrl.crl_sm3, CardCrl.next_update_ms)
        ).all():
            known = self._lists.get(row.issuer_sm3)
            if known is not None and known.crl_sm3 == row.crl_sm3:
                continue
            changed[row.issuer_sm3] = _IssuerList(
                row.crl_sm3, int(row.next_update_ms), _revoked_serials_of(session, row.issuer_sm3)
            )
        return changed

    def apply(self, changed: dict[str, _IssuerList], now_ms: int) -> None:
        """Back on the event loop: swap the changed lists in; log lists past nextUpdate."""
        self._lists.update(changed)
        for key, entry in self._lists.items():
            overdue = now_ms > entry.next_update_ms
            if overdue and key not in self._overdue_logged:
                log.warning(
                    "card CRL past its nextUpdate: still in force until a newer one is imported",
                    extra=fields(issuer_sm3=key, next_update_ms=entry.next_update_ms),
                )
                self._overdue_logged.add(key)
            elif not overdue:
                self._overdue_logged.discard(key)
        in_force = self.pinned_in_force()
        for key, present in in_force.items():
            if not present and key not in self._missing_logged:
                log.warning(
                    "no card CRL imported for a CA of the pinned card PKI: nothing it revoked "
                    "is refused until one is",
                    extra=fields(issuer_sm3=key),
                )
                self._missing_logged.add(key)
        if self._observe is not None:
            self._observe(self.next_updates_ms(), in_force)

    def next_updates_ms(self) -> dict[str, int]:
        """Each issuer's list in force: its ``nextUpdate``, Unix ms."""
        return {key: entry.next_update_ms for key, entry in self._lists.items()}

    def pinned_in_force(self) -> dict[str, bool]:
        """Each pinned CA (its issuer key): is a list of it in force?"""
        return {key: key in self._lists for key in self._pinned}

    async def refresh(self, db: Database, now_ms: int) -> None:
        self.apply(await db.read(self.refresh_unit), now_ms)

    def __len__(self) -> int:
        return sum(len(entry.serials) for entry in self._lists.values())


async def refresh_forever(
    revoked: RevokedSerials, db: Database, clock: Callable[[], float], every_s: float
) -> None:
    """A worker's background task: :meth:`RevokedSerials.refresh` every ``every_s``."""
    while True:
        await asyncio.sleep(every_s)
        try:
            await revoked.refresh(db, int(clock() * 1000))
        except Exception:  # the old set stays in force; the next round retries
            log.exception("card CRL refresh failed")
