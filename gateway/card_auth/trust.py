"""The pinned card PKI and the per-worker cache of verified card certificates.

:class:`TrustAnchors` is the pinned root plus the issuing CA certificates offered as
intermediates, loaded once at start-up: from PEM files in production, from the deterministic
demo PKI (:func:`sscard.demo.demo_pki`) in the embedded default. The demo CA certificates are
rebuilt in each process with fresh signature nonces, so their bytes differ between processes;
that is fine, because chain verification depends on names, key identifiers and keys only.

:class:`VerifiedCertificateCache` remembers chains that verified, by the SM3 fingerprint of
the card certificate, in a bounded LRU. A hit is re-checked against the clock (the entry
carries the whole chain's validity window), so a certificate that expires while cached is
verified again, and then fails with the proper CERT_EXPIRED.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sscard import demo as sscard_demo
from sscard.certs import Certificate, VerifiedCertificate, load_pem, load_pem_all, verify_chain

__all__ = ["TrustAnchors", "VerifiedCertificateCache"]


@dataclass(frozen=True, slots=True)
class TrustAnchors:
    root: Certificate
    issuing_cas: tuple[Certificate, ...]

    def verify(self, leaf: Certificate, at: datetime) -> VerifiedCertificate:
        """Raises a sscard.certs.CertificateError subclass (each has a stable ``code``)."""
        return verify_chain(leaf, self.issuing_cas, self.root, at=at)

    @classmethod
    def from_pem_files(cls, root: Path, issuing: tuple[Path, ...]) -> TrustAnchors:
        if not issuing:
            raise ValueError("card_issuing_ca_pems: at least one issuing CA PEM file is needed")
        cas: list[Certificate] = []
        for path in issuing:
            cas.extend(load_pem_all(path.read_bytes()))
        return cls(load_pem(root.read_bytes()), tuple(cas))

    @classmethod
    def demo(cls, seed: str) -> TrustAnchors:
        """DEMO ONLY: the PKI anyone can rebuild from the (public) demo seed."""
        pki = sscard_demo.demo_pki(seed)
        return cls(pki.root, (pki.issuing,))


class VerifiedCertificateCache:
    """Bounded LRU: SM3 fingerprint -> VerifiedCertificate. One per worker, used only from the
    event loop thread (no lock)."""

    def __init__(self, max_entries: int) -> None:
        assert max_entries >= 1
        self.max_entries = max_entries
        self._entries: OrderedDict[bytes, VerifiedCertificate] = OrderedDict()

    def get(self, fingerprint: bytes, at: datetime) -> VerifiedCertificate | None:
        entry = self._entries.get(fingerprint)
        if entry is None:
            return None
        if not entry.is_valid_at(at):
            # Verify again (and fail with the right code) rather than trust a stale entry.
            del self._entries[fingerprint]
            return None
        self._entries.move_to_end(fingerprint)
        return entry

    def put(self, verified: VerifiedCertificate) -> None:
        self._entries[verified.fingerprint] = verified
        self._entries.move_to_end(verified.fingerprint)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
