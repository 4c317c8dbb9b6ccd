"""Chain verification against one pinned root (RFC 5280 §6.1, trimmed to this profile).

What is checked, top (root) down, for each certificate:

1. the issuer's SM2-with-SM3 signature over the exact ``tbsCertificate`` bytes received
   (the pinned root's own self-signature is not: pinning the certificate *is* the trust);
2. validity at ``at`` (bounds inclusive, RFC 5280 §4.1.2.5);
3. no critical extension outside basicConstraints, keyUsage, SKI, AKI;
4. for every certificate that issued another: cA=TRUE, keyCertSign, and the pathLen state
   machine of RFC 5280 §6.1.4 (k)–(n) (self-issued certificates do not count);
5. for the leaf: digitalSignature, and (for card certificates) a subject serialNumber.

Names chain by exact bytes (issuer == issuer's subject), as Go's crypto/x509 does: every
certificate of this PKI is issued by our builders or OpenSSL, which both copy the issuer's
subject verbatim, so the RFC 4518 normalisation would only widen what is accepted. When both
AKI and SKI are present they must match too, which keeps a look-alike CA (same name, other key)
out at path building (CERT_CHAIN_INVALID) rather than at the signature.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sscard.crypto import DEFAULT_SIGNER_ID, SignatureInvalid, SM2PublicKey, sm2_verify

from ._errors import (
    CertificateChainInvalid,
    CertificateExpired,
    CertificateKeyUsage,
    CertificateMalformed,
    CertificateNotCA,
    CertificateNotYetValid,
    CertificatePathLenExceeded,
    CertificateSignatureInvalid,
    CertificateUnknownCriticalExtension,
)
from ._model import UNDERSTOOD_EXTENSIONS, Certificate, KeyUsage, load

#: Longest accepted path between the card certificate and the root. This PKI has one issuing
#: CA; a little headroom allows a CA rollover without making hostile chains expensive.
MAX_INTERMEDIATES = 4
#: Most candidate intermediates a caller may offer (each costs a name comparison per step).
MAX_OFFERED_INTERMEDIATES = 16
#: Bounded memo of signature checks. A check is a pure function of (tbs, signature, key, id),
#: so remembering it is safe; it saves the issuing CA's verify (~0.6 ms) on every new card.
SIGNATURE_MEMO_SIZE = 1024


@dataclass(frozen=True, slots=True)
class VerifiedCertificate:
    """A card certificate whose chain verified to the pinned root at some instant.

    ``valid_from``/``valid_until`` intersect the validity of the whole chain, so a cache keyed
    by :attr:`fingerprint` can re-check an entry with :meth:`is_valid_at` instead of verifying
    the chain again.
    """

    leaf: Certificate
    #: leaf first, then the intermediates used, then the pinned root.
    chain: tuple[Certificate, ...]
    valid_from: datetime
    valid_until: datetime

    @property
    def public_key(self) -> SM2PublicKey:
        return self.leaf.public_key

    @property
    def card_sn(self) -> str | None:
        """The subject serialNumber; never None when verified with ``require_card_sn``."""
        return self.leaf.card_sn

    @property
    def fingerprint(self) -> bytes:
        """SM3 of the leaf DER (the cache key)."""
        return self.leaf.fingerprint

    def is_valid_at(self, at: datetime) -> bool:
        _require_aware(at)
        return self.valid_from <= at <= self.valid_until


def verify_chain(
    leaf: Certificate | bytes,
    intermediates: Sequence[Certificate | bytes],
    pinned_root: Certificate,
    *,
    at: datetime,
    signer_id: bytes = DEFAULT_SIGNER_ID,
    require_card_sn: bool = True,
) -> VerifiedCertificate:
    """Verify ``leaf`` up to ``pinned_root`` at instant ``at``; raise, never return False.

    ``intermediates`` may be in any order and hold extra certificates (or the root itself);
    the path is built by issuer name and key identifier. DER bytes are accepted in place of
    parsed certificates (parse errors raise ``CERT_MALFORMED``), but a caller that verifies
    many cards should hold the issuing CA parsed: parsing costs about as much as a third of
    an SM2 verify. ``at`` must be timezone-aware: the caller owns the clock.

    Raises a :class:`~sscard.certs.CertificateError` subclass; see the module docstring of
    :mod:`sscard.certs` for the codes.
    """
    _require_aware(at)
    leaf_cert = leaf if isinstance(leaf, Certificate) else load(leaf)
    if len(intermediates) > MAX_OFFERED_INTERMEDIATES:
        raise CertificateChainInvalid(
            f"{len(intermediates)} intermediates offered, at most {MAX_OFFERED_INTERMEDIATES}"
        )
    pool = [c if isinstance(c, Certificate) else load(c) for c in intermediates]
    path = _build_path(leaf_cert, pool, pinned_root)
    root_depth = len(path)

    # Root first: a pinned root that expired or is not a CA invalidates everything under it.
    _check_validity(pinned_root, at, root_depth)
    _check_critical_extensions(pinned_root, root_depth)
    _check_issuer_capabilities(pinned_root, root_depth)
    max_path_length = (
        MAX_INTERMEDIATES if pinned_root.path_length is None else pinned_root.path_length
    )

    issuer = pinned_root
    for depth in range(root_depth - 1, -1, -1):
        cert = path[depth]
        _check_signature(cert, issuer, signer_id, depth)
        _check_validity(cert, at, depth)
        _check_critical_extensions(cert, depth)
        if depth > 0:
            _check_issuer_capabilities(cert, depth)
            # RFC 5280 §6.1.4 (l)-(m): each non-self-issued intermediate uses up one level.
            if not cert.is_self_issued:
                if max_path_length <= 0:
                    raise CertificatePathLenExceeded(
                        "too many CA certificates below a pathLenConstraint", depth=depth
                    )
                max_path_length -= 1
            if cert.path_length is not None:
                max_path_length = min(max_path_length, cert.path_length)
        issuer = cert

    if leaf_cert.key_usage is None or KeyUsage.DIGITAL_SIGNATURE not in leaf_cert.key_usage:
        raise CertificateKeyUsage("card certificate lacks keyUsage digitalSignature", depth=0)
    if require_card_sn and leaf_cert.card_sn is None:
        raise CertificateMalformed("card certificate has no subject serialNumber (card_sn)")

    chain = (*path, pinned_root)
    return VerifiedCertificate(
        leaf=leaf_cert,
        chain=chain,
        valid_from=max(c.not_before for c in chain),
        valid_until=min(c.not_after for c in chain),
    )


def _build_path(leaf: Certificate, pool: list[Certificate], root: Certificate) -> list[Certificate]:
    """[leaf, intermediate, ...] ending with the certificate the pinned root issued."""
    if leaf == root:
        raise CertificateChainInvalid("the pinned root is not a card certificate", depth=0)
    candidates: list[Certificate] = []
    for cert in pool:
        if cert not in (root, leaf) and cert not in candidates:
            candidates.append(cert)
    path = [leaf]
    while not _issued_by(path[-1], root):
        if len(path) > MAX_INTERMEDIATES:
            raise CertificateChainInvalid(
                f"no path to the pinned root within {MAX_INTERMEDIATES} intermediates",
                depth=len(path) - 1,
            )
        issuer = next((c for c in candidates if _issued_by(path[-1], c)), None)
        if issuer is None:
            raise CertificateChainInvalid(
                "issuer not found: not issued by the pinned root or an offered intermediate",
                depth=len(path) - 1,
            )
        candidates.remove(issuer)
        path.append(issuer)
    return path


def _issued_by(child: Certificate, parent: Certificate) -> bool:
    if child.issuer_der != parent.subject_der:
        return False
    if child.authority_key_id is not None and parent.subject_key_id is not None:
        return child.authority_key_id == parent.subject_key_id
    return True


def _check_signature(cert: Certificate, issuer: Certificate, signer_id: bytes, depth: int) -> None:
    if not _signature_valid(cert, issuer.public_key, bytes(signer_id)):
        raise CertificateSignatureInvalid(
            f"SM2-with-SM3 signature does not verify (sm3:{cert.fingerprint[:8].hex()})",
            depth=depth,
        )


# Keyed by the certificate's SM3 fingerprint (which covers tbsCertificate and the signature)
# rather than by the bytes themselves, so the memo costs ~100 bytes an entry whatever the
# certificate size. Failures are remembered too: the answer is deterministic either way.
_signature_memo: OrderedDict[tuple[bytes, SM2PublicKey, bytes], bool] = OrderedDict()
_signature_memo_lock = threading.Lock()


def _signature_valid(cert: Certificate, issuer_key: SM2PublicKey, signer_id: bytes) -> bool:
    key = (cert.fingerprint, issuer_key, signer_id)
    with _signature_memo_lock:
        known = _signature_memo.get(key)
        if known is not None:
            _signature_memo.move_to_end(key)
            return known
    try:
        sm2_verify(issuer_key, cert.tbs_der, cert.signature, signer_id=signer_id)
        valid = True
    except SignatureInvalid:
        valid = False
    with _signature_memo_lock:
        _signature_memo[key] = valid
        while len(_signature_memo) > SIGNATURE_MEMO_SIZE:
            _signature_memo.popitem(last=False)
    return valid


def _check_validity(cert: Certificate, at: datetime, depth: int) -> None:
    if at < cert.not_before:
        raise CertificateNotYetValid(f"not valid before {cert.not_before.isoformat()}", depth=depth)
    if at > cert.not_after:
        raise CertificateExpired(f"expired at {cert.not_after.isoformat()}", depth=depth)


def _check_critical_extensions(cert: Certificate, depth: int) -> None:
    unknown = cert.critical_extensions - UNDERSTOOD_EXTENSIONS
    if unknown:
        raise CertificateUnknownCriticalExtension(
            f"unsupported critical extension(s) {sorted(unknown)}", depth=depth
        )


def _check_issuer_capabilities(cert: Certificate, depth: int) -> None:
    if not cert.is_ca:
        raise CertificateNotCA("issued a certificate but is not a CA (cA=FALSE)", depth=depth)
    # A CA without keyUsage is allowed by RFC 5280 but not by this profile (GM/T 0015 and our
    # builders always set it): requiring it keeps a mis-issued CA from signing silently.
    if cert.key_usage is None or KeyUsage.KEY_CERT_SIGN not in cert.key_usage:
        raise CertificateKeyUsage("CA certificate lacks keyUsage keyCertSign", depth=depth)


def _require_aware(at: datetime) -> None:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("'at' must be a timezone-aware datetime")
