"""Secrets at rest: seal and open, bound to their row, under a ring of KEKs."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.sealing import (
    Kek,
    KeyRing,
    SealError,
    is_sealed,
    kek_id_of,
    load_kek_file,
    new_kek_file,
)

OLD, NEW = Kek(b"\x01" * 32), Kek(b"\x02" * 32)
SECRET = bytes(range(32))
AAD = b"terminals.secret:T-1"


@pytest.mark.parametrize("length", [16, 32, 33, 64])
def test_a_sealed_secret_opens_to_itself_and_does_not_contain_it(length: int):
    secret = bytes(range(length))
    blob = KeyRing(NEW).seal(secret, AAD)
    assert is_sealed(blob)
    assert secret not in blob
    assert KeyRing(NEW).open(blob, AAD) == secret
    assert KeyRing(NEW).seal(secret, AAD) != blob  # a fresh IV each time


def test_a_blob_moved_to_another_row_or_column_does_not_open():
    blob = KeyRing(NEW).seal(SECRET, AAD)
    for other in (b"terminals.secret:T-2", b"terminals.previous_secret:T-1", b""):
        with pytest.raises(SealError, match="MAC"):
            KeyRing(NEW).open(blob, other)


@pytest.mark.parametrize("position", [0, 3, 6, 30, -40, -1])
def test_a_tampered_blob_does_not_open(position: int):
    blob = bytearray(KeyRing(NEW).seal(SECRET, AAD))
    blob[position] ^= 0x01
    with pytest.raises(SealError):
        KeyRing(NEW).open(bytes(blob), AAD)


def test_a_ring_opens_old_blobs_and_seals_under_the_current_kek_only():
    old_blob = KeyRing(OLD).seal(SECRET, AAD)
    ring = KeyRing(NEW, [OLD])
    assert ring.open(old_blob, AAD) == SECRET
    assert kek_id_of(ring.seal(SECRET, AAD)) == NEW.id != OLD.id
    with pytest.raises(SealError, match=f"sealed under KEK {OLD.id}, which this gateway"):
        KeyRing(NEW).open(old_blob, AAD)


def test_kek_files(tmp_path: Path):
    path = tmp_path / "kek"
    assert new_kek_file(path)
    assert not new_kek_file(path)  # never overwritten
    assert path.stat().st_mode & 0o777 == 0o600
    assert len(load_kek_file(path).id) == 8
    bad = tmp_path / "bad"
    bad.write_text("not hex but secret-looking words")
    with pytest.raises(ValueError, match="64 hex digits") as caught:
        load_kek_file(bad)
    assert "secret-looking" not in str(caught.value)
    assert "key=<hidden>" in repr(NEW)
