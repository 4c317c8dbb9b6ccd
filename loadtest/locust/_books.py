"""The books check's arithmetic: what Locust saw confirmed against what the gateway booked.

Pure (no I/O, no clock): :mod:`loadtest.locust._gateway_books` fetches the gateway's side,
``locustfile.py`` collects the tallies of every process.

**What Locust saw.** A :class:`Tally` holds, per ``setl_id``, every settlement a user saw
confirmed (a ``201`` settle or discharge, local or through the hub), with its institution,
visit type, Beijing day and four amounts in fen, and the set of those it saw cancelled
(``200`` cancel). A replay (same Idempotency-Key, ``Idempotent-Replayed: true``) answers a
``setl_id`` the tally already holds, so it adds nothing; if it answered other figures, that
is a conflict and the check fails. Settles whose outcome a user never learned (a transport
error or a killed user, after the retries with the same key) are counted ``in_doubt`` and
fail the check: nothing may be taken on faith.

**What the gateway booked** (:class:`GatewayRow`): its day listings, ``GET
/v1/settlements?date=`` (local) and ``GET /v1/crossprov/settlements?date=`` (through the
hub), for every institution and day the run touched, read as that institution's terminal.

**The comparison** (:func:`compare`), given ``cutoff``, the gateway's clock when the run
began:

1. every settlement Locust saw is at the gateway, at the same institution, with the same
   amounts, cancelled exactly when Locust cancelled it;
2. every settlement the gateway booked at those institutions since ``cutoff`` is one Locust
   saw: a settlement twice for one visit (a retry applied twice) shows up here;
3. the statements for 3201: per institution, day and ``clr_type``, the valid settlements
   (not cancelled, as 3201 counts them) Locust saw, plus those the gateway held from before
   the run; :func:`judge_totals` then requires the gateway's own 3201 answer to match each
   one to the fen (``stmt_rslt`` "0").

The check assumes Locust is the only client settling at those institutions during the run
(another client's settlements would be reported as not seen).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = [
    "BEIJING",
    "CLR_TYPES",
    "MAX_PROBLEMS",
    "BooksReport",
    "Comparison",
    "Figures",
    "GatewayRow",
    "Seen",
    "StatementKey",
    "Tally",
    "compare",
    "judge_totals",
]

BEIJING: Final = dt.timezone(dt.timedelta(hours=8))
#: 3201's clearing types: 11 outpatient (emergencies included), 21 inpatient, 41 pharmacy.
CLR_TYPES: Final[Mapping[str, str]] = {
    "outpatient": "11",
    "emergency": "11",
    "inpatient": "21",
    "pharmacy": "41",
}
ROUTES: Final = ("local", "remote")
#: Problems listed in a report (the count is always given in full).
MAX_PROBLEMS: Final = 20
_AMOUNTS: Final = ("medfee_sumamt", "fund_pay_sumamt", "acct_pay", "psn_cash_pay")
# Remote messages that stand for money (the others were refused, reversed or are unresolved).
_REMOTE_MONEY: Final = {"confirmed": "settled", "cancelled": "cancelled"}


def _fen(body: Mapping[str, Any], name: str) -> int:
    value = body.get(name)
    # bool is an int in Python: refuse it, as the gateway's strict schema would.
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name} is not a non-negative integer number of fen")
    return value


def _text(body: Mapping[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} is missing")
    return value


def _instant(text: str) -> dt.datetime:
    """An RFC 3339 instant of the API (``...Z`` or with an offset), as an aware datetime."""
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        raise ValueError(f"instant without a time zone: {text!r}")
    return value


@dataclass(frozen=True, slots=True)
class Figures:
    """A count and the four amounts of 3201, in fen."""

    count: int = 0
    medfee_sumamt: int = 0
    fund_pay_sumamt: int = 0
    acct_pay: int = 0
    psn_cash_pay: int = 0

    def __add__(self, other: Figures) -> Figures:
        return Figures(
            self.count + other.count,
            self.medfee_sumamt + other.medfee_sumamt,
            self.fund_pay_sumamt + other.fund_pay_sumamt,
            self.acct_pay + other.acct_pay,
            self.psn_cash_pay + other.psn_cash_pay,
        )

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> Figures:
        """3201's figures object (``count`` and the four amounts)."""
        return cls(_fen(body, "count"), *(_fen(body, name) for name in _AMOUNTS))

    def statement(self) -> dict[str, int]:
        """The institution's side of a 3201 request body."""
        return {
            "fixmedins_setl_cnt": self.count,
            "medfee_sumamt": self.medfee_sumamt,
            "fund_pay_sumamt": self.fund_pay_sumamt,
            "acct_pay": self.acct_pay,
            "psn_cash_pay": self.psn_cash_pay,
        }

    def __str__(self) -> str:
        return (
            f"{self.count} settlements, medfee {self.medfee_sumamt} fen (fund "
            f"{self.fund_pay_sumamt}, account {self.acct_pay}, cash {self.psn_cash_pay})"
        )


#: (institution code, Beijing day, clr_type): one 3201 statement.
StatementKey = tuple[str, dt.date, str]


@dataclass(frozen=True, slots=True)
class Seen:
    """One settlement a Locust user saw confirmed."""

    setl_id: str
    institution: str
    route: str  # "local" | "remote" (through the hub)
    visit_type: str
    day: dt.date  # of its settle time, Beijing
    medfee_sumamt: int
    fund_pay_sumamt: int
    acct_pay: int
    psn_cash_pay: int

    def __post_init__(self) -> None:
        if self.route not in ROUTES:
            raise ValueError(f"unknown route {self.route!r}")
        if self.visit_type not in CLR_TYPES:
            raise ValueError(f"unknown visit type {self.visit_type!r}")
        if self.medfee_sumamt != self.fund_pay_sumamt + self.acct_pay + self.psn_cash_pay:
            raise ValueError(f"{self.setl_id}: medfee is not fund + account + cash")

    @classmethod
    def from_answer(cls, body: Mapping[str, Any], route: str) -> Seen:
        """From a 201 settle or discharge answer (``SettlementOut``); ValueError if it is
        not one."""
        setl_time = _instant(_text(body, "setl_time"))
        return cls(
            setl_id=_text(body, "setl_id"),
            institution=_text(body, "fixmedins_code"),
            route=route,
            visit_type=_text(body, "visit_type"),
            day=setl_time.astimezone(BEIJING).date(),
            medfee_sumamt=_fen(body, "medfee_sumamt"),
            fund_pay_sumamt=_fen(body, "fund_pay_sumamt"),
            acct_pay=_fen(body, "acct_pay"),
            psn_cash_pay=_fen(body, "psn_cash_pay"),
        )

    @property
    def clr_type(self) -> str:
        return CLR_TYPES[self.visit_type]

    @property
    def figures(self) -> Figures:
        return Figures(
            1, self.medfee_sumamt, self.fund_pay_sumamt, self.acct_pay, self.psn_cash_pay
        )

    def to_wire(self) -> list[Any]:
        return [
            self.setl_id,
            self.institution,
            self.route,
            self.visit_type,
            self.day.isoformat(),
            self.medfee_sumamt,
            self.fund_pay_sumamt,
            self.acct_pay,
            self.psn_cash_pay,
        ]

    @classmethod
    def from_wire(cls, item: list[Any]) -> Seen:
        setl_id, institution, route, visit_type, day, medfee, fund, acct, cash = item
        return cls(
            str(setl_id),
            str(institution),
            str(route),
            str(visit_type),
            dt.date.fromisoformat(str(day)),
            int(medfee),
            int(fund),
            int(acct),
            int(cash),
        )


@dataclass
class Tally:
    """What one process (or, merged, the whole run) saw."""

    settled: dict[str, Seen] = field(default_factory=dict)
    cancelled: set[str] = field(default_factory=set)
    #: Institutions where a settle or discharge was sent, whatever came back: their books
    #: are read, so that a settlement booked without Locust hearing of it is found.
    touched: set[str] = field(default_factory=set)
    in_doubt: int = 0
    conflicts: list[str] = field(default_factory=list)
    #: What went wrong while a process gathered its tally (each fails the check).
    errors: list[str] = field(default_factory=list)

    def settle(self, seen: Seen) -> bool:
        """Record a confirmed settlement; False if it was known already (a replay)."""
        known = self.settled.get(seen.setl_id)
        if known is None:
            self.settled[seen.setl_id] = seen
            return True
        if known != seen:
            self.conflicts.append(f"{seen.setl_id}: answered twice with different figures")
        return False

    def cancel(self, setl_id: str) -> None:
        self.cancelled.add(setl_id)

    def merge(self, other: Tally) -> None:
        for seen in other.settled.values():
            self.settle(seen)
        self.cancelled |= other.cancelled
        self.touched |= other.touched
        self.in_doubt += other.in_doubt
        self.conflicts.extend(other.conflicts)
        self.errors.extend(other.errors)

    # -- between processes (Locust runner messages carry msgpack: lists, str, int) ----------

    def chunks(self, size: int = 2_000) -> Iterator[dict[str, Any]]:
        """The tally as messages of at most ``size`` settlements; the last one carries the
        cancels, the in-doubt count and the conflicts, and says ``last``."""
        items = [seen.to_wire() for seen in self.settled.values()]
        for start in range(0, len(items), size):
            yield {"settled": items[start : start + size], "last": False}
        yield {
            "settled": [],
            "cancelled": sorted(self.cancelled),
            "touched": sorted(self.touched),
            "in_doubt": self.in_doubt,
            "conflicts": list(self.conflicts),
            "errors": list(self.errors),
            "settled_count": len(items),
            "last": True,
        }

    def absorb(self, chunk: Mapping[str, Any]) -> None:
        """Merge one message of :meth:`chunks` into this tally."""
        for item in chunk.get("settled", []):
            self.settle(Seen.from_wire(item))
        self.cancelled.update(str(s) for s in chunk.get("cancelled", []))
        self.touched.update(str(s) for s in chunk.get("touched", []))
        self.in_doubt += int(chunk.get("in_doubt", 0))
        self.conflicts.extend(str(c) for c in chunk.get("conflicts", []))
        self.errors.extend(str(e) for e in chunk.get("errors", []))

    # -- views --------------------------------------------------------------------------------

    def institutions(self) -> set[str]:
        """Every institution whose books the check reads."""
        return self.touched | {seen.institution for seen in self.settled.values()}

    def valid(self) -> Iterator[Seen]:
        """The settlements that stand (not cancelled): what 3201 counts."""
        return (s for s in self.settled.values() if s.setl_id not in self.cancelled)


@dataclass(frozen=True, slots=True)
class GatewayRow:
    """One settlement in the gateway's day listings."""

    setl_id: str
    institution: str
    route: str
    visit_type: str
    status: str  # "settled" | "cancelled"
    at: dt.datetime  # local: settle time; remote: when its message was written
    day: dt.date  # Beijing day 3201 files it under (local: of its settle time)
    medfee_sumamt: int
    fund_pay_sumamt: int
    acct_pay: int
    psn_cash_pay: int

    @classmethod
    def local(cls, item: Mapping[str, Any]) -> GatewayRow:
        """From an item of ``GET /v1/settlements?date=``."""
        at = _instant(_text(item, "setl_time"))
        status = _text(item, "status")
        if status not in ("settled", "cancelled"):
            raise ValueError(f"unknown settlement status {status!r}")
        return cls(
            setl_id=_text(item, "setl_id"),
            institution=_text(item, "fixmedins_code"),
            route="local",
            visit_type=_text(item, "visit_type"),
            status=status,
            at=at,
            day=at.astimezone(BEIJING).date(),
            **{name: _fen(item, name) for name in _AMOUNTS},
        )

    @classmethod
    def remote(cls, item: Mapping[str, Any]) -> GatewayRow | None:
        """From an item of ``GET /v1/crossprov/settlements?date=``; None for a message that
        moved no money (failed, reversed) or whose outcome the gateway is still resolving
        (intent, unknown)."""
        status = _REMOTE_MONEY.get(_text(item, "status"))
        if status is None:
            return None
        at = _instant(_text(item, "created_at"))
        return cls(
            setl_id=_text(item, "setl_id"),
            institution=_text(item, "fixmedins_code"),
            route="remote",
            visit_type=_text(item, "visit_type"),
            status=status,
            at=at,
            day=at.astimezone(BEIJING).date(),
            **{name: _fen(item, name) for name in _AMOUNTS},
        )

    @property
    def amounts(self) -> tuple[int, int, int, int]:
        return (self.medfee_sumamt, self.fund_pay_sumamt, self.acct_pay, self.psn_cash_pay)

    @property
    def figures(self) -> Figures:
        return Figures(1, *self.amounts)


@dataclass
class Comparison:
    """The outcome of :func:`compare`: problems found, and the 3201 statements to send."""

    problems: list[str] = field(default_factory=list)
    problem_count: int = 0
    statements: dict[StatementKey, Figures] = field(default_factory=dict)
    doubled: int = 0
    missing: int = 0

    def problem(self, text: str) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(text)


def _amounts(seen: Seen) -> tuple[int, int, int, int]:
    return (seen.medfee_sumamt, seen.fund_pay_sumamt, seen.acct_pay, seen.psn_cash_pay)


def _index(rows: Iterable[GatewayRow], out: Comparison) -> dict[str, GatewayRow]:
    by_id: dict[str, GatewayRow] = {}
    for row in rows:
        known = by_id.get(row.setl_id)
        if known is not None and known != row:
            out.problem(f"{row.setl_id}: listed twice with different contents")
        by_id[row.setl_id] = row
    return by_id


def _check_seen(tally: Tally, by_id: Mapping[str, GatewayRow], out: Comparison) -> None:
    """1. Every settlement Locust saw, as the gateway holds it."""
    for seen in tally.settled.values():
        row = by_id.get(seen.setl_id)
        cancelled = seen.setl_id in tally.cancelled
        if row is None or row.route != seen.route:
            out.missing += 1
            out.problem(f"{seen.setl_id} ({seen.institution}): confirmed to Locust, not booked")
        elif row.institution != seen.institution:
            out.problem(f"{seen.setl_id}: booked at {row.institution}, not {seen.institution}")
        elif row.amounts != _amounts(seen):
            out.problem(f"{seen.setl_id}: booked {row.amounts} fen, confirmed {_amounts(seen)}")
        elif (row.status == "cancelled") != cancelled:
            out.problem(
                f"{seen.setl_id}: {row.status} at the gateway, "
                f"{'cancelled' if cancelled else 'standing'} for Locust"
            )


def _check_unseen(
    tally: Tally, by_id: Mapping[str, GatewayRow], cutoff: dt.datetime, out: Comparison
) -> None:
    """2. Nothing booked at those institutions since the run began that Locust did not see."""
    institutions = tally.institutions()
    for row in by_id.values():
        if row.setl_id in tally.settled or row.institution not in institutions:
            continue
        if row.at >= cutoff:
            out.doubled += 1
            out.problem(
                f"{row.setl_id} ({row.institution}, {row.route}): booked during the run, "
                "never confirmed to Locust (applied twice?)"
            )


def _statements(
    tally: Tally, by_id: Mapping[str, GatewayRow], cutoff: dt.datetime, out: Comparison
) -> None:
    """3. The 3201 statements: valid local settlements, the run's and those from before it;
    one for every key where Locust settled, even if everything there was cancelled."""
    for seen in tally.settled.values():
        if seen.route == "local":
            out.statements.setdefault((seen.institution, seen.day, seen.clr_type), Figures())
    for seen in tally.valid():
        if seen.route == "local":
            key = (seen.institution, seen.day, seen.clr_type)
            out.statements[key] = out.statements[key] + seen.figures
    for row in by_id.values():
        if row.route != "local" or row.status != "settled" or row.setl_id in tally.settled:
            continue
        key = (row.institution, row.day, CLR_TYPES.get(row.visit_type, "?"))
        if row.at < cutoff and key in out.statements:
            out.statements[key] = out.statements[key] + row.figures


def compare(tally: Tally, rows: Iterable[GatewayRow], cutoff: dt.datetime) -> Comparison:
    """Steps 1-3 of the module docstring; ``rows`` are every row of the listings read."""
    if cutoff.tzinfo is None:
        raise ValueError("cutoff must be an aware datetime")
    out = Comparison()
    for conflict in tally.conflicts:
        out.problem(f"replay conflict: {conflict}")
    for error in tally.errors:
        out.problem(error)
    if tally.in_doubt:
        out.problem(f"{tally.in_doubt} settle(s) whose outcome Locust never learned")
    by_id = _index(rows, out)
    _check_seen(tally, by_id, out)
    _check_unseen(tally, by_id, cutoff, out)
    _statements(tally, by_id, cutoff, out)
    return out


def judge_totals(
    comparison: Comparison, answers: Mapping[StatementKey, tuple[str, Figures]]
) -> int:
    """Add a problem for every statement whose 3201 answer (``stmt_rslt``, the gateway's
    figures) does not match it; return how many matched."""
    matched = 0
    for key, expected in sorted(comparison.statements.items()):
        institution, day, clr_type = key
        answer = answers.get(key)
        if answer is None:
            comparison.problem(f"3201 {institution} {day} {clr_type}: no answer")
            continue
        result, gateway = answer
        if result == "0" and gateway == expected:
            matched += 1
        else:
            comparison.problem(
                f"3201 {institution} {day} clr_type {clr_type}: Locust {expected}; "
                f"gateway {gateway} (stmt_rslt {result})"
            )
    return matched


@dataclass(frozen=True, slots=True)
class BooksReport:
    """What the run prints: one line, then the problems (if any)."""

    ok: bool
    line: str
    problems: tuple[str, ...]
    figures: Mapping[str, Any]


def summarise(tally: Tally, comparison: Comparison, *, matched: int, pages: int) -> BooksReport:
    valid = Figures()
    for seen in tally.valid():
        valid = valid + seen.figures
    institutions = len({s.institution for s in tally.settled.values()})
    remote = sum(1 for s in tally.settled.values() if s.route == "remote")
    figures = {
        "settlements": len(tally.settled),
        # Demo institution codes start with H (hospital) or P (pharmacy).
        "hospital_settlements": sum(1 for s in tally.settled.values() if s.institution[:1] == "H"),
        "pharmacy_settlements": sum(1 for s in tally.settled.values() if s.institution[:1] == "P"),
        "remote": remote,
        "cancelled": len(tally.cancelled),
        "valid": valid.count,
        "valid_medfee_fen": valid.medfee_sumamt,
        "institutions": institutions,
        "statements": len(comparison.statements),
        "statements_matched": matched,
        "listing_pages": pages,
        "doubled": comparison.doubled,
        "missing": comparison.missing,
        "in_doubt": tally.in_doubt,
        "problems": comparison.problem_count,
    }
    ok = comparison.problem_count == 0
    what = (
        f"{len(tally.settled):,} settlements confirmed to Locust ({remote:,} through the hub, "
        f"{len(tally.cancelled):,} cancelled; {valid.count:,} standing, medfee "
        f"{valid.medfee_sumamt:,} fen) at {institutions:,} institutions"
    )
    if ok:
        line = (
            f"SSC books check PASSED: {what} equal the gateway's books "
            f"({pages:,} listing pages; 3201 matched {matched:,}/{len(comparison.statements):,}; "
            "0 doubled, 0 missing, 0 in doubt)"
        )
    else:
        line = (
            f"SSC books check FAILED: {comparison.problem_count:,} problem(s); {what}; 3201 "
            f"matched {matched:,}/{len(comparison.statements):,}; {comparison.doubled:,} "
            f"doubled, {comparison.missing:,} missing, {tally.in_doubt:,} in doubt"
        )
    return BooksReport(ok, line, tuple(comparison.problems), figures)
