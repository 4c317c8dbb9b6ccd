"""Units of work of the settlement API: plain functions ``unit(session) -> T`` that
:class:`gateway.db.Database` runs in one transaction each.

Why one unit per settle
    Claiming the Idempotency-Key, running the engine, writing the settlement, the balances,
    the year's totals and the ledger, and storing the response all commit together or not at
    all. So an acknowledged settlement is durable (the commit precedes the answer), a failed
    one leaves nothing behind (not even its key: the client's retry runs afresh), and a
    crash between "money moved" and "response stored" cannot happen.

    The cost: a second request with the same key cannot see the first one's uncommitted key
    row. In-progress is therefore detected beside the row: per worker by an in-memory set of
    running keys (the caller's), and across workers and replicas on PostgreSQL by a
    transaction-scoped advisory lock taken without waiting (``pg_try_advisory_xact_lock``).
    SQLite writers are serialised (one write transaction at a time, across processes), so
    there the second request simply runs after the first and replays its stored response.

    Since the key row is only ever seen committed, it is written once, with the answer, at
    the end (settlement.idempotency.lookup_request / store_response): one primary-key read
    first, one INSERT last.

How a settle stays cheap (it is the hot path; docs in README "Benchmarks")
    The request nonce is claimed inside the same unit (the route is ``nonce_in_handler``),
    so a settle is one transaction; on SQLite it is group-committed with the settles queued
    beside it, on PostgreSQL it runs beside the writer queue. Card, institution, person,
    insurance, account and the year's totals come from ONE indexed read
    (:data:`_COUNTER_READ`, on the driver's cursor); every statement of the unit runs on the
    driver's cursor (gateway.store.DriverStatement, settlement.store.DriverSQL and
    DriverInsert), SQLAlchemy emitting only BEGIN. Fifteen statements on SQLite (each row of
    an executemany counted), each a primary-key or unique-index lookup, an insert or a
    relative update, so the cost does not grow with the ledger.

Pre-settle is one unit too (:func:`counter_unit`): its request nonce and the same counter
read, then the engine outside the transaction (:func:`estimate`), on the same inputs as
settle, locking nothing. Eligibility and the queries run in read units and write nothing.
"""

from __future__ import annotations

import collections
import datetime as dt
import functools
import hashlib
import json
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import and_, bindparam, select
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session

from gateway.routing import NonceClaim
from gateway.settlement_api.models import (
    MAX_STAY_LINES,
    AdmissionOut,
    DetailsRequest,
    DetailsResult,
    DifferenceOut,
    EligibilityOut,
    FeeLinesOut,
    FiguresOut,
    FundPaymentOut,
    InsuranceOut,
    LineIn,
    MismatchesOut,
    MismatchOut,
    PreSettleOut,
    SettlementList,
    SettlementOut,
    TotalsRequest,
    TotalsResult,
)
from gateway.store import DriverStatement, Institution
from issuance.registry import CardRecord, card_usability
from issuance.store import Card
from settlement import reconciliation as recon
from settlement.catalogue import Catalogue, load_catalogue
from settlement.claim import AccountBalances, ClaimLine, InsuredPerson, Visit, YearToDate
from settlement.crossprov.routing import require_local
from settlement.engine import age_on, benefit_category, settle
from settlement.errors import (
    IdempotencyKeyInUse,
    InvalidClaim,
    InvalidPerson,
    InvalidVisit,
    PersonNotFound,
    SettlementNotFound,
    TooManyLines,
)
from settlement.idempotency import lookup_request, store_response
from settlement.policy import HospitalLevel, PolicyBook, VisitType, shipped_policies
from settlement.recording import (
    Holdings,
    WrittenSettlement,
    cancel_settlement,
    load_holdings,
    write_settlement,
    year_to_date_of,
)
from settlement.result import FUND_POOLING, FUND_SUPPLEMENTARY, SettlementResult
from settlement.store import (
    AdmissionFeeLineRow,
    AdmissionRow,
    AdmissionStatus,
    Insurance,
    InsuredPersonRow,
    PersonalAccount,
    ReconciliationRun,
    SettlementRow,
    YearToDateTotals,
)

__all__ = [
    "AdmissionClosed",
    "AdmissionNotFound",
    "AdmissionOtherPerson",
    "Stored",
    "VisitTypeNotAllowed",
    "request_sha256",
]

INSUTYPE_EMPLOYEE: Final = "310"
# The demo catalogue until a real one is configured (settlement/catalogues).
CATALOGUE_ID: Final = "demo"
LIST_PAGE_SIZE: Final = 200
MAX_REPORTED_DIFFERENCES: Final = 1_000
MAX_MISMATCHES_LISTED: Final = 500


class VisitTypeNotAllowed(InvalidClaim):
    code = "VISIT_TYPE_NOT_ALLOWED"


class AdmissionNotFound(InvalidClaim):
    code = "ADMISSION_NOT_FOUND"


class AdmissionClosed(InvalidClaim):
    code = "ADMISSION_CLOSED"


class AdmissionOtherPerson(InvalidClaim):
    code = "ADMISSION_OTHER_PERSON"


@functools.cache
@dataclass(frozen=True, slots=True)
class CardCheck:
    """The card behind a card session, to re-check in the registry before money moves."""

    card_sn: str
    legacy_accepted_until: dt.date | None


def _require_card_usable(session: Session, card: CardCheck, now: dt.datetime) -> None:
    """Re-read the card's registry status inside the money transaction.

    The card session proves the card was genuine and usable when it authenticated, up to
    ``card_session_ttl_s`` ago; a loss report (挂失) since then must block the payment at once.
    One primary-key read.
    """
    found = session.connection().execute(_CARD, {"card_sn": card.card_sn}).one_or_none()
    _judge_card(card, None if found is None else CardRecord(*found), now)


def _judge_card(card: CardCheck, record: CardRecord | None, now: dt.datetime) -> None:
    card_usability(
        record,
        card_sn=card.card_sn,
        today=beijing_today(now),
        legacy_accepted_until=card.legacy_accepted_until,
    )


# CardRegistry.get's read, on the session's connection (Core, no ORM layer: it runs on every
# settle), judged by the registry's own rules (issuance.registry.card_usability).
_CARD: Final = select(
    Card.card_sn,
    Card.generation,
    Card.state,
    Card.holder_id,
    Card.expires_on,
    Card.cert_sm3,
    Card.superseded_by,
).where(Card.card_sn == bindparam("card_sn"))


@functools.cache
def policies() -> PolicyBook:
    # Parsed once per process (it was ~20 % of a settle's CPU when parsed per request): a
    # policy change is a new file, picked up when the gateway restarts, like the catalogue.
    return shipped_policies()


@functools.cache
def catalogue() -> Catalogue:
    return load_catalogue(CATALOGUE_ID)


@dataclass(frozen=True, slots=True)
class Stored:
    """An idempotent answer: the first response, verbatim, and whether this is a replay."""

    status: int
    body: str
    replayed: bool = False


def request_sha256(operation: str, subject: object, body: Any) -> str:
    """Fingerprint of a request for Idempotency-Key comparison: the operation (method and
    path), who it acts for (the cardholder, not the card-session token, which changes when the
    card is read again), and the canonical JSON of the body."""
    canonical = json.dumps(
        {"op": operation, "subject": subject, "body": body},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=str,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def beijing_today(now: dt.datetime) -> dt.date:
    return now.astimezone(recon.BEIJING).date()


def claim_lines(lines: Sequence[LineIn]) -> list[ClaimLine]:
    """The request's lines as engine lines; unknown catalogue codes are refused here, before
    any unit of work starts (the engine would refuse them too, later)."""
    known = catalogue()
    for line in lines:
        known.item(line.code)
    return [ClaimLine(line.code, line.quantity, line.unit_price_fen) for line in lines]


# --- shared reads -----------------------------------------------------------------------------


def _person(session: Session, holder_id: int) -> InsuredPersonRow:
    query = select(InsuredPersonRow).where(InsuredPersonRow.holder_id == holder_id)
    person = session.scalar(query)
    if person is None:
        raise PersonNotFound("no insured person is linked to this cardholder")
    return person


def _insurance(session: Session, person_id: int, day: dt.date) -> Insurance:
    insurance = session.scalar(
        select(Insurance).where(
            Insurance.person_id == person_id, Insurance.insutype == INSUTYPE_EMPLOYEE
        )
    )
    if insurance is None or insurance.valid_from > day:
        raise InvalidPerson("no employee insurance (310) on this date")
    if insurance.valid_to is not None and insurance.valid_to < day:
        raise InvalidPerson("the employee insurance (310) ended before this date")
    return insurance


@dataclass(frozen=True, slots=True)
class _HolderFacts:
    """The cardholder's person, employee insurance, account and year's totals, read at once."""

    person_id: int
    psn_no: str
    person: InsuredPerson
    balances: AccountBalances
    year_to_date: YearToDate
    totals_exist: bool


_HOLDER_FACTS: Final = (
    select(
        InsuredPersonRow.id,
        InsuredPersonRow.psn_no,
        InsuredPersonRow.retired,
        InsuredPersonRow.birth_date,
        Insurance.valid_from,  # NULL: no employee insurance
        Insurance.valid_to,
        Insurance.insuplc_admdvs,
        PersonalAccount.current_year_fen,  # NULL: no account
        PersonalAccount.past_years_fen,
        YearToDateTotals.self_pay_band_consumed_fen,  # NULL: nothing settled this year yet
        YearToDateTotals.deductible_consumed_fen,
        YearToDateTotals.pooling_fund_paid_fen,
    )
    .outerjoin(
        Insurance,
        and_(Insurance.person_id == InsuredPersonRow.id, Insurance.insutype == INSUTYPE_EMPLOYEE),
    )
    .outerjoin(PersonalAccount, PersonalAccount.person_id == InsuredPersonRow.id)
    .outerjoin(
        YearToDateTotals,
        and_(
            YearToDateTotals.person_id == InsuredPersonRow.id,
            YearToDateTotals.year == bindparam("year"),
        ),
    )
    .where(InsuredPersonRow.holder_id == bindparam("holder_id"))
)


def _holder_facts(session: Session, holder_id: int, day: dt.date) -> _HolderFacts:
    """One indexed read (holder_id, then primary keys) instead of four; the same checks, in
    the same order, as reading person, insurance and account one by one."""
    parameters = {"holder_id": holder_id, "year": day.year}
    return _facts_of(session.connection().execute(_HOLDER_FACTS, parameters).one_or_none(), day)


def _facts_of(row: Any, day: dt.date) -> _HolderFacts:
    """Judge a row of :data:`_HOLDER_FACTS`' columns (None or ``id`` NULL: no person)."""
    if row is None or row.id is None:
        raise PersonNotFound("no insured person is linked to this cardholder")
    if row.valid_from is None or row.valid_from > day:
        raise InvalidPerson("no employee insurance (310) on this date")
    if row.valid_to is not None and row.valid_to < day:
        raise InvalidPerson("the employee insurance (310) ended before this date")
    require_local(row.psn_no, row.insuplc_admdvs)  # else the hub settles it (gateway.crossprov)
    if row.current_year_fen is None:
        raise PersonNotFound("the insured person has no personal account")
    return _HolderFacts(
        person_id=row.id,
        psn_no=row.psn_no,
        person=InsuredPerson(retired=row.retired, birth_date=row.birth_date),
        balances=AccountBalances(row.current_year_fen, row.past_years_fen),
        year_to_date=year_to_date_of(row if row.self_pay_band_consumed_fen is not None else None),
        totals_exist=row.self_pay_band_consumed_fen is not None,
    )


def _holdings(session: Session, facts: _HolderFacts, year: int) -> Holdings:
    """What the settlement may spend. SQLite runs one write transaction at a time, so what
    :func:`_holder_facts` read inside it stands; PostgreSQL re-reads account and totals under
    row locks (settlement.recording.load_holdings), so racing settlements of one person queue
    on the account row instead of spending the same balance twice."""
    if session.get_bind().dialect.name == "postgresql":
        return load_holdings(session, psn_no=facts.psn_no, year=year)
    return Holdings(
        person_id=facts.person_id,
        psn_no=facts.psn_no,
        person=facts.person,
        balances=facts.balances,
        year_to_date=facts.year_to_date,
        totals_exist=facts.totals_exist,
    )


# Everything settle and pre-settle read before the engine runs, in ONE statement: the
# terminal's institution (always one row) left-joined with the card, the cardholder's person,
# employee insurance, account and the year's totals, each by primary key or unique index.
# On the driver's cursor (gateway.store.DriverStatement: a few µs instead of SQLAlchemy's
# per-statement work, inside the write lock on SQLite); the values are converted by each
# column type's own result processor, so stored forms (SQLite's date text, enum values) stay
# the tables' business.
_COUNTER_COLUMNS: Final = (
    Institution.__table__.c.kind,
    Institution.__table__.c.level,
    Card.__table__.c.card_sn,  # the CardRecord fields, in order
    Card.__table__.c.generation,
    Card.__table__.c.state,
    Card.__table__.c.holder_id,
    Card.__table__.c.expires_on,
    Card.__table__.c.cert_sm3,
    Card.__table__.c.superseded_by,
    InsuredPersonRow.__table__.c.id,  # _HOLDER_FACTS' columns, in order
    InsuredPersonRow.__table__.c.psn_no,
    InsuredPersonRow.__table__.c.retired,
    InsuredPersonRow.__table__.c.birth_date,
    Insurance.__table__.c.valid_from,
    Insurance.__table__.c.valid_to,
    Insurance.__table__.c.insuplc_admdvs,
    PersonalAccount.__table__.c.current_year_fen,
    PersonalAccount.__table__.c.past_years_fen,
    YearToDateTotals.__table__.c.self_pay_band_consumed_fen,
    YearToDateTotals.__table__.c.deductible_consumed_fen,
    YearToDateTotals.__table__.c.pooling_fund_paid_fen,
)
_CounterRow = collections.namedtuple(
    "_CounterRow",
    ["kind", "level", "card_sn", "generation", "state", "card_holder_id", "expires_on",
     "cert_sm3", "superseded_by", "id", "psn_no", "retired", "birth_date", "valid_from",
     "valid_to", "insuplc_admdvs", "current_year_fen", "past_years_fen",
     "self_pay_band_consumed_fen", "deductible_consumed_fen", "pooling_fund_paid_fen"],
)  # fmt: skip
_COUNTER_READ: Final = DriverStatement(
    "SELECT i.kind, i.level, c.card_sn, c.generation, c.state, c.holder_id, c.expires_on, "
    "c.cert_sm3, c.superseded_by, p.id, p.psn_no, p.retired, p.birth_date, "
    "n.valid_from, n.valid_to, n.insuplc_admdvs, a.current_year_fen, a.past_years_fen, "
    "y.self_pay_band_consumed_fen, y.deductible_consumed_fen, y.pooling_fund_paid_fen "
    "FROM institutions AS i "
    "LEFT JOIN cards AS c ON c.card_sn = ? "
    "LEFT JOIN insured_persons AS p ON p.holder_id = ? "
    "LEFT JOIN insurances AS n ON n.person_id = p.id AND n.insutype = '310' "
    "LEFT JOIN personal_accounts AS a ON a.person_id = p.id "
    "LEFT JOIN year_to_date_totals AS y ON y.person_id = p.id AND y.year = ? "
    "WHERE i.code = ?"
)
_CARD_COLUMNS: Final = slice(2, 9)  # the CardRecord fields, in order
assert INSUTYPE_EMPLOYEE == "310"  # written into the SQL above

_Processor = Callable[[Any], Any] | None
_counter_processors: dict[str, tuple[_Processor, ...]] = {}


def _processors_for(dialect: Dialect) -> tuple[_Processor, ...]:
    found = _counter_processors.get(dialect.name)
    if found is None:
        found = tuple(
            column.type.dialect_impl(dialect).result_processor(dialect, None)
            for column in _COUNTER_COLUMNS
        )
        _counter_processors[dialect.name] = found
    return found


def _at_the_counter(
    session: Session,
    *,
    card: CardCheck,
    holder_id: int,
    fixmedins_code: str,
    visit_type: str,
    visit_date: dt.date,
    now: dt.datetime,
) -> tuple[Visit, _HolderFacts]:
    """Settle's and pre-settle's checks on one read (:data:`_COUNTER_READ`), in the order
    of the separate reads they replace: card usable, visit allowed here, person insured."""
    raw = _COUNTER_READ.execute(
        session, (card.card_sn, holder_id, visit_date.year, fixmedins_code)
    ).fetchone()
    assert raw is not None  # the terminal's institution exists (foreign key)
    processors = _processors_for(session.get_bind().dialect)
    row = _CounterRow(
        *(
            value if process is None or value is None else process(value)
            for process, value in zip(processors, raw, strict=True)
        )
    )
    found = row[_CARD_COLUMNS]
    _judge_card(card, None if found[0] is None else CardRecord(*found), now)
    visit = _visit_at(row.kind, row.level, visit_type, visit_date, beijing_today(now))
    return visit, _facts_of(row, visit_date)


_INSTITUTION: Final = select(Institution.kind, Institution.level).where(
    Institution.code == bindparam("code")
)


def _visit(
    session: Session,
    fixmedins_code: str,
    visit_type: str,
    visit_date: dt.date,
    today: dt.date,
    *,
    via_admission: bool = False,
) -> Visit:
    """The visit, if this institution may settle it (:func:`_visit_at`)."""
    # The terminal's institution: it exists (foreign key), so exactly one row.
    institution = session.connection().execute(_INSTITUTION, {"code": fixmedins_code}).one()
    return _visit_at(
        institution.kind,
        institution.level,
        visit_type,
        visit_date,
        today,
        via_admission=via_admission,
    )


def _visit_at(
    kind: str,
    level: int | None,
    visit_type: str,
    visit_date: dt.date,
    today: dt.date,
    *,
    via_admission: bool = False,
) -> Visit:
    """The visit, if an institution of this kind may settle it: pharmacy purchases at
    pharmacies only, outpatient and emergency at hospitals, inpatient only through an
    admission."""
    if kind == "pharmacy":
        allowed = {"pharmacy"}
    elif kind == "hospital":
        allowed = {"inpatient"} if via_admission else {"outpatient", "emergency"}
    else:
        # Issuing institutions (banks, employers, ...) settle nothing. The route guard
        # (Route.institution_kinds) refuses them first; the rule stays true here as well rather
        # than reading every non-pharmacy as a hospital.
        raise VisitTypeNotAllowed(f"a {kind} settles no visits")
    if visit_type not in allowed:
        raise VisitTypeNotAllowed(
            f"a {kind} settles {', '.join(sorted(allowed))} here, not {visit_type}"
        )
    if visit_date > today:
        raise InvalidVisit("the visit date is in the future")
    # A pharmacy has no hospital grade; the pharmacy rules pay no fund share, so the level
    # only fills the record's required column.
    return Visit(
        visit_date=visit_date,
        visit_type=VisitType(visit_type),
        hospital_level=HospitalLevel(level or 1),
    )


def _fund_rows(hifp_pay: int, hifob_pay: int) -> list[FundPaymentOut]:
    return [
        FundPaymentOut(fund_pay_type=code, fund_name=name, fund_payamt=amount_fen)
        for (code, name), amount_fen in ((FUND_POOLING, hifp_pay), (FUND_SUPPLEMENTARY, hifob_pay))
        if amount_fen > 0
    ]


def settlement_view(
    row: SettlementRow | WrittenSettlement, psn_no: str, explanation: Sequence[str] | None = None
) -> SettlementOut:
    return SettlementOut(
        setl_id=row.setl_id,
        mdtrt_id=row.mdtrt_id,
        psn_no=psn_no,
        fixmedins_code=row.fixmedins_code,
        status=row.status.value,
        visit_type=row.visit_type,
        visit_date=row.visit_date,
        setl_time=recon.as_utc(row.setl_time),
        policy_id=row.policy_id,
        medfee_sumamt=row.medfee_sumamt,
        fulamt_ownpay_amt=row.fulamt_ownpay_amt,
        preselfpay_amt=row.preselfpay_amt,
        inscp_scp_amt=row.inscp_scp_amt,
        act_pay_dedc=row.act_pay_dedc,
        hifp_pay=row.hifp_pay,
        pool_prop_selfpay=row.pool_prop_selfpay,
        hifob_pay=row.hifob_pay,
        fund_pay_sumamt=row.fund_pay_sumamt,
        psn_part_amt=row.acct_pay + row.psn_cash_pay,
        acct_pay=row.acct_pay,
        acct_pay_current_year_fen=row.acct_pay_current_year_fen,
        acct_pay_past_years_fen=row.acct_pay_past_years_fen,
        psn_cash_pay=row.psn_cash_pay,
        balc=row.balc,
        setldetail=_fund_rows(row.hifp_pay, row.hifob_pay),
        cancelled_at=None if row.cancelled_at is None else recon.as_utc(row.cancelled_at),
        cancel_reason=row.cancel_reason,
        explanation=None if explanation is None else list(explanation),
    )


# --- idempotency ------------------------------------------------------------------------------


def advisory_lock_id(client_id: str, idempotency_key: str) -> int:
    """The PostgreSQL advisory lock (one signed 64-bit key space) guarding a running key."""
    digest = hashlib.sha256(f"idempotency\n{client_id}\n{idempotency_key}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@dataclass(frozen=True, slots=True)
class KeyedRequest:
    client_id: str  # the terminal's institution: keys are scoped to it
    idempotency_key: str
    request_hash: str
    now: dt.datetime


def _claim_key(session: Session, keyed: KeyedRequest) -> Stored | None:
    """Make this unit the key's only runner; a Stored answer if the key was already done.

    Nothing is written yet: the key row is inserted with the answer by :func:`_finish`, in
    this same transaction (settlement.idempotency, "one transaction instead").
    """
    if session.get_bind().dialect.name == "postgresql":
        # Another worker or replica holding the key in an uncommitted transaction: answer 409
        # now instead of waiting on its row (see the module docstring).
        lock_id = advisory_lock_id(keyed.client_id, keyed.idempotency_key)
        if not _TRY_ADVISORY_LOCK.execute(session, (lock_id,)).fetchone()[0]:
            raise IdempotencyKeyInUse("the first request with this key is still running")
    outcome = lookup_request(
        session,
        client_id=keyed.client_id,
        idempotency_key=keyed.idempotency_key,
        request_sha256=keyed.request_hash,
        now=keyed.now,
    )
    if outcome is None:
        return None
    assert outcome.response_status is not None
    assert outcome.response_body is not None
    return Stored(outcome.response_status, outcome.response_body, replayed=True)


# PostgreSQL only (the caller checks the dialect); on the driver's cursor like the rest.
_TRY_ADVISORY_LOCK: Final = DriverStatement("SELECT pg_try_advisory_xact_lock(?)")


def _finish(session: Session, keyed: KeyedRequest, status: int, body: str) -> Stored:
    store_response(
        session,
        client_id=keyed.client_id,
        idempotency_key=keyed.idempotency_key,
        request_sha256=keyed.request_hash,
        now=keyed.now,
        response_status=status,
        response_body=body,
    )
    return Stored(status, body)


def _new_id(prefix: str, now: dt.datetime) -> str:
    return f"{prefix}{beijing_today(now):%Y%m%d}{secrets.token_hex(8)}"


# --- units: eligibility and pre-settle (read only) --------------------------------------------


def eligibility_unit(
    session: Session, *, card: CardCheck, holder_id: int, now: dt.datetime
) -> EligibilityOut:
    _require_card_usable(session, card, now)
    today = beijing_today(now)
    person = _person(session, holder_id)
    insurance = _insurance(session, person.id, today)
    require_local(person.psn_no, insurance.insuplc_admdvs)
    account = session.get(PersonalAccount, person.id)
    if account is None:
        raise PersonNotFound("the insured person has no personal account")
    totals = session.get(YearToDateTotals, (person.id, today.year))
    category = benefit_category(
        InsuredPerson(retired=person.retired, birth_date=person.birth_date),
        today,
        policies().for_date(today),
    )
    return EligibilityOut(
        psn_no=person.psn_no,
        age_years=age_on(person.birth_date, today),
        retired=person.retired,
        benefit_category=category.value,
        insuinfo=[
            InsuranceOut(
                insutype=insurance.insutype,
                insuplc_admdvs=insurance.insuplc_admdvs,
                psn_type=insurance.psn_type,
                balc=account.current_year_fen + account.past_years_fen,
                current_year_balance_fen=account.current_year_fen,
                past_years_balance_fen=account.past_years_fen,
            )
        ],
        self_pay_band_consumed_fen=totals.self_pay_band_consumed_fen if totals else 0,
        deductible_consumed_fen=totals.deductible_consumed_fen if totals else 0,
        pooling_fund_paid_fen=totals.pooling_fund_paid_fen if totals else 0,
    )


@dataclass(frozen=True, slots=True)
class CounterRead:
    """What pre-settle reads in its one unit (:func:`counter_unit`); :func:`estimate` prices it."""

    visit: Visit
    facts: _HolderFacts


def counter_unit(
    session: Session,
    *,
    nonce: NonceClaim | None,
    card: CardCheck,
    holder_id: int,
    fixmedins_code: str,
    visit_type: str,
    visit_date: dt.date,
    now: dt.datetime,
) -> CounterRead:
    """Pre-settle's one unit: the request nonce (when the route hands it over), then the
    counter read (:func:`_at_the_counter`). The engine runs after it, outside the unit
    (:func:`estimate`): pre-settle writes nothing but its nonce, so only the read needs the
    transaction, and on SQLite the unit then holds the one writer for two statements."""
    if nonce is not None:
        nonce.claim(session)  # first: a replayed request stops here
    visit, facts = _at_the_counter(
        session,
        card=card,
        holder_id=holder_id,
        fixmedins_code=fixmedins_code,
        visit_type=visit_type,
        visit_date=visit_date,
        now=now,
    )
    return CounterRead(visit, facts)


def estimate(read: CounterRead, lines: Sequence[ClaimLine]) -> PreSettleOut:
    """The engine on what :func:`counter_unit` read: the split a settle would make now."""
    visit_date = read.visit.visit_date
    result = settle(
        lines=lines,
        person=read.facts.person,
        visit=read.visit,
        policy=policies().for_date(visit_date),
        catalogue=catalogue(),
        year_to_date=read.facts.year_to_date,
        balances=read.facts.balances,
    )
    return _estimate(read.facts.psn_no, result)


def _estimate(psn_no: str, result: SettlementResult) -> PreSettleOut:
    return PreSettleOut(
        psn_no=psn_no,
        policy_id=result.policy_id,
        medfee_sumamt=result.medfee_sumamt,
        fulamt_ownpay_amt=result.fulamt_ownpay_amt,
        preselfpay_amt=result.preselfpay_amt,
        inscp_scp_amt=result.inscp_scp_amt,
        act_pay_dedc=result.act_pay_dedc,
        hifp_pay=result.hifp_pay,
        pool_prop_selfpay=result.pool_prop_selfpay,
        hifob_pay=result.hifob_pay,
        fund_pay_sumamt=result.fund_pay_sumamt,
        psn_part_amt=result.psn_part_amt,
        acct_pay=result.acct_pay,
        psn_cash_pay=result.psn_cash_pay,
        balc=result.balc,
        setldetail=_fund_rows(result.hifp_pay, result.hifob_pay),
        explanation=list(result.explanation),
    )


# --- units: settle, cancel (one transaction each, idempotent) ---------------------------------


def _record(
    session: Session,
    *,
    facts: _HolderFacts,
    fixmedins_code: str,
    mdtrt_id: str,
    visit: Visit,
    lines: Sequence[ClaimLine],
    now: dt.datetime,
) -> tuple[WrittenSettlement, SettlementResult]:
    return write_settlement(
        session,
        holdings=_holdings(session, facts, visit.visit_date.year),
        policy=policies().for_date(visit.visit_date),
        catalogue=catalogue(),
        setl_id=_new_id("S", now),
        mdtrt_id=mdtrt_id,
        fixmedins_code=fixmedins_code,
        visit=visit,
        lines=lines,
        now=now,
    )


def settle_unit(
    session: Session,
    *,
    keyed: KeyedRequest,
    card: CardCheck,
    holder_id: int,
    fixmedins_code: str,
    visit_type: str,
    visit_date: dt.date,
    lines: Sequence[ClaimLine],
    nonce: NonceClaim | None = None,
) -> Stored:
    """One settlement in one unit: the request nonce (when the route hands it over), the key,
    the registry re-check, the engine, every write and the stored answer (module docstring:
    how it stays cheap)."""
    if nonce is not None:
        nonce.claim(session)  # first: a replayed request stops here and stores nothing
    now = keyed.now
    stored = _claim_key(session, keyed)
    if stored is not None:
        return stored
    visit, facts = _at_the_counter(
        session,
        card=card,
        holder_id=holder_id,
        fixmedins_code=fixmedins_code,
        visit_type=visit_type,
        visit_date=visit_date,
        now=now,
    )
    row, result = _record(
        session,
        facts=facts,
        fixmedins_code=fixmedins_code,
        mdtrt_id=_new_id("M", now),
        visit=visit,
        lines=lines,
        now=now,
    )
    body = settlement_view(row, facts.psn_no, result.explanation).model_dump_json()
    return _finish(session, keyed, 201, body)


def cancel_unit(
    session: Session, *, keyed: KeyedRequest, fixmedins_code: str, setl_id: str, reason: str
) -> Stored:
    stored = _claim_key(session, keyed)
    if stored is not None:
        return stored
    found = session.execute(
        select(SettlementRow, InsuredPersonRow.psn_no)
        .join(InsuredPersonRow, InsuredPersonRow.id == SettlementRow.person_id)
        .where(SettlementRow.setl_id == setl_id, SettlementRow.fixmedins_code == fixmedins_code)
    ).one_or_none()
    if found is None:
        # Another institution's settlement answers exactly like a missing one: nothing leaks.
        raise SettlementNotFound("this institution has no settlement with this setl_id")
    row, psn_no = found
    cancel_settlement(session, setl_id=setl_id, now=keyed.now)
    row.cancel_reason = reason
    session.flush()
    return _finish(session, keyed, 200, settlement_view(row, psn_no).model_dump_json())


# --- units: queries ---------------------------------------------------------------------------


def get_settlement_unit(session: Session, *, fixmedins_code: str, setl_id: str) -> SettlementOut:
    found = session.execute(
        select(SettlementRow, InsuredPersonRow.psn_no)
        .join(InsuredPersonRow, InsuredPersonRow.id == SettlementRow.person_id)
        .where(SettlementRow.setl_id == setl_id, SettlementRow.fixmedins_code == fixmedins_code)
    ).one_or_none()
    if found is None:
        raise SettlementNotFound("this institution has no settlement with this setl_id")
    row, psn_no = found
    return settlement_view(row, psn_no)


def list_settlements_unit(
    session: Session, *, fixmedins_code: str, day: dt.date, after_id: int
) -> SettlementList:
    start, end = recon.day_bounds_utc(day)
    rows = session.execute(
        select(SettlementRow, InsuredPersonRow.psn_no)
        .join(InsuredPersonRow, InsuredPersonRow.id == SettlementRow.person_id)
        .where(
            SettlementRow.fixmedins_code == fixmedins_code,
            SettlementRow.setl_time >= start,
            SettlementRow.setl_time < end,
            SettlementRow.id > after_id,
        )
        .order_by(SettlementRow.id)
        .limit(LIST_PAGE_SIZE + 1)
    ).all()
    page = rows[:LIST_PAGE_SIZE]
    more = len(rows) > LIST_PAGE_SIZE
    return SettlementList(
        date=day,
        items=[settlement_view(row, psn_no) for row, psn_no in page],
        next_cursor=str(page[-1][0].id) if more else None,
    )


# --- units: inpatient -------------------------------------------------------------------------


def _admission_view(row: AdmissionRow) -> AdmissionOut:
    return AdmissionOut(
        admission_id=row.admission_id,
        admission_date=row.admission_date,
        status=row.status.value,
        line_count=row.line_count,
        setl_id=row.setl_id,
    )


def admit_unit(
    session: Session,
    *,
    holder_id: int,
    fixmedins_code: str,
    admission_date: dt.date,
    now: dt.datetime,
) -> AdmissionOut:
    _visit(
        session, fixmedins_code, "inpatient", admission_date, beijing_today(now), via_admission=True
    )
    person = _person(session, holder_id)
    _insurance(session, person.id, admission_date)
    row = AdmissionRow(
        admission_id=_new_id("A", now),
        person_id=person.id,
        fixmedins_code=fixmedins_code,
        admission_date=admission_date,
        status=AdmissionStatus.OPEN,
        line_count=0,
        created_at=now,
    )
    session.add(row)
    session.flush()
    return _admission_view(row)


def _open_admission(session: Session, fixmedins_code: str, admission_id: str) -> AdmissionRow:
    row = session.scalar(
        select(AdmissionRow)
        .where(
            AdmissionRow.admission_id == admission_id,
            AdmissionRow.fixmedins_code == fixmedins_code,
        )
        .with_for_update()
    )
    if row is None:
        raise AdmissionNotFound("this hospital has no admission with this admission_id")
    if row.status is not AdmissionStatus.OPEN:
        raise AdmissionClosed("the stay was already settled at discharge")
    return row


def fee_lines_unit(
    session: Session, *, fixmedins_code: str, admission_id: str, lines: Sequence[ClaimLine]
) -> tuple[str, int, int]:
    row = _open_admission(session, fixmedins_code, admission_id)
    if row.line_count + len(lines) > MAX_STAY_LINES:
        raise TooManyLines(f"a stay holds at most {MAX_STAY_LINES} fee lines")
    session.add_all(
        AdmissionFeeLineRow(
            admission_id=row.id,
            line_no=row.line_count + number,
            catalogue_code=line.catalogue_code,
            quantity=line.quantity,
            unit_price_fen=line.unit_price_fen,
        )
        for number, line in enumerate(lines, start=1)
    )
    row.line_count += len(lines)
    session.flush()
    return row.admission_id, len(lines), row.line_count


def keyed_fee_lines_unit(
    session: Session,
    *,
    keyed: KeyedRequest,
    fixmedins_code: str,
    admission_id: str,
    lines: Sequence[ClaimLine],
) -> Stored:
    """Fee lines under an Idempotency-Key: a retried upload adds its lines once."""
    stored = _claim_key(session, keyed)
    if stored is not None:
        return stored
    admission, accepted, total = fee_lines_unit(
        session, fixmedins_code=fixmedins_code, admission_id=admission_id, lines=lines
    )
    body = FeeLinesOut(admission_id=admission, accepted=accepted, line_count=total)
    return _finish(session, keyed, 200, body.model_dump_json())


def discharge_unit(
    session: Session,
    *,
    keyed: KeyedRequest,
    card: CardCheck,
    holder_id: int,
    fixmedins_code: str,
    admission_id: str,
    discharge_date: dt.date,
) -> Stored:
    stored = _claim_key(session, keyed)
    if stored is not None:
        return stored
    _require_card_usable(session, card, keyed.now)
    admission = _open_admission(session, fixmedins_code, admission_id)
    person = _person(session, holder_id)
    if admission.person_id != person.id:
        raise AdmissionOtherPerson("the card session's holder is not this admission's patient")
    if discharge_date < admission.admission_date:
        raise InvalidVisit("the discharge date is before the admission date")
    if admission.line_count == 0:
        raise InvalidClaim("no fee lines were uploaded for this stay")
    visit = _visit(
        session,
        fixmedins_code,
        "inpatient",
        discharge_date,
        beijing_today(keyed.now),
        via_admission=True,
    )
    facts = _holder_facts(session, holder_id, discharge_date)
    fee_rows = session.scalars(
        select(AdmissionFeeLineRow)
        .where(AdmissionFeeLineRow.admission_id == admission.id)
        .order_by(AdmissionFeeLineRow.line_no)
    ).all()
    lines = [ClaimLine(f.catalogue_code, f.quantity, f.unit_price_fen) for f in fee_rows]
    row, result = _record(
        session,
        facts=facts,
        fixmedins_code=fixmedins_code,
        mdtrt_id=admission.admission_id,
        visit=visit,
        lines=lines,
        now=keyed.now,
    )
    admission.status = AdmissionStatus.DISCHARGED
    admission.setl_id = row.setl_id
    session.flush()
    body = settlement_view(row, person.psn_no, result.explanation).model_dump_json()
    return _finish(session, keyed, 201, body)


# --- units: reconciliation --------------------------------------------------------------------


def _figures(figures: recon.Figures | None) -> FiguresOut | None:
    return None if figures is None else FiguresOut(**figures.as_dict())


def _store_run(
    session: Session,
    *,
    fixmedins_code: str,
    day: dt.date,
    clr_type: str,
    kind: str,
    matched: bool,
    figures: str,
    now: dt.datetime,
) -> None:
    session.add(
        ReconciliationRun(
            fixmedins_code=fixmedins_code,
            stmt_date=day,
            clr_type=clr_type,
            kind=kind,
            matched=matched,
            figures=figures,
            created_at=now,
        )
    )
    session.flush()


def totals_unit(
    session: Session, *, fixmedins_code: str, body: TotalsRequest, now: dt.datetime
) -> TotalsResult:
    ours = recon.gateway_totals(
        session, fixmedins_code=fixmedins_code, day=body.stmt_date, clr_type=body.clr_type
    )
    theirs = recon.Figures(
        body.fixmedins_setl_cnt,
        body.medfee_sumamt,
        body.fund_pay_sumamt,
        body.acct_pay,
        body.psn_cash_pay,
    )
    matched = ours == theirs
    result = TotalsResult(
        stmt_rslt="0" if matched else "1",
        stmt_rslt_dscr="对账一致 totals match" if matched else "对账不一致 totals differ",
        clr_type=body.clr_type,
        stmt_date=body.stmt_date,
        institution=FiguresOut(**theirs.as_dict()),
        gateway=FiguresOut(**ours.as_dict()),
    )
    _store_run(
        session,
        fixmedins_code=fixmedins_code,
        day=body.stmt_date,
        clr_type=body.clr_type,
        kind="totals",
        matched=matched,
        figures=result.model_dump_json(),
        now=now,
    )
    return result


def details_unit(
    session: Session, *, fixmedins_code: str, body: DetailsRequest, now: dt.datetime
) -> DetailsResult:
    theirs: dict[str, recon.Figures] = {}
    for row in body.details:
        # A setl_id listed twice is itself a difference: keep the last, count it below.
        theirs[row.setl_id] = recon.Figures(
            1, row.medfee_sumamt, row.fund_pay_sumamt, row.acct_pay, row.psn_cash_pay
        )
    ours = recon.gateway_details(
        session,
        fixmedins_code=fixmedins_code,
        day=body.stmt_date,
        clr_type=body.clr_type,
        # One more than the institution may send: a day larger than that cannot match anyway.
        limit=len(body.details) + MAX_REPORTED_DIFFERENCES,
    )
    differences = recon.compare_details(theirs, ours)
    matched = not differences and len(theirs) == len(body.details)
    result = DetailsResult(
        stmt_rslt="0" if matched else "1",
        stmt_rslt_dscr="明细一致 details match" if matched else "明细不一致 details differ",
        clr_type=body.clr_type,
        stmt_date=body.stmt_date,
        difference_count=len(differences),
        differences=[
            DifferenceOut(
                setl_id=difference.setl_id,
                reason=difference.reason,  # type: ignore[arg-type]
                institution=_figures(difference.institution),
                gateway=_figures(difference.gateway),
            )
            for difference in differences[:MAX_REPORTED_DIFFERENCES]
        ],
    )
    _store_run(
        session,
        fixmedins_code=fixmedins_code,
        day=body.stmt_date,
        clr_type=body.clr_type,
        kind="details",
        matched=matched,
        figures=result.model_dump_json(),
        now=now,
    )
    return result


def mismatches_unit(session: Session, *, day: dt.date, fixmedins_code: str | None) -> MismatchesOut:
    """A day's mismatching runs: of one institution, or (``None``) of all of them."""
    query = (
        select(ReconciliationRun)
        .where(ReconciliationRun.stmt_date == day, ReconciliationRun.matched.is_(False))
        .order_by(ReconciliationRun.id)
        .limit(MAX_MISMATCHES_LISTED)
    )
    if fixmedins_code is not None:
        query = query.where(ReconciliationRun.fixmedins_code == fixmedins_code)
    return MismatchesOut(
        date=day,
        scope="all" if fixmedins_code is None else "institution",
        items=[
            MismatchOut(
                fixmedins_code=run.fixmedins_code,
                clr_type=run.clr_type,
                kind=run.kind,  # type: ignore[arg-type]
                checked_at=recon.as_utc(run.created_at),
                figures=run.figures,
            )
            for run in session.scalars(query)
        ],
    )
