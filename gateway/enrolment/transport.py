"""An institution's transport profile and keys for the national-interface door
(``fsi_transport``, DOMAIN §4): ``plain``, or ``sm2-sm4`` with the institution's 16-byte SM4
key (stored sealed under the KEK) and its HIS's SM2 public key (public: stored as it is)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from gateway.audit import record_audit
from gateway.enrolment.common import Actor, invalid
from gateway.enrolment.institutions import require_institution
from gateway.errors import ErrorCode, GatewayError
from gateway.fsi.store import FsiTransport, sm4_key_aad
from gateway.sealing import SealError, SecretSealer, kek_id_of
from gateway.store import MEDICAL_KINDS
from sscard.crypto import CryptoError, SM2PublicKey

__all__ = ["PROFILES", "TransportView", "rewrap_institution_keys", "set_transport"]

PROFILES: Final = ("plain", "sm2-sm4")
SM4_KEY_BYTES: Final = 16


@dataclass(frozen=True, slots=True)
class TransportView:
    institution_code: str
    profile: str
    kek_id: str | None  # the KEK that sealed its SM4 key (None: no key)


def set_transport(
    session: Session,
    actor: Actor,
    sealer: SecretSealer,
    *,
    institution_code: str,
    profile: str,
    sm4_key: bytes | None = None,
    his_public_key: bytes | None = None,
) -> TransportView:
    institution = require_institution(session, institution_code)
    if institution.kind not in MEDICAL_KINDS:
        invalid(f"a {institution.kind} does not use the national-interface door")
    if profile not in PROFILES:
        invalid(f"profile must be one of {', '.join(PROFILES)}")
    if profile == "plain":
        if sm4_key is not None or his_public_key is not None:
            invalid("the plain profile takes no keys")
    else:
        if sm4_key is None or len(sm4_key) != SM4_KEY_BYTES:
            invalid("sm2-sm4 needs the institution's 16-byte SM4 key")
        if his_public_key is None:
            invalid("sm2-sm4 needs the HIS's SM2 public key (65 bytes, 04||x||y)")
        try:
            SM2PublicKey.from_bytes(his_public_key)
        except (CryptoError, ValueError):
            invalid("the HIS's SM2 public key is not a point on the curve (65 bytes, 04||x||y)")
    sealed = None if sm4_key is None else sealer.seal(sm4_key, sm4_key_aad(institution_code))
    row = session.get(FsiTransport, institution_code)
    before = None if row is None else row.profile
    if row is None:
        row = FsiTransport(fixmedins_code=institution_code)
        session.add(row)
    row.profile, row.sm4_key, row.sm4_key_sealed = profile, None, sealed
    row.his_public_key = his_public_key
    session.flush()
    record_audit(
        session,
        actor.name,
        "institution.transport",
        f"institution:{institution_code}",
        {
            "profile": [before, profile],
            "kek_id": None if sealed is None else sealer.current_kek_id,
            "his_public_key": None if his_public_key is None else his_public_key.hex(),
        },
        source=actor.source,
        at_ms=actor.at_ms,
    )
    return TransportView(institution_code, profile, None if sealed is None else kek_id_of(sealed))


def rewrap_institution_keys(
    session: Session, sealer: SecretSealer, *, plaintext_only: bool = False
) -> tuple[int, int, int]:
    """As gateway.enrolment.terminals.rewrap_terminals, for the SM4 keys: (moved, sealed,
    unchanged). Every blob opened before anything is written; KEK_WRONG otherwise."""
    current = sealer.current_kek_id
    rows = session.execute(
        select(FsiTransport.fixmedins_code, FsiTransport.sm4_key, FsiTransport.sm4_key_sealed)
    ).all()
    updates: list[tuple[str, bytes]] = []
    moved = sealed = unchanged = 0
    for code, plain, blob in rows:
        aad = sm4_key_aad(code)
        if blob is None:
            if plain is None:
                continue
            updates.append((code, sealer.seal(bytes(plain), aad)))
            sealed += 1
        elif plaintext_only or kek_id_of(bytes(blob)) == current:
            unchanged += 1
        else:
            try:
                updates.append((code, sealer.seal(sealer.open(bytes(blob), aad), aad)))
            except SealError as exc:
                raise GatewayError(
                    ErrorCode.KEK_WRONG, f"institution {code}: {exc}; nothing was changed"
                ) from None
            moved += 1
    for code, blob in updates:
        session.execute(
            update(FsiTransport)
            .where(FsiTransport.fixmedins_code == code)
            .values(sm4_key_sealed=blob, sm4_key=None)
        )
    return moved, sealed, unchanged
