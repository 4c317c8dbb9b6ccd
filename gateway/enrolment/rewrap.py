"""Every secret at rest moved to the current KEK in one transaction, with one audit row:
terminal secrets (and rotations' previous ones), institutions' SM4 transport keys and the
card-session MAC key.
docs/operations.md, "Keys at rest and rewrap"."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from gateway.audit import record_audit
from gateway.card_auth.tables import rewrap_session_key
from gateway.enrolment.common import Actor
from gateway.enrolment.terminals import rewrap_terminals
from gateway.enrolment.transport import rewrap_institution_keys
from gateway.errors import ErrorCode, GatewayError
from gateway.sealing import SealError, SecretSealer

__all__ = ["RewrapReport", "rewrap_secrets"]


@dataclass(frozen=True, slots=True)
class RewrapReport:
    moved: int  # re-sealed from an older KEK to the current one
    sealed: int  # plaintext rows sealed for the first time
    unchanged: int  # already under the current KEK
    kek_id: str


def rewrap_secrets(
    session: Session, actor: Actor, sealer: SecretSealer, *, plaintext_only: bool = False
) -> RewrapReport:
    """All or nothing: a blob this ring cannot open raises KEK_WRONG before the caller's
    transaction commits anything. ``plaintext_only``: only seal what is still in plaintext
    (what `serve` does at every start)."""
    terminals = rewrap_terminals(session, sealer, plaintext_only=plaintext_only)
    moved, sealed, unchanged = rewrap_institution_keys(
        session, sealer, plaintext_only=plaintext_only
    )
    try:
        key_moved, key_sealed, key_unchanged = rewrap_session_key(
            session, sealer, plaintext_only=plaintext_only
        )
    except SealError as exc:
        raise GatewayError(
            ErrorCode.KEK_WRONG, f"the card-session key: {exc}; nothing was changed"
        ) from None
    report = RewrapReport(
        terminals.moved + moved + key_moved,
        terminals.sealed + sealed + key_sealed,
        terminals.unchanged + unchanged + key_unchanged,
        sealer.current_kek_id,
    )
    if report.moved or report.sealed:
        record_audit(
            session,
            actor.name,
            "keys.seal_plaintext" if plaintext_only else "keys.rewrap",
            "secrets",
            {
                "terminals_moved": terminals.moved,
                "terminals_sealed": terminals.sealed,
                "institution_keys_moved": moved,
                "institution_keys_sealed": sealed,
                "card_session_key_moved": key_moved,
                "card_session_key_sealed": key_sealed,
                "kek_id": report.kek_id,
            },
            source=actor.source,
            at_ms=actor.at_ms,
        )
    return report
