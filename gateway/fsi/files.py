"""Files on the national door: 9101 upload and 9102 download (docs/national-interface.md §3
"Files"). An upload is kept for its institution under a ``file_qury_no`` until it expires;
3202 names its detail file so, and answers its differences as a file 9102 downloads.

Bounds (also in the docs): a file is at most :data:`FILE_MAX_BYTES` (what fits in one
envelope, Base64 and all); an institution keeps at most :data:`FILES_KEPT` files at once; a
file lives :data:`FILE_TTL_S`. Expired files are deleted by the next upload of their
institution.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import secrets
from dataclasses import dataclass
from functools import partial
from typing import Any, Final

from pydantic import Field
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from dbkit import BEIJING
from gateway.errors import ErrorCode, GatewayError
from gateway.fsi.calls import FsiCall, InputModel, ok, parse_input, run_work
from gateway.fsi.store import FsiFile
from gateway.fsi.views import time_text
from settlement.keyed import Answer, Stored

__all__ = [
    "FILES_KEPT",
    "FILE_MAX_BYTES",
    "FILE_TTL_S",
    "KeptFile",
    "download",
    "file_content",
    "keep_file",
    "upload",
]

# The envelope is at most 1 MiB; Base64 makes 3 bytes 4 characters.
FILE_MAX_BYTES: Final = 768 * 1024
FILES_KEPT: Final = 200
FILE_TTL_S: Final = 24 * 3600
_FILENAME_PATTERN: Final = r"^[^/\\\x00-\x1f]{1,200}$"


@dataclass(frozen=True, slots=True)
class KeptFile:
    file_qury_no: str
    filename: str
    size: int
    expires_at: dt.datetime


def _file_number(now: dt.datetime) -> str:
    # F + the Beijing day + 24 random hex digits: unguessable, and scoped to the institution.
    return f"F{now.astimezone(BEIJING):%Y%m%d}{secrets.token_hex(12).upper()}"


def keep_file(
    session: Session, *, fixmedins_code: str, filename: str, content: bytes, now: dt.datetime
) -> KeptFile:
    """Store a file for the institution (after deleting its expired ones)."""
    if len(content) > FILE_MAX_BYTES:
        raise GatewayError(ErrorCode.FSI_FILE_INVALID, f"a file is at most {FILE_MAX_BYTES} bytes")
    now_s = int(now.timestamp())
    session.execute(
        delete(FsiFile).where(
            FsiFile.fixmedins_code == fixmedins_code, FsiFile.expires_at_s <= now_s
        )
    )
    kept = session.scalar(
        select(func.count()).select_from(FsiFile).where(FsiFile.fixmedins_code == fixmedins_code)
    )
    if (kept or 0) >= FILES_KEPT:
        raise GatewayError(
            ErrorCode.FSI_FILE_INVALID,
            f"this institution keeps {FILES_KEPT} files already; they expire after 24 hours",
        )
    row = FsiFile(
        file_qury_no=_file_number(now),
        fixmedins_code=fixmedins_code,
        filename=filename,
        content=content,
        size=len(content),
        created_at_s=now_s,
        expires_at_s=now_s + FILE_TTL_S,
    )
    session.add(row)
    session.flush()
    return KeptFile(
        row.file_qury_no, filename, len(content), now + dt.timedelta(seconds=FILE_TTL_S)
    )


def file_content(
    session: Session, *, fixmedins_code: str, file_qury_no: str, now: dt.datetime
) -> FsiFile:
    """The institution's unexpired file ``file_qury_no``; another institution's, or an
    expired one, is answered exactly like a missing one."""
    row = session.get(FsiFile, file_qury_no)
    if (
        row is None
        or row.fixmedins_code != fixmedins_code
        or row.expires_at_s <= int(now.timestamp())
    ):
        raise GatewayError(
            ErrorCode.FSI_FILE_NOT_FOUND, "no file of this institution has this file_qury_no"
        )
    return row


def _bytes_of(value: object) -> bytes:
    """The file as clients send it: a Base64 string (most: Java's byte[] serialised), or an
    array of byte values (-128..255)."""
    if isinstance(value, str):
        if len(value) > (FILE_MAX_BYTES // 3 + 1) * 4:
            raise GatewayError(
                ErrorCode.FSI_FILE_INVALID, f"a file is at most {FILE_MAX_BYTES} bytes"
            )
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise GatewayError(ErrorCode.FSI_FILE_INVALID, "in: not Base64") from None
    if isinstance(value, list):
        if len(value) > FILE_MAX_BYTES:
            raise GatewayError(
                ErrorCode.FSI_FILE_INVALID, f"a file is at most {FILE_MAX_BYTES} bytes"
            )
        if not all(
            isinstance(b, int) and not isinstance(b, bool) and -128 <= b <= 255 for b in value
        ):
            raise GatewayError(ErrorCode.FSI_FILE_INVALID, "in: bytes must be -128..255")
        return bytes(b & 0xFF for b in value)
    raise GatewayError(
        ErrorCode.FSI_ENVELOPE_INVALID, "input.fsUploadIn.in must be Base64 text or a byte array"
    )


class UploadInput(InputModel):
    filename: str = Field(pattern=_FILENAME_PATTERN)
    fixmedins_code: str = Field("", max_length=32)
    in_: Any = Field(None, alias="in")


def _kept_answer(kept: KeptFile, *, call: FsiCall) -> Answer:
    return ok(
        call,
        {
            "file_qury_no": kept.file_qury_no,
            "filename": kept.filename,
            "file_size": kept.size,
            "dld_endtime": time_text(kept.expires_at),
        },
    )


async def upload(call: FsiCall) -> Stored:
    """9101: keep a file under a new ``file_qury_no`` (a resent 9101 answers the same one)."""
    body = parse_input(UploadInput, call.input, node="fsUploadIn")
    if body.fixmedins_code and body.fixmedins_code != call.counter.fixmedins_code:
        raise GatewayError(
            ErrorCode.FSI_ENVELOPE_INVALID, "fsUploadIn.fixmedins_code is not the envelope's"
        )
    if body.in_ is None:
        raise GatewayError(ErrorCode.FSI_ENVELOPE_INVALID, "input: fsUploadIn.in is missing")
    content = _bytes_of(body.in_)
    if not content:
        raise GatewayError(ErrorCode.FSI_FILE_INVALID, "the file is empty")
    return await run_work(
        call,
        partial(
            keep_file,
            fixmedins_code=call.counter.fixmedins_code,
            filename=body.filename,
            content=content,
            now=call.now,
        ),
        partial(_kept_answer, call=call),
    )


class DownloadInput(InputModel):
    file_qury_no: str = Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9]+$")
    filename: str = Field("", max_length=200)
    fixmedins_code: str = Field("", max_length=32)


def _download_answer(row: FsiFile, *, call: FsiCall, filename: str) -> Answer:
    if filename and filename != row.filename:
        raise GatewayError(
            ErrorCode.FSI_FILE_NOT_FOUND, "no file of this institution has this name and number"
        )
    return ok(
        call,
        {
            "file_qury_no": row.file_qury_no,
            "filename": row.filename,
            "file_size": row.size,
            "file_data": base64.b64encode(bytes(row.content)).decode("ascii"),
        },
    )


async def download(call: FsiCall) -> Stored:
    """9102: a file of the institution (its own upload, or a file an answer named)."""
    body = parse_input(DownloadInput, call.input, node="fsDownloadIn")
    return await run_work(
        call,
        partial(
            file_content,
            fixmedins_code=call.counter.fixmedins_code,
            file_qury_no=body.file_qury_no,
            now=call.now,
        ),
        partial(_download_answer, call=call, filename=body.filename),
    )
