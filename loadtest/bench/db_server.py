"""What a bench run costs the PostgreSQL server: its backends' CPU and the WAL it wrote.

Shared by the settle and visit benches (``--db postgresql…``), so that nothing hides in the
database: the gateway's connections are named with an ``application_name`` of the run's own
(:func:`named`), their backends are found by it in pg_stat_activity and their CPU read from
/proc (:class:`DatabaseCpu`; needs the bench on the database's host and permission to read the
backends' /proc entries, else the figure is None and says why), and the WAL written is the
distance between two ``pg_current_wal_lsn()`` readings (:meth:`DatabaseCpu.wal_lsn`). The WAL
figure is the whole server's: other clients writing meanwhile (other helpers' tests on a
shared server) inflate it, so it is an upper bound on this run's.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Final

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

__all__ = ["DatabaseCpu", "named"]

_CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class DatabaseCpu:
    """CPU seconds of the PostgreSQL backends serving connections named ``application_name``.

    Backends are found in pg_stat_activity at each reading; one that appeared since the last
    reading counts from zero (the gateway's pool opens its connections during warm-up, before
    any measured phase, so a measured phase rarely sees a new one)."""

    def __init__(self, admin_url: str, application_name: str) -> None:
        self._engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        self._name = application_name
        self.unreadable = ""

    def close(self) -> None:
        self._engine.dispose()

    def _pids(self) -> list[int]:
        with self._engine.connect() as connection:
            rows = connection.execute(
                text("SELECT pid FROM pg_stat_activity WHERE application_name = :name"),
                {"name": self._name},
            )
            return [int(pid) for (pid,) in rows]

    def read(self) -> dict[int, float]:
        readings: dict[int, float] = {}
        for pid in self._pids():
            try:
                with open(f"/proc/{pid}/stat", "rb") as f:
                    stat = f.read()
            except OSError as exc:  # another host, or not allowed to read it
                self.unreadable = f"/proc/{pid}/stat: {exc.strerror}"
                continue
            fields = stat[stat.rindex(b")") + 2 :].split()
            readings[pid] = (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
        return readings

    def wal_lsn(self) -> int:
        """The server's current WAL write position, in bytes since the start of its WAL."""
        with self._engine.connect() as connection:
            lsn = connection.execute(text("SELECT pg_current_wal_lsn() - '0/0'")).scalar_one()
        return int(lsn)

    @staticmethod
    def used(before: dict[int, float], after: dict[int, float]) -> float:
        return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


@contextlib.contextmanager
def named(db_url: str, backend: str, name: str) -> Iterator[tuple[str, DatabaseCpu | None]]:
    """The gateway's URL with its connections named ``name`` (PostgreSQL), and the reader of
    their backends' CPU; SQLite has no server to read."""
    if backend != "postgresql":
        yield db_url, None
        return
    url = make_url(db_url)
    options = url.query.get("options", "")
    with_name = url.update_query_dict({"application_name": name, "options": options})
    reader = DatabaseCpu(url.render_as_string(hide_password=False), name)
    try:
        yield with_name.render_as_string(hide_password=False), reader
    finally:
        reader.close()
