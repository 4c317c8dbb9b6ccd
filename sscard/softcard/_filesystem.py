"""The card's file tree: dedicated files (DF, applications) holding elementary files (EF)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

#: File id of the master file (ISO/IEC 7816-4).
MF_FID: Final = b"\x3f\x00"


@dataclass(frozen=True, slots=True, repr=False)
class ElementaryFile:
    """An EF: either record-structured (``records``) or transparent (``content``).

    ``records`` maps record number (1..254) to the whole record as READ RECORD returns it.
    The repr shows sizes only: records hold personal data.
    """

    fid: bytes
    sfi: int | None = None
    records: Mapping[int, bytes] | None = None
    content: bytes | None = None

    def __post_init__(self) -> None:
        assert len(self.fid) == 2, "file id is 2 bytes"
        assert self.sfi is None or 1 <= self.sfi <= 30, "SFI is 1..30"
        assert (self.records is None) != (self.content is None), "records xor content"
        if self.records is not None:
            assert all(1 <= n <= 0xFE for n in self.records), "record numbers are 1..254"
            assert all(1 <= len(r) <= 0xFF for r in self.records.values()), "records fit Le"
            # Frozen copy: a card's files do not change behind its back.
            object.__setattr__(self, "records", MappingProxyType(dict(self.records)))
        if self.content is not None:
            assert len(self.content) <= 0x7FFF + 1, "transparent EF fits a 15-bit offset"

    def __repr__(self) -> str:
        if self.records is not None:
            body = f"records={sorted(self.records)}"
        else:
            body = f"content=<{len(self.content or b'')} bytes>"
        return f"ElementaryFile(fid={self.fid.hex().upper()}, sfi={self.sfi}, {body})"


@dataclass(slots=True, eq=False)
class DedicatedFile:
    """A DF: the MF, or an application selected by its AID (DF name)."""

    label: str
    aid: bytes | None = None
    fid: bytes | None = None
    efs: tuple[ElementaryFile, ...] = ()
    children: tuple[DedicatedFile, ...] = ()
    parent: DedicatedFile | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        for child in self.children:
            child.parent = self

    def ef_by_fid(self, fid: bytes) -> ElementaryFile | None:
        return next((ef for ef in self.efs if ef.fid == fid), None)

    def ef_by_sfi(self, sfi: int) -> ElementaryFile | None:
        return next((ef for ef in self.efs if ef.sfi == sfi), None)

    def child_by_fid(self, fid: bytes) -> DedicatedFile | None:
        return next((df for df in self.children if df.fid == fid), None)

    def lineage(self) -> list[DedicatedFile]:
        """This DF and its ancestors up to the MF."""
        chain: list[DedicatedFile] = []
        node: DedicatedFile | None = self
        while node is not None:
            chain.append(node)
            node = node.parent
        return chain


def atr_t1(historical: bytes) -> bytes:
    """An ATR that offers T=0 and T=1 (``3B 8K 80 01 hist TCK``); pcscd then picks T=1.

    TD1 = 80 (T=0, TD2 follows), TD2 = 01 (T=1); a T=1 offer makes the check byte TCK
    mandatory: the XOR of every byte from T0 to the last historical byte.
    """
    assert len(historical) <= 15
    body = bytes([0x80 | len(historical), 0x80, 0x01]) + historical
    tck = 0
    for byte in body:
        tck ^= byte
    return b"\x3b" + body + bytes([tck])


def atr_t0(historical: bytes) -> bytes:
    """An ATR that offers T=0 only (``3B 0K hist``, no interface bytes, no TCK)."""
    assert len(historical) <= 15
    return b"\x3b" + bytes([len(historical)]) + historical
