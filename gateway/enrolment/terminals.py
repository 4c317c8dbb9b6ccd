"""Terminals: enrol (the secret made by the gateway and shown once, or imported), rotate with
an overlap in which the previous secret is still accepted, disable and enable, list; and the
move of every sealed secret to the current KEK (rewrap).

A secret is only ever stored sealed (gateway.sealing) with the row's identity as associated
data; the plaintext column of before gw0005 is set to NULL by everything here. What these
functions return holds a secret only where the operator must be shown it once (enrol,
rotate); a listing never does.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Final

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from gateway.audit import record_audit
from gateway.enrolment.common import Actor, conflict, invalid, not_found
from gateway.enrolment.institutions import require_institution
from gateway.errors import ErrorCode, GatewayError
from gateway.sealing import SealError, SecretSealer, kek_id_of
from gateway.store import Terminal, secret_aad
from sscard import terminal_auth as ta

__all__ = [
    "GENERATED_SECRET_BYTES",
    "EnrolledSecret",
    "RewrapCounts",
    "TerminalView",
    "enrol_terminal",
    "list_terminals",
    "rewrap_terminals",
    "rotate_terminal",
    "set_terminal_enabled",
]

GENERATED_SECRET_BYTES: Final = 32
SECRET_MIN_BYTES: Final = 16  # the terminals table's CHECK: 16 to 64 bytes
SECRET_MAX_BYTES: Final = 64


@dataclass(frozen=True, slots=True)
class EnrolledSecret:
    """A terminal's new secret, to be shown to the operator ONCE. Its repr hides it."""

    terminal_id: str
    institution_code: str
    secret: bytes
    kek_id: str
    previous_until_s: int | None = None

    def __repr__(self) -> str:
        return f"EnrolledSecret({self.terminal_id}, secret=<hidden>, kek_id={self.kek_id})"


@dataclass(frozen=True, slots=True)
class TerminalView:
    terminal_id: str
    institution_code: str
    enabled: bool
    # The KEK that sealed its secret, or "plaintext" for a row not sealed yet.
    kek_id: str
    previous_until_s: int | None


def _check_secret(secret: bytes) -> bytes:
    if not SECRET_MIN_BYTES <= len(secret) <= SECRET_MAX_BYTES:
        invalid(f"a terminal secret is {SECRET_MIN_BYTES} to {SECRET_MAX_BYTES} bytes")
    return secret


def _check_terminal_id(terminal_id: str) -> str:
    try:
        return ta.check_terminal_id(terminal_id)
    except ta.MalformedAuthField:
        invalid("terminal id must be 1-64 characters of A-Z a-z 0-9 . _ -")


def _require_terminal(session: Session, terminal_id: str) -> Terminal:
    row = session.get(Terminal, terminal_id)
    if row is None:
        not_found(f"no terminal has the id {terminal_id}")
    return row


def _open_current(row: Terminal, sealer: SecretSealer) -> bytes:
    if row.sealed_secret is not None:
        try:
            return sealer.open(bytes(row.sealed_secret), secret_aad(row.terminal_id))
        except SealError as exc:
            raise GatewayError(ErrorCode.KEK_WRONG, f"terminal {row.terminal_id}: {exc}") from None
    if row.secret is None:
        invalid(f"terminal {row.terminal_id} has no secret")
    return bytes(row.secret)


def enrol_terminal(
    session: Session,
    actor: Actor,
    sealer: SecretSealer,
    *,
    terminal_id: str,
    institution_code: str,
    secret: bytes | None = None,
) -> EnrolledSecret:
    """Enrol an enabled terminal. ``secret``: imported (16-64 bytes), or None: made here."""
    terminal_id = _check_terminal_id(terminal_id)
    imported = secret is not None
    secret = (
        _check_secret(secret) if secret is not None else secrets.token_bytes(GENERATED_SECRET_BYTES)
    )
    institution = require_institution(session, institution_code)
    if institution.suspended:
        invalid(f"institution {institution_code} is suspended: reinstate it first")
    if session.get(Terminal, terminal_id) is not None:
        conflict(f"a terminal with the id {terminal_id} is enrolled already")
    sealed = sealer.seal(secret, secret_aad(terminal_id))
    session.add(
        Terminal(
            terminal_id=terminal_id,
            institution_code=institution_code,
            secret=None,
            sealed_secret=sealed,
            enabled=True,
        )
    )
    session.flush()
    record_audit(
        session,
        actor.name,
        "terminal.enrol",
        f"terminal:{terminal_id}",
        {
            "institution_code": institution_code,
            "origin": "imported" if imported else "generated",
            "kek_id": sealer.current_kek_id,
        },
        source=actor.source,
        at_ms=actor.at_ms,
    )
    return EnrolledSecret(terminal_id, institution_code, secret, sealer.current_kek_id)


def rotate_terminal(
    session: Session,
    actor: Actor,
    sealer: SecretSealer,
    *,
    terminal_id: str,
    overlap_s: int,
    secret: bytes | None = None,
) -> EnrolledSecret:
    """A new secret; the current one stays accepted for ``overlap_s`` seconds (0: at once
    refused). A rotation during another one's overlap ends that overlap: only the secret
    being replaced is kept as the previous one."""
    if not 0 <= overlap_s <= 30 * 86_400:
        invalid("the overlap is 0 to 2592000 seconds (30 days)")
    imported = secret is not None
    secret = (
        _check_secret(secret) if secret is not None else secrets.token_bytes(GENERATED_SECRET_BYTES)
    )
    row = _require_terminal(session, terminal_id)
    current = _open_current(row, sealer)
    until_s = int(actor.at_s) + overlap_s if overlap_s else None
    row.sealed_secret = sealer.seal(secret, secret_aad(terminal_id))
    row.secret = None
    row.previous_sealed = (
        sealer.seal(current, secret_aad(terminal_id, previous=True)) if until_s else None
    )
    row.previous_until_s = until_s
    session.flush()
    record_audit(
        session,
        actor.name,
        "terminal.rotate",
        f"terminal:{terminal_id}",
        {
            "origin": "imported" if imported else "generated",
            "previous_accepted_until_s": until_s,
            "kek_id": sealer.current_kek_id,
        },
        source=actor.source,
        at_ms=actor.at_ms,
    )
    return EnrolledSecret(terminal_id, row.institution_code, secret, sealer.current_kek_id, until_s)


def set_terminal_enabled(
    session: Session, actor: Actor, *, terminal_id: str, enabled: bool
) -> TerminalView:
    """Disable (refused by every worker within the terminal directory's TTL) or enable."""
    row = _require_terminal(session, terminal_id)
    if bool(row.enabled) != enabled:
        row.enabled = enabled
        session.flush()
        record_audit(
            session,
            actor.name,
            "terminal.enable" if enabled else "terminal.disable",
            f"terminal:{terminal_id}",
            {"enabled": [not enabled, enabled]},
            source=actor.source,
            at_ms=actor.at_ms,
        )
    return _view(row)


def _view(row: Terminal) -> TerminalView:
    kek = "plaintext" if row.sealed_secret is None else kek_id_of(bytes(row.sealed_secret))
    return TerminalView(
        row.terminal_id, row.institution_code, bool(row.enabled), kek, row.previous_until_s
    )


def list_terminals(
    session: Session,
    *,
    institution_code: str | None = None,
    after: str | None = None,
    limit: int = 500,
) -> list[TerminalView]:
    query = select(Terminal).order_by(Terminal.terminal_id).limit(limit)
    if institution_code is not None:
        query = query.where(Terminal.institution_code == institution_code)
    if after is not None:
        query = query.where(Terminal.terminal_id > after)
    return [_view(row) for row in session.scalars(query)]


@dataclass(frozen=True, slots=True)
class RewrapCounts:
    moved: int  # re-sealed from an older KEK to the current one
    sealed: int  # plaintext rows sealed for the first time
    unchanged: int  # already under the current KEK


def rewrap_terminals(
    session: Session, sealer: SecretSealer, *, plaintext_only: bool = False
) -> RewrapCounts:
    """Re-seal every terminal secret (and a rotation's previous one) under the current KEK,
    in the caller's transaction (gateway.enrolment.rewrap: all secrets, one audit row).

    Every blob is opened before anything is written, and one that this ring cannot open (a
    KEK missing from kek_previous_files) raises KEK_WRONG. ``plaintext_only``: only seal rows
    still in the plaintext column (what `serve` does at every start)."""
    current = sealer.current_kek_id
    rows = session.execute(
        select(
            Terminal.terminal_id, Terminal.secret, Terminal.sealed_secret, Terminal.previous_sealed
        ).order_by(Terminal.terminal_id)
    ).all()
    updates: list[tuple[str, dict[str, object]]] = []
    moved = sealed = unchanged = 0
    for terminal_id, plain, blob, previous in rows:
        if blob is None:
            if plain is None:
                continue
            values: dict[str, object] = {
                "sealed_secret": sealer.seal(bytes(plain), secret_aad(terminal_id)),
                "secret": None,
            }
            sealed += 1
        elif plaintext_only or (
            kek_id_of(bytes(blob)) == current
            and (previous is None or kek_id_of(bytes(previous)) == current)
        ):
            unchanged += 1
            continue
        else:
            values = {"sealed_secret": _reseal(sealer, terminal_id, bytes(blob), previous=False)}
            if previous is not None:
                values["previous_sealed"] = _reseal(
                    sealer, terminal_id, bytes(previous), previous=True
                )
            moved += 1
        updates.append((terminal_id, values))
    for terminal_id, values in updates:
        session.execute(update(Terminal).where(Terminal.terminal_id == terminal_id).values(values))
    return RewrapCounts(moved, sealed, unchanged)


def _reseal(sealer: SecretSealer, terminal_id: str, blob: bytes, *, previous: bool) -> bytes:
    aad = secret_aad(terminal_id, previous=previous)
    try:
        return sealer.seal(sealer.open(blob, aad), aad)
    except SealError as exc:
        raise GatewayError(
            ErrorCode.KEK_WRONG, f"terminal {terminal_id}: {exc}; nothing was changed"
        ) from None
