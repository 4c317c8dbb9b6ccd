"""An employer's batch of employees (单位批量申领): a CSV in, one result per row out.

The file as a whole is checked first (:func:`parse_upload`: header, row count, CSV syntax):
a file that fails writes nothing. Then each row is applied whole or not at all, in its own
SAVEPOINT inside the caller's transaction (:func:`upload_rows`). A refused row's reason names
the column, never the value: a citizen id or a name never comes back in an answer.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from sqlalchemy.orm import Session

from issuance.access import Action, Agent, Role, require
from issuance.applications import Applicant, ApplicationRequest, apply, valid_citizen_id
from issuance.errors import ChannelNotAllowed, IssuanceError, UploadInvalid
from issuance.programme import Channel, PhotoSource, Programme

__all__ = [
    "MAX_UPLOAD_ROWS",
    "UPLOAD_COLUMNS",
    "RowResult",
    "parse_upload",
    "require_uploader",
    "upload_employees",
    "upload_rows",
]

MAX_UPLOAD_ROWS: Final = 5_000
UPLOAD_COLUMNS: Final = (
    "citizen_id",
    "name",
    "birth_date",
    "gender",
    "area_code",
    "hukou_shanghai",
    "insured_in_shanghai",
    "salary_banks",
    "bank",
    "photo_source",
    "backup_centre",
)


@dataclass(frozen=True, slots=True)
class RowResult:
    row: int  # 1 = the first data row (line 2 of the file)
    accepted: bool
    application_id: int | None = None
    code: str | None = None
    reason: str | None = None


def _bool(value: str, column: str) -> bool:
    text = value.strip().lower()
    if text in ("1", "true", "yes", "y", "是"):
        return True
    if text in ("0", "false", "no", "n", "否", ""):
        return False
    raise ValueError(f"{column}: expected 1/0 or true/false")


def _upload_row(raw: dict[str, str], employer_bank: str | None) -> ApplicationRequest:
    def need(column: str) -> str:
        value = (raw.get(column) or "").strip()
        if not value:
            raise ValueError(f"{column}: required")
        return value

    citizen_id = need("citizen_id").upper()
    if not valid_citizen_id(citizen_id):
        raise ValueError("citizen_id: expected 17 digits and the check digit (0-9 or X)")
    try:
        birth = dt.date.fromisoformat(need("birth_date"))
    except ValueError:
        raise ValueError("birth_date: expected YYYY-MM-DD") from None
    gender = need("gender")
    if gender not in ("1", "2"):
        raise ValueError("gender: expected 1 (male) or 2 (female)")
    area = need("area_code")
    if len(area) != 6 or not (area.isascii() and area.isdigit()):
        raise ValueError("area_code: expected 6 digits")
    name = need("name")
    if len(name) > 30:
        raise ValueError("name: at most 30 characters")
    try:
        photo = PhotoSource(need("photo_source"))
    except ValueError:
        raise ValueError(
            "photo_source: expected on_site, id_card_shared or e_student_card"
        ) from None
    salary = tuple(b.strip() for b in (raw.get("salary_banks") or "").split(";") if b.strip())
    chosen = (raw.get("bank") or "").strip() or employer_bank
    return ApplicationRequest(
        applicant=Applicant(
            citizen_id=citizen_id,
            name=name,
            birth_date=birth,
            gender=gender,
            area_code=area,
            hukou_shanghai=_bool(raw.get("hukou_shanghai") or "", "hukou_shanghai"),
            insured_in_shanghai=_bool(raw.get("insured_in_shanghai") or "", "insured_in_shanghai"),
        ),
        cohort="employee",
        channel=Channel.EMPLOYER_BATCH,
        photo_source=photo,
        backup_centre=need("backup_centre")[:32],
        salary_banks=salary,
        chosen_bank=chosen,
    )


def parse_upload(text: str, max_rows: int = MAX_UPLOAD_ROWS) -> list[dict[str, str]]:
    """The rows of an employer's CSV, or UploadInvalid if the file as a whole is unusable."""
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = tuple(h.strip() for h in (reader.fieldnames or ()))
    missing = [c for c in UPLOAD_COLUMNS if c not in header]
    # Unknown cells are named by position, never quoted: in a file without its header row they
    # are the first person's citizen id and name.
    unknown = [n for n, c in enumerate(header, start=1) if c not in UPLOAD_COLUMNS]
    if missing or unknown:
        raise UploadInvalid(
            f"CSV header: missing {missing or 'nothing'}, unknown "
            f"{f'columns {unknown}' if unknown else 'nothing'}; "
            f"expected {','.join(UPLOAD_COLUMNS)}"
        )
    reader.fieldnames = list(header)
    rows: list[dict[str, str]] = []
    try:
        for raw in reader:
            if len(rows) == max_rows:
                raise UploadInvalid(f"more than {max_rows} rows; split the file")
            rows.append({k: v for k, v in raw.items() if isinstance(k, str) and isinstance(v, str)})
            if None in raw:
                rows[-1]["__extra__"] = "1"
    except csv.Error as exc:
        raise UploadInvalid(f"CSV unreadable at line {reader.line_num}: {exc}") from None
    if not rows:
        raise UploadInvalid("the file has a header but no rows")
    return rows


def upload_employees(
    session: Session,
    programme: Programme,
    agent: Agent,
    text: str,
    now: dt.datetime,
) -> list[RowResult]:
    """An employer's batch: one result per row; each row is applied whole or not at all."""
    require_uploader(agent)
    return upload_rows(session, programme, agent, parse_upload(text), now)


def require_uploader(agent: Agent) -> None:
    require(agent, Action.BATCH_UPLOAD)
    if agent.role is not Role.CENTRE and agent.employer_code is None:
        raise ChannelNotAllowed("only an employer uploads employee batches")


def upload_rows(
    session: Session,
    programme: Programme,
    agent: Agent,
    rows: Sequence[dict[str, str]],
    now: dt.datetime,
    *,
    first_row: int = 1,
) -> list[RowResult]:
    """Rows of a parsed upload (:func:`parse_upload`), numbered from ``first_row``: one result
    per row, each row applied whole or not at all (its own SAVEPOINT). A caller may split a
    file into several calls, each its own transaction, so that a large file does not hold the
    database's writer for its whole length; a row is never split."""
    require_uploader(agent)
    results: list[RowResult] = []
    for number, raw in enumerate(rows, start=first_row):
        try:
            if "__extra__" in raw:
                raise ValueError("row has more fields than the header")
            if any(raw.get(c) is None for c in UPLOAD_COLUMNS):
                raise ValueError("row has fewer fields than the header")
            request = _upload_row(raw, agent.bank_code)
            with session.begin_nested():
                view = apply(session, programme, agent, request, now)
        except IssuanceError as exc:
            results.append(RowResult(number, False, code=exc.code, reason=exc.message))
        except ValueError as exc:
            results.append(RowResult(number, False, code="ROW_INVALID", reason=str(exc)))
        else:
            results.append(RowResult(number, True, application_id=view.application_id))
    return results
