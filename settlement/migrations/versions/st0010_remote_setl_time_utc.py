"""remote_settlements.setl_time in UTC on SQLite (a data repair, no schema change)

Until this revision a cross-province settlement's ``setl_time`` was stored as the hub gave it,
in Beijing time. PostgreSQL's timestamptz kept the instant; SQLite keeps the wall clock of
whatever zone it is handed, so there the value sat 8 hours ahead of every other (UTC) instant
and a settlement after 16:00 Beijing fell out of its own day's clearing statement. The code
now stores UTC (settlement.crossprov.remote.confirm); this rewrites the rows already stored,
on SQLite only, from the hub's own ``setl_time`` kept verbatim in ``setlinfo_json``. A row
whose setlinfo has no readable setl_time is left as it is. PostgreSQL needs nothing.

Downgrade leaves the UTC values: the old code reads them as the right instants too.

Revision ID: st0010
Revises: st0009
Create Date: 2026-12-07 08:20:00.000000
"""

import datetime as dt
import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "st0010"
down_revision: str | Sequence[str] | None = "st0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BEIJING = dt.timezone(dt.timedelta(hours=8), "Asia/Shanghai")
_ROWS = sa.table(
    "remote_settlements",
    sa.column("id", sa.Integer()),
    sa.column("setlinfo_json", sa.Text()),
    sa.column("setl_time", sa.DateTime(timezone=True)),
)


def _hub_setl_time(setlinfo_json: str | None) -> dt.datetime | None:
    try:
        text = json.loads(setlinfo_json or "")["setl_time"]
        return dt.datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=_BEIJING)
    except (ValueError, TypeError, KeyError):
        return None


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    rows = bind.execute(
        sa.select(_ROWS.c.id, _ROWS.c.setlinfo_json).where(_ROWS.c.setl_time.is_not(None))
    ).all()
    for row_id, setlinfo_json in rows:
        at = _hub_setl_time(setlinfo_json)
        if at is not None:
            bind.execute(
                _ROWS.update()
                .where(_ROWS.c.id == row_id)
                .values(setl_time=at.astimezone(dt.UTC).replace(tzinfo=None))
            )


def downgrade() -> None:
    pass
