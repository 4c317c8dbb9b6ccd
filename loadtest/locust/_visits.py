"""The visits a terminal makes, one function per kind of :data:`loadtest.locust._mix.KINDS`.

Each runs a whole visit at the counter as a HIS or POS would: read the card (challenge, the
card's proof, the card session), look the person up (eligibility), estimate (pre-settle),
settle with a fresh Idempotency-Key. What it sees confirmed goes into the process's tally
(:mod:`loadtest.locust._run`) for the books check.

Money requests (settle, discharge, cancel) are sent by :func:`send_money`: written down
before they are sent, sent again with the same Idempotency-Key when the answer says "not
now" (no answer, a 5xx, ``IDEMPOTENCY_KEY_IN_USE``, ``RATE_LIMITED``, the hub's 503s) at most
:data:`MONEY_ATTEMPTS` times, crossed off at a final answer. A refusal (4xx) is final and
moved no money (the gateway's contract: a request that fails leaves nothing behind).

Request names in Locust's report are the route templates, with the kind in brackets where the
same route serves several (``/v1/settlements [pharmacy]``, ``[cross-province]``,
``[legacy]``, ``[replay]``, ``[expect CARD_LOST]``), so each has its own latency line.
"""

from __future__ import annotations

import datetime as dt
import random
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from loadtest.locust import _mix as mix
from loadtest.locust._books import BEIJING, Seen
from loadtest.locust._cards import Card
from loadtest.locust._http import Answer, SessionLike, SignedClient
from loadtest.locust._run import MoneyCall, RunState
from loadtest.locust._world import RemotePatient, Terminal

__all__ = ["VISITS", "Visitor", "next_visit", "resolve_pending"]

MONEY_ATTEMPTS: Final = 4
BACKOFF_S: Final = 0.25
MAX_BACKOFF_S: Final = 2.0
#: Settlements a terminal remembers for a later cancel.
RECENT: Final = 20
CANCEL_REASON: Final = "load test: settled by mistake, cancelled at the counter"

CHALLENGE: Final = "/v1/card-auth/challenge"
RESPONSE: Final = "/v1/card-auth/response"
ELIGIBILITY: Final = "/v1/eligibility"
PRE_SETTLE: Final = "/v1/settlements/pre-settle"
SETTLE: Final = "/v1/settlements"
_REMOTE_ROUTES: Final = frozenset({"cross_province", "in_province_remote"})

# (code, unit price in fen, most units): the demo catalogue (settlement/catalogues/demo.toml).
_CONSULTATION: Final = ("DEMO-A-002", 2_500, 1)
_OUTPATIENT_EXTRAS: Final = (
    ("DEMO-A-003", 3_200, 1),  # full blood count
    ("DEMO-A-001", 1_850, 3),  # amoxicillin
    ("DEMO-B-001", 4_600, 2),  # atorvastatin
    ("DEMO-B-002", 28_000, 1),  # CT scan
)
_PHARMACY_ITEMS: Final = (
    ("DEMO-A-001", 1_850, 4),
    ("DEMO-B-001", 4_600, 3),
    ("DEMO-C-001", 9_900, 2),  # dietary supplement: class C, paid in full by the patient
)
_STAY_ITEMS: Final = (
    ("DEMO-A-003", 3_200, 3),
    ("DEMO-B-002", 28_000, 2),
    ("DEMO-B-003", 1_850_000, 1),  # artificial hip joint
    ("DEMO-C-002", 60_000, 3),  # premium ward day
)
_BED_DAY: Final = ("DEMO-A-004", 4_000)


def named(path: str, *tags: str) -> str:
    """A request's name in the report: the route template, then its tags.

    >>> named("/v1/settlements", "pharmacy", "legacy"), named("/v1/eligibility")
    ('/v1/settlements [pharmacy, legacy]', '/v1/eligibility')
    >>> named(named("/v1/settlements", "pharmacy"), "resolve")
    '/v1/settlements [pharmacy, resolve]'
    """
    if not tags:
        return path
    if path.endswith("]"):
        return f"{path[:-1]}, {', '.join(tags)}]"
    return f"{path} [{', '.join(tags)}]"


def today() -> dt.date:
    """The visit date: today in Beijing, by this machine's clock (a terminal's)."""
    return dt.datetime.now(BEIJING).date()


def _line(rng: random.Random, item: tuple[str, int, int]) -> dict[str, Any]:
    code, price_fen, most = item
    return {"code": code, "quantity": rng.randint(1, most), "unit_price_fen": price_fen}


def visit_lines(rng: random.Random, visit_type: str) -> list[dict[str, Any]]:
    """Fee lines of one outpatient, emergency or pharmacy visit."""
    if visit_type == "pharmacy":
        return [_line(rng, item) for item in rng.sample(_PHARMACY_ITEMS, rng.randint(1, 3))]
    extras = rng.sample(_OUTPATIENT_EXTRAS, rng.randint(0, 2))
    return [_line(rng, _CONSULTATION), *(_line(rng, item) for item in extras)]


@dataclass
class Visitor:
    """A user's side of the visits: its terminal's client, the process's run, its dice."""

    http: SignedClient
    run: RunState
    rng: random.Random
    row: Mapping[str, int]
    recent: deque[Seen] = field(default_factory=lambda: deque(maxlen=RECENT))
    #: Kinds still to do once each before drawing by weight (--ssc-cover-mix).
    cover: list[str] = field(default_factory=list)

    @property
    def terminal(self) -> Terminal:
        return self.http.terminal

    @property
    def counter_visit_type(self) -> str:
        return "pharmacy" if self.terminal.kind == "pharmacy" else "outpatient"


# -- the card and the person ---------------------------------------------------------------


#: Challenge bytes by card generation (docs/CONTRACTS.md, card authentication).
_CHALLENGE_BYTES: Final = {3: 16, 2: 8}


def _granted(generation: int) -> Callable[[Answer], str | None]:
    def check(answer: Answer) -> str | None:
        challenge, challenge_id = answer.body.get("challenge"), answer.body.get("challenge_id")
        if not isinstance(challenge, str) or not isinstance(challenge_id, str):
            return "no challenge in the answer"
        try:
            size = len(bytes.fromhex(challenge))
        except ValueError:
            return "the challenge is not hex"
        if size != _CHALLENGE_BYTES[generation]:
            return f"a challenge of {size} bytes for a generation-{generation} card"
        return None

    return check


def _is_settlement(answer: Answer) -> str | None:
    try:
        Seen.from_answer(answer.body, _route(answer.body))
    except ValueError as exc:
        return f"not a settlement ({exc})"
    return None


def _is_cancelled(answer: Answer) -> str | None:
    return None if answer.body.get("status") == "cancelled" else "the settlement is not cancelled"


def read_card(v: Visitor, card: Card, *, refusal: str | None = None) -> str | None:
    """Card authentication: the card session, or None (a refusal, expected or not)."""
    challenge = v.http.call(
        "POST",
        CHALLENGE,
        {"card_sn": card.card_sn, "generation": card.generation},
        name=CHALLENGE,
        check=_granted(card.generation),
    )
    if challenge.status != 200 or _granted(card.generation)(challenge) is not None:
        return None
    proof = v.run.wallet.answer(
        card,
        str(challenge.body["challenge"]),
        str(challenge.body["challenge_id"]),
        v.terminal.terminal_id,
    )
    if refusal is not None:
        v.http.call(
            "POST", RESPONSE, proof, name=named(RESPONSE, f"expect {refusal}"), refusal=refusal
        )
        return None
    name = RESPONSE if card.generation == 3 else named(RESPONSE, "legacy")
    answer = v.http.call("POST", RESPONSE, proof, name=name)
    session = answer.body.get("card_session")
    if answer.status != 200 or not isinstance(session, str):
        return None
    v.run.wallet.accepted(card)
    return session


def eligibility(v: Visitor, session: str, *, name: str = ELIGIBILITY) -> Answer:
    return v.http.call("POST", ELIGIBILITY, {}, name=name, headers={"X-Card-Session": session})


# -- money -----------------------------------------------------------------------------------


def _route(body: Mapping[str, Any]) -> str:
    return "remote" if body.get("route") in _REMOTE_ROUTES else "local"


def _book(run: RunState, call: MoneyCall, answer: Answer) -> Seen | None:
    """Put a confirmed answer into the tally; None if it is not one (counted a failure)."""
    if call.kind == "cancel":
        if answer.body.get("status") != "cancelled" or call.setl_id is None:
            return None
        run.tally.cancel(call.setl_id)
        return None
    try:
        seen = Seen.from_answer(answer.body, _route(answer.body))
    except ValueError:
        return None
    run.tally.settle(seen)
    return seen


def _backoff(answer: Answer, attempt: int) -> float:
    hinted = answer.retry_after_s
    return min(MAX_BACKOFF_S, hinted if hinted is not None else BACKOFF_S * 2**attempt)


def send_money(
    v: Visitor, call: MoneyCall, session: str | None
) -> tuple[Answer | None, Seen | None]:
    """Send a money request until a final answer (module docstring): (its answer, the
    settlement booked for a settle or discharge). (None, None) if no final answer came."""
    ticket = v.run.write_down(call)
    headers = {"Idempotency-Key": call.key}
    if session is not None:
        headers["X-Card-Session"] = session
    check = _is_cancelled if call.kind == "cancel" else _is_settlement
    for attempt in range(MONEY_ATTEMPTS):
        answer = v.http.call(
            "POST",
            call.path,
            call.payload,
            name=call.name,
            ok=(call.ok_status,),
            headers=headers,
            check=check,
        )
        if answer.status == call.ok_status:
            v.run.cross_off(ticket)
            return answer, _book(v.run, call, answer)
        if (
            call.kind == "cancel"
            and (call.again or attempt > 0)
            and answer.code == "SETTLEMENT_ALREADY_CANCELLED"
        ):
            # An earlier attempt of this very cancel did it (its key was released with an
            # unknown answer, docs/cross-province.md): the settlement is cancelled.
            assert call.setl_id is not None
            v.run.tally.cancel(call.setl_id)
            v.run.cross_off(ticket)
            return answer, None
        if not answer.retryable:
            v.run.cross_off(ticket)  # refused: nothing moved
            return answer, None
        time.sleep(_backoff(answer, attempt))
    return None, None  # still written down: resolved at the end of the run


def settle(
    v: Visitor, card: Card, session: str, visit: Mapping[str, Any], name: str
) -> tuple[MoneyCall, Answer | None, Seen | None]:
    call = MoneyCall(
        kind="settle",
        terminal=v.terminal,
        path=SETTLE,
        payload=visit,
        key=v.run.new_key("s"),
        name=name,
        card=card.number,
    )
    answer, seen = send_money(v, call, session)
    if seen is not None:
        v.recent.append(seen)
    return call, answer, seen


# -- the visits --------------------------------------------------------------------------------


def _counter_visit(
    v: Visitor,
    card: Card,
    *,
    tags: tuple[str, ...] = (),
    estimate: bool = True,
    visit_type: str = "",
) -> tuple[MoneyCall, str, Seen] | None:
    """Card, eligibility, pre-settle (unless ``estimate`` is False), settle; the settlement.
    Requests are named with ``tags`` (and "pharmacy" at a pharmacy, "legacy" for a
    second-generation card)."""
    visit_type = visit_type or v.counter_visit_type
    tags = (
        *(("pharmacy",) if visit_type == "pharmacy" else ()),
        *tags,
        *(("legacy",) if card.generation == 2 else ()),
    )
    session = read_card(v, card)
    if session is None:
        return None
    # Eligibility through the hub (1101 at the insured place) gets its own latency line.
    remote = "cross-province" in tags
    person = eligibility(
        v, session, name=named(ELIGIBILITY, "cross-province") if remote else ELIGIBILITY
    )
    if person.status != 200:
        return None
    visit = {
        "visit_type": visit_type,
        "visit_date": today().isoformat(),
        "lines": visit_lines(v.rng, visit_type),
    }
    if estimate:
        pre = v.http.call(
            "POST",
            PRE_SETTLE,
            visit,
            name=named(PRE_SETTLE, *tags),
            headers={"X-Card-Session": session},
        )
        if pre.status != 200:
            return None
    call, _, seen = settle(v, card, session, visit, named(SETTLE, *tags))
    return None if seen is None else (call, session, seen)


def _local_card(v: Visitor) -> Card:
    return v.run.wallet.card(v.rng.choice(v.run.patients.third_gen))


def outpatient(v: Visitor) -> None:
    _counter_visit(v, _local_card(v))


def pharmacy(v: Visitor) -> None:
    _counter_visit(v, _local_card(v), visit_type="pharmacy")


def legacy_card(v: Visitor) -> None:
    _counter_visit(v, v.run.wallet.card(v.rng.choice(v.run.patients.legacy)))


def cross_province(v: Visitor) -> None:
    """A person insured in another province: filed, or an emergency (counts as filed)."""
    if v.terminal.kind == "pharmacy":
        visit_type = "pharmacy"
    else:
        visit_type = "emergency" if v.rng.random() < 0.2 else "outpatient"
    patients: Sequence[RemotePatient] = v.run.patients.remote_for(v.terminal, visit_type)
    patient = v.rng.choice(patients)
    # No pre-settle: the hub has no estimate (the gateway answers 422 VISIT_TYPE_NOT_ALLOWED).
    _counter_visit(
        v,
        v.run.wallet.card(patient.card),
        tags=("cross-province",),
        estimate=False,
        visit_type=visit_type,
    )


def card_refused(v: Visitor) -> None:
    """A lost or superseded card: the gateway must refuse it with its code."""
    kinds = list(mix.REFUSALS)
    chosen = v.rng.choices(kinds, weights=[mix.REFUSALS[k][0] for k in kinds])[0]
    card = v.run.wallet.card(v.rng.choice(v.run.patients.refused[chosen]))
    read_card(v, card, refusal=mix.REFUSALS[chosen][1])


def settle_replayed(v: Visitor) -> None:
    """An ordinary visit, then its settle sent again with the same Idempotency-Key: the same
    settlement must come back, marked ``Idempotent-Replayed: true``."""
    done = _counter_visit(v, _local_card(v))
    if done is None:
        return
    call, session, seen = done

    def same(answer: Answer) -> str | None:
        if answer.headers.get("Idempotent-Replayed") != "true":
            return "no Idempotent-Replayed: true"
        try:
            again = Seen.from_answer(answer.body, _route(answer.body))
        except ValueError:
            return "not a settlement"
        return None if again == seen else "another settlement than the first answer"

    answer = v.http.call(
        "POST",
        call.path,
        call.payload,
        name=named(call.name, "replay"),
        ok=(201,),
        headers={"Idempotency-Key": call.key, "X-Card-Session": session},
        check=same,
    )
    if answer.status != 201:
        return
    try:
        again = Seen.from_answer(answer.body, _route(answer.body))
    except ValueError:
        return
    if again.setl_id == seen.setl_id:
        v.run.tally.settle(again)  # other figures under the same id: a conflict, reported
    # Another setl_id is NOT tallied: a second settlement for one key must show in the books
    # as booked but never confirmed, failing the run.


def cancel(v: Visitor) -> None:
    """Cancel one of this terminal's settlements (or settle one first when it has none)."""
    target = v.recent.pop() if v.recent else None
    if target is None:
        done = _counter_visit(v, _local_card(v))
        if done is None:
            return
        target = done[2]
        v.recent.pop()
    remote = target.route == "remote"
    call = MoneyCall(
        kind="cancel",
        terminal=v.terminal,
        path=f"{SETTLE}/{target.setl_id}/cancel",
        payload={"reason": CANCEL_REASON},
        key=v.run.new_key("c"),
        name=named(f"{SETTLE}/{{setl_id}}/cancel", *(("cross-province",) if remote else ())),
        setl_id=target.setl_id,
    )
    send_money(v, call, None)


def inpatient(v: Visitor) -> None:
    """Admission, two uploads of fee lines, then (the card read again) the discharge that
    settles the stay."""
    card = _local_card(v)
    session = read_card(v, card)
    if session is None:
        return
    days = v.rng.randint(0, 6)
    admitted = today() - dt.timedelta(days=days)
    answer = v.http.call(
        "POST",
        "/v1/admissions",
        {"admission_date": admitted.isoformat()},
        name="/v1/admissions",
        ok=(201,),
        headers={"X-Card-Session": session},
    )
    admission_id = answer.body.get("admission_id")
    if answer.status != 201 or not isinstance(admission_id, str):
        return
    uploads = [
        [{"code": _BED_DAY[0], "quantity": days + 1, "unit_price_fen": _BED_DAY[1]}],
        [_line(v.rng, item) for item in v.rng.sample(_STAY_ITEMS, v.rng.randint(1, 3))],
    ]
    for lines in uploads:
        key = {"Idempotency-Key": v.run.new_key("f")}
        for attempt in range(MONEY_ATTEMPTS):
            uploaded = v.http.call(
                "POST",
                f"/v1/admissions/{admission_id}/fee-lines",
                {"lines": lines},
                name="/v1/admissions/{id}/fee-lines",
                headers=key,
            )
            if uploaded.status == 200:
                break
            if not uploaded.retryable:
                return
            time.sleep(_backoff(uploaded, attempt))
        else:
            return
    session = read_card(v, card)  # discharge day: the card is read again
    if session is None:
        return
    call = MoneyCall(
        kind="discharge",
        terminal=v.terminal,
        path=f"/v1/admissions/{admission_id}/discharge",
        payload={"discharge_date": today().isoformat()},
        key=v.run.new_key("d"),
        name="/v1/admissions/{id}/discharge",
        card=card.number,
    )
    _, seen = send_money(v, call, session)
    if seen is not None:
        v.recent.append(seen)


VISITS: Final[Mapping[str, Callable[[Visitor], None]]] = {
    "outpatient": outpatient,
    "pharmacy": pharmacy,
    "inpatient": inpatient,
    "cancel": cancel,
    "cross_province": cross_province,
    "legacy_card": legacy_card,
    "card_refused": card_refused,
    "settle_replayed": settle_replayed,
}
assert set(VISITS) == set(mix.KINDS)


def next_visit(v: Visitor) -> None:
    """One visit of a kind drawn from the terminal's row (after the --ssc-cover-mix round)."""
    if v.run.closing:
        return  # the run is ending: finish nothing new
    if v.cover:
        kind = v.cover.pop()
    else:
        kinds = list(v.row)
        kind = v.rng.choices(kinds, weights=[v.row[k] for k in kinds])[0]
    v.run.inflight += 1
    try:
        VISITS[kind](v)
    finally:
        v.run.inflight -= 1


def resolve_pending(run: RunState, session_for: Callable[[Terminal], SessionLike]) -> int:
    """Send every money request still written down again, with its Idempotency-Key (after
    reading its card again, for a new card session); book what comes back. Returns how many
    are still in doubt, which the books check counts as failures."""
    in_doubt = 0
    for ticket, call in sorted(run.pending.items()):
        terminal = call.terminal
        v = Visitor(SignedClient(session_for(terminal), terminal), run, random.Random(), {})
        session = None
        if call.card is not None:
            session = read_card(v, run.wallet.card(call.card))
            if session is None:
                in_doubt += 1
                continue
        resend = MoneyCall(
            call.kind,
            call.terminal,
            call.path,
            call.payload,
            call.key,
            named(call.name, "resolve"),
            call.card,
            call.setl_id,
            again=True,
        )
        run.pending.pop(ticket)
        answer, _ = send_money(v, resend, session)
        if answer is None:
            in_doubt += 1
    run.pending.clear()
    run.tally.in_doubt += in_doubt
    return in_doubt
