"""Issuance services end to end on the migrated schema: every cohort through every channel of
its own, production batches, delivery, activation superseding the legacy card, loss, replacement
with a new key pair and certificate, expiry, history, statistics and access scopes."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import pytest
from issuance_testkit import (
    BANK_CCB,
    BANK_ICBC,
    CENTRE,
    COMMUNITY,
    EMPLOYER,
    HOTLINE,
    ONLINE,
    OTHER_COMMUNITY,
    OTHER_EMPLOYER,
    applicant,
    at,
    citizen_id,
    request,
)
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from gateway.card_auth.demo_cards import holder_id
from issuance import applications, batches, card_changes, errors, queries, uploads
from issuance.access import Agent
from issuance.production import InMemoryPersonaliser, IssuingCa, PersonalisedCard, new_card_sn
from issuance.programme import Channel, PhotoSource, Programme
from issuance.registry import CardRegistry
from issuance.store import Application, Card, CardEvent, CardState, ProductionBatch
from sscard import demo as sd
from sscard.certs import fingerprint_sm3

T = TypeVar("T")

# (cohort, channel, agent, a day inside the cohort's window, bank kwargs, photo)
MATRIX: list[tuple[str, Channel, Agent, dt.date, dict[str, Any], PhotoSource]] = [
    (
        "retiree",
        Channel.BANK_BRANCH,
        BANK_ICBC,
        dt.date(2019, 3, 1),
        {"pension_bank": "ICBC"},
        PhotoSource.ON_SITE,
    ),
    (
        "retiree",
        Channel.COMMUNITY_CENTRE,
        COMMUNITY,
        dt.date(2019, 6, 30),
        {"pension_bank": "HSBC", "chosen_bank": "BOSH"},
        PhotoSource.ID_CARD_SHARED,
    ),
    (
        "employee",
        Channel.EMPLOYER_BATCH,
        EMPLOYER,
        dt.date(2019, 7, 1),
        {"salary_banks": ("ICBC", "CCB"), "chosen_bank": "CCB"},
        PhotoSource.ON_SITE,
    ),
    (
        "pupil",
        Channel.ONLINE_WEB,
        ONLINE,
        dt.date(2019, 4, 1),
        {"chosen_bank": "CMB"},
        PhotoSource.E_STUDENT_CARD,
    ),
    (
        "pupil",
        Channel.ONLINE_WECHAT,
        ONLINE,
        dt.date(2019, 5, 15),
        {"chosen_bank": "SPDB"},
        PhotoSource.E_STUDENT_CARD,
    ),
    (
        "pupil",
        Channel.ONLINE_APP,
        ONLINE,
        dt.date(2019, 6, 30),
        {"chosen_bank": "PSBC"},
        PhotoSource.ID_CARD_SHARED,
    ),
    (
        "first_card",
        Channel.COMMUNITY_CENTRE,
        COMMUNITY,
        dt.date(2027, 1, 15),
        {"chosen_bank": "CEB"},
        PhotoSource.ON_SITE,
    ),
]


def run(engine: Engine, unit: Callable[[Session], T]) -> T:
    with Session(engine, expire_on_commit=False) as session, session.begin():
        return unit(session)


def test_matrix_covers_every_cohort_channel_pair(programme: Programme) -> None:
    configured = {(c.code, ch) for c in programme.cohorts.values() for ch in c.channels}
    assert {(cohort, channel) for cohort, channel, *_ in MATRIX} == configured


@pytest.mark.parametrize(("cohort", "channel", "agent", "day", "banks", "photo"), MATRIX, ids=str)
def test_cohort_through_channel_end_to_end(
    engine: Engine,
    programme: Programme,
    ca: IssuingCa,
    personaliser: InMemoryPersonaliser,
    cohort: str,
    channel: Channel,
    agent: Agent,
    day: dt.date,
    banks: dict[str, Any],
    photo: PhotoSource,
) -> None:
    birth = dt.date(2012, 3, 3) if cohort == "pupil" else dt.date(1950, 5, 5)
    who = applicant(7, birth=birth)
    now = at(day)
    view = run(
        engine,
        lambda s: applications.apply(
            s, programme, agent, request(who, cohort, channel, photo, **banks), now
        ),
    )
    assert view.stage == "info_collected"
    # sscard.masking's rule (first 3, last 2 kept); issuance used to keep the first 4.
    assert view.citizen_id_masked == who.citizen_id[:3] + "*" * 13 + who.citizen_id[-2:]
    [batch_id] = run(engine, lambda s: batches.create_batches(s, CENTRE, now))
    report = run(
        engine,
        lambda s: batches.produce_batch(
            s, CENTRE, batch_id, ca=ca, personaliser=personaliser, now=now
        ),
    )
    assert report.channel == channel.value
    assert report.by_stage == {"mailed": 1}
    assert report.by_cohort == {cohort: 1}
    [status] = run(engine, lambda s: queries.status(s, CENTRE, application_id=view.application_id))
    assert status.card_sn is not None
    card_sn = status.card_sn
    run(engine, lambda s: card_changes.record_delivery(s, CENTRE, card_sn, "delivered", now))
    change = run(engine, lambda s: card_changes.activate(s, CENTRE, card_sn, now))
    assert change.state == "active"
    made = personaliser.cards[card_sn]
    with Session(engine) as session:
        record = CardRegistry(session).require_usable(
            card_sn, today=day, legacy_accepted_until=None
        )
        assert record.cert_sm3 == fingerprint_sm3(made.certificate.der).hex()
        events = [
            e.event
            for e in session.execute(
                select(CardEvent).where(CardEvent.application_id == view.application_id)
            ).scalars()
        ]
    assert events == [
        "apply",
        "collect_info",
        "add_to_batch",
        "produce",
        "mail",
        "deliver",
        "activate",
    ]
    hotline_view = run(engine, lambda s: queries.history(s, HOTLINE, card_sn=card_sn))
    assert hotline_view[0].actor == agent.actor


def _legacy_holder_applies(engine: Engine, programme: Programme, h: int) -> int:
    holder = sd.demo_holder(sd.DEFAULT_DEMO_SEED, h)
    who = applications.Applicant(
        holder.citizen_id,
        holder.name,
        holder.birth_date,
        holder.gender.value,
        holder.area_code,
        True,
        False,
    )
    req = request(who, "retiree", Channel.BANK_BRANCH, PhotoSource.ON_SITE, pension_bank="ICBC")
    return run(
        engine, lambda s: applications.apply(s, programme, BANK_ICBC, req, at(dt.date(2019, 2, 1)))
    ).application_id


def _produce_and_deliver(
    engine: Engine, ca: IssuingCa, personaliser: InMemoryPersonaliser, day: dt.date
) -> list[str]:
    now = at(day)
    batch_ids = run(engine, lambda s: batches.create_batches(s, CENTRE, now))
    for b in batch_ids:
        run(
            engine,
            functools.partial(
                batches.produce_batch,
                agent=CENTRE,
                batch_id=b,
                ca=ca,
                personaliser=personaliser,
                now=now,
            ),
        )
    with Session(engine) as session:
        sns = list(
            session.execute(
                select(Card.card_sn).where(Card.state == CardState.MAILED).order_by(Card.card_sn)
            ).scalars()
        )
    for sn in sns:
        run(
            engine,
            functools.partial(
                card_changes.record_delivery, agent=CENTRE, card_sn=sn, outcome="delivered", now=now
            ),
        )
    return sns


def test_activation_supersedes_the_legacy_card_in_one_transaction(
    engine: Engine, programme: Programme, ca: IssuingCa, personaliser: InMemoryPersonaliser
) -> None:
    h = 5  # demo holder 5: legacy card active, an older new card delivered (never activated)
    _legacy_holder_applies(engine, programme, h)
    [new_sn] = _produce_and_deliver(engine, ca, personaliser, dt.date(2019, 2, 10))
    legacy_sn = sd.demo_card_sn(h, 2).hex
    change = run(
        engine, lambda s: card_changes.activate(s, BANK_ICBC, new_sn, at(dt.date(2019, 2, 11)))
    )
    assert change.superseded == (legacy_sn,)
    with Session(engine) as session:
        legacy = session.get(Card, legacy_sn)
        assert legacy is not None
        assert legacy.state is CardState.SUPERSEDED
        assert legacy.superseded_by == new_sn
        with pytest.raises(errors.CardSuperseded):
            CardRegistry(session).require_usable(
                legacy_sn, today=dt.date(2019, 2, 11), legacy_accepted_until=None
            )
    history = run(
        engine,
        lambda s: queries.history(
            s, HOTLINE, citizen_id=sd.demo_holder(sd.DEFAULT_DEMO_SEED, h).citizen_id
        ),
    )
    assert ("supersede", legacy_sn) in [(e.event, e.card_sn) for e in history]


def test_activation_rolls_back_as_a_whole(
    engine: Engine, programme: Programme, ca: IssuingCa, personaliser: InMemoryPersonaliser
) -> None:
    _legacy_holder_applies(engine, programme, 5)
    [new_sn] = _produce_and_deliver(engine, ca, personaliser, dt.date(2019, 2, 10))

    def fails_after(session: Session) -> None:
        card_changes.activate(session, CENTRE, new_sn, at(dt.date(2019, 2, 11)))
        raise RuntimeError("crash after activation, before commit")

    with pytest.raises(RuntimeError):
        run(engine, fails_after)
    with Session(engine) as session:
        assert session.get(Card, new_sn).state is CardState.DELIVERED  # type: ignore[union-attr]
        legacy = session.get(Card, sd.demo_card_sn(5, 2).hex)
        assert legacy is not None
        assert legacy.state is CardState.ACTIVE


def test_illegal_transition_reports_current_and_allowed(
    engine: Engine, programme: Programme, ca: IssuingCa, personaliser: InMemoryPersonaliser
) -> None:
    _legacy_holder_applies(engine, programme, 5)
    now = at(dt.date(2019, 2, 10))
    [batch] = run(engine, lambda s: batches.create_batches(s, CENTRE, now))
    run(
        engine,
        lambda s: batches.produce_batch(
            s, CENTRE, batch, ca=ca, personaliser=personaliser, now=now
        ),
    )
    [sn] = personaliser.cards
    with pytest.raises(errors.IllegalTransition) as caught:
        run(engine, lambda s: card_changes.activate(s, CENTRE, sn, now))
    assert caught.value.current == "mailed"
    assert caught.value.allowed == ("deliver", "delivery_fail")


def test_delivery_failure_goes_to_the_backup_centre(
    engine: Engine, programme: Programme, ca: IssuingCa, personaliser: InMemoryPersonaliser
) -> None:
    _legacy_holder_applies(engine, programme, 5)
    now = at(dt.date(2019, 2, 10))
    [batch] = run(engine, lambda s: batches.create_batches(s, CENTRE, now))
    run(
        engine,
        lambda s: batches.produce_batch(
            s, CENTRE, batch, ca=ca, personaliser=personaliser, now=now
        ),
    )
    [sn] = personaliser.cards
    run(engine, lambda s: card_changes.record_delivery(s, CENTRE, sn, "failed", now))
    run(engine, lambda s: card_changes.record_delivery(s, CENTRE, sn, "at_backup_centre", now))
    # The backup community centre sees the card (it is the registered backup), another does not.
    with pytest.raises(errors.IssuedCardNotFound):
        run(
            engine, lambda s: card_changes.record_delivery(s, OTHER_COMMUNITY, sn, "picked_up", now)
        )
    view = run(engine, lambda s: card_changes.record_delivery(s, COMMUNITY, sn, "picked_up", now))
    assert view.stage == "collected"
    assert run(engine, lambda s: card_changes.activate(s, COMMUNITY, sn, now)).state == "active"


def test_loss_report_blocks_at_once_and_instant_replacement_makes_a_new_key(
    engine: Engine, programme: Programme, ca: IssuingCa, personaliser: InMemoryPersonaliser
) -> None:
    _legacy_holder_applies(engine, programme, 5)
    [sn] = _produce_and_deliver(engine, ca, personaliser, dt.date(2019, 2, 10))
    now = at(dt.date(2019, 3, 1))
    run(engine, lambda s: card_changes.activate(s, BANK_ICBC, sn, now))
    run(engine, lambda s: card_changes.report_loss(s, HOTLINE, sn, now))
    with Session(engine) as session, pytest.raises(errors.CardLost):
        CardRegistry(session).require_usable(sn, today=now.date(), legacy_accepted_until=None)
    change = run(
        engine,
        lambda s: card_changes.replace(
            s, BANK_ICBC, sn, now, instant=True, ca=ca, personaliser=personaliser
        ),
    )
    assert change.state == "revoked"
    assert change.new_card_sn is not None
    assert change.new_card_sn != sn
    old, new = personaliser.cards[sn], personaliser.cards[change.new_card_sn]
    assert old.key.public_key.to_bytes() != new.key.public_key.to_bytes()
    assert old.cert_sm3 != new.cert_sm3
    with Session(engine) as session:
        registry = CardRegistry(session)
        with pytest.raises(errors.CardRevoked):
            registry.require_usable(sn, today=now.date(), legacy_accepted_until=None)
        with pytest.raises(errors.CardNotActivated):  # handed over, not yet activated
            registry.require_usable(
                change.new_card_sn, today=now.date(), legacy_accepted_until=None
            )
    new_sn = change.new_card_sn
    run(engine, lambda s: card_changes.activate(s, BANK_ICBC, new_sn, now))
    events = [e.event for e in run(engine, lambda s: queries.history(s, HOTLINE, card_sn=new_sn))]
    assert events == ["apply", "collect_info", "add_to_batch", "produce", "hand_over", "activate"]


def test_ordinary_replacement_joins_the_next_batch(
    engine: Engine, programme: Programme, ca: IssuingCa, personaliser: InMemoryPersonaliser
) -> None:
    legacy_lost = sd.demo_card_sn(9, 2).hex  # demo holder 9's legacy card was reported lost
    now = at(dt.date(2027, 1, 15))
    change = run(
        engine,
        lambda s: (
            card_changes.replace(
                s,
                COMMUNITY,
                legacy_lost,
                now,
                instant=False,
                chosen_bank="BOC",
                programme=programme,
            )
            if sd.demo_holder(sd.DEFAULT_DEMO_SEED, 9).area_code == COMMUNITY.area_code
            else card_changes.replace(
                s, CENTRE, legacy_lost, now, instant=False, chosen_bank="BOC", programme=programme
            )
        ),
    )
    assert change.new_card_sn is None
    [status] = run(
        engine, lambda s: queries.status(s, CENTRE, application_id=change.new_application_id or 0)
    )
    assert status.stage == "info_collected"
    assert status.replaces_card_sn == legacy_lost
    sns = _produce_and_deliver(engine, ca, personaliser, dt.date(2027, 1, 16))
    assert len(sns) == 1


def test_one_open_application_per_holder(engine: Engine, programme: Programme) -> None:
    who = applicant(1)
    req = request(who, "first_card", Channel.COMMUNITY_CENTRE, chosen_bank="BOC")
    now = at(dt.date(2027, 1, 15))
    run(engine, lambda s: applications.apply(s, programme, COMMUNITY, req, now))
    with pytest.raises(errors.ApplicationOpen):
        run(engine, lambda s: applications.apply(s, programme, COMMUNITY, req, now))
    with Session(engine) as session:
        assert len(session.execute(select(Application)).all()) == 1


def test_holder_mismatch_is_refused_without_personal_data(
    engine: Engine, programme: Programme
) -> None:
    holder = sd.demo_holder(sd.DEFAULT_DEMO_SEED, 3)
    who = applications.Applicant(
        holder.citizen_id, "冒名", holder.birth_date, "1", "310104", True, True
    )
    req = request(who, "first_card", Channel.COMMUNITY_CENTRE, chosen_bank="BOC")
    with pytest.raises(errors.HolderMismatch) as caught:
        run(
            engine,
            lambda s: applications.apply(s, programme, COMMUNITY, req, at(dt.date(2027, 1, 15))),
        )
    assert holder.citizen_id not in caught.value.message
    assert holder.name not in caught.value.message


GOOD_ROW = "{cid},张三,1985-02-03,1,310104,1,0,ICBC;HSBC,,on_site,C-310104-01"


def _csv(*rows: str) -> str:
    return ",".join(uploads.UPLOAD_COLUMNS) + "\n" + "\n".join(rows) + "\n"


def test_employer_csv_with_broken_rows(engine: Engine, programme: Programme) -> None:
    from issuance_testkit import citizen_id

    ok1 = citizen_id(101, dt.date(1985, 2, 3))
    ok2 = citizen_id(102, dt.date(1985, 2, 3))
    text = _csv(
        GOOD_ROW.format(cid=ok1),
        GOOD_ROW.format(cid="12345"),  # malformed id
        GOOD_ROW.format(cid=citizen_id(103, dt.date(1985, 2, 3))).replace(",1,0,", ",0,0,"),
        GOOD_ROW.format(cid=citizen_id(104, dt.date(1985, 2, 3))).replace("ICBC;HSBC", "ICBC;CCB"),
        GOOD_ROW.format(cid=ok1),  # duplicate: already applied in row 1
        GOOD_ROW.format(cid=citizen_id(105, dt.date(1985, 2, 3))) + ",extra",
        GOOD_ROW.format(cid=ok2).replace("1985-02-03", "1985-02-30"),
        GOOD_ROW.format(cid=ok2),
    )
    results = run(
        engine,
        lambda s: uploads.upload_employees(s, programme, EMPLOYER, text, at(dt.date(2019, 8, 1))),
    )
    assert [(r.row, r.accepted, r.code) for r in results] == [
        (1, True, None),
        (2, False, "ROW_INVALID"),
        (3, False, "NOT_ELIGIBLE"),
        (4, True, None),  # several salary banks: the employer's default bank (ICBC) decides
        (5, False, "APPLICATION_OPEN"),
        (6, False, "ROW_INVALID"),
        (7, False, "ROW_INVALID"),
        (8, True, None),
    ]
    for r in results:
        assert r.reason is None or ok1 not in r.reason
    with Session(engine) as session:
        apps = session.execute(select(Application)).scalars().all()
        assert len(apps) == 3
        assert {a.employer_code for a in apps} == {"ACME"}
        # The refused rows left nothing behind: no holder without an application.
        events = session.execute(select(CardEvent)).scalars().all()
        assert len(events) == 6


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("citizen_id,name\n1,2\n", "missing"),
        (",".join(uploads.UPLOAD_COLUMNS) + "\n", "no rows"),
        (_csv(*["x"] * 5001), "more than 5000"),
    ],
)
def test_unusable_csv_is_refused_as_a_whole(
    engine: Engine, programme: Programme, text: str, match: str
) -> None:
    with pytest.raises(errors.UploadInvalid, match=match):
        run(
            engine,
            lambda s: uploads.upload_employees(
                s, programme, EMPLOYER, text, at(dt.date(2019, 8, 1))
            ),
        )


def test_rbac_roles_and_scopes(engine: Engine, programme: Programme) -> None:
    now = at(dt.date(2019, 3, 1))
    icbc = run(
        engine,
        lambda s: applications.apply(
            s,
            programme,
            BANK_ICBC,
            request(applicant(1), "retiree", Channel.BANK_BRANCH, pension_bank="ICBC"),
            now,
        ),
    )
    ccb = run(
        engine,
        lambda s: applications.apply(
            s,
            programme,
            BANK_CCB,
            request(
                applicant(2, area="310115"), "retiree", Channel.BANK_BRANCH, pension_bank="CCB"
            ),
            now,
        ),
    )
    # A bank sees its own applicants only; the other's are "not found", not "forbidden".
    assert run(engine, lambda s: queries.status(s, BANK_ICBC, application_id=icbc.application_id))
    with pytest.raises(errors.ApplicationNotFound):
        run(engine, lambda s: queries.status(s, BANK_ICBC, application_id=ccb.application_id))
    with pytest.raises(errors.ApplicationNotFound):
        run(engine, lambda s: queries.status(s, BANK_CCB, citizen_id=applicant(1).citizen_id))
    # Community centres: their district (or backup centre) only.
    assert run(engine, lambda s: queries.status(s, COMMUNITY, application_id=icbc.application_id))
    with pytest.raises(errors.ApplicationNotFound):
        run(engine, lambda s: queries.status(s, OTHER_EMPLOYER, application_id=icbc.application_id))
    # The hotline sees everything but cannot apply; an employer cannot apply at a counter.
    assert run(engine, lambda s: queries.status(s, HOTLINE, application_id=ccb.application_id))
    with pytest.raises(errors.IssuanceForbidden):
        run(
            engine,
            lambda s: applications.apply(
                s,
                programme,
                HOTLINE,
                request(applicant(3), "retiree", Channel.BANK_BRANCH, pension_bank="ICBC"),
                now,
            ),
        )
    with pytest.raises(errors.ChannelNotAllowed):
        run(
            engine,
            lambda s: applications.apply(
                s,
                programme,
                BANK_ICBC,
                request(applicant(3), "first_card", Channel.COMMUNITY_CENTRE, chosen_bank="ICBC"),
                now,
            ),
        )
    with pytest.raises(errors.IssuanceForbidden):
        run(engine, lambda s: batches.create_batches(s, BANK_ICBC, now))
    with pytest.raises(errors.IssuanceForbidden):
        run(engine, lambda s: queries.daily_stats(s, BANK_ICBC, now.date()))
    # Online applications: visible to the platform that took them.
    pupil = run(
        engine,
        lambda s: applications.apply(
            s,
            programme,
            ONLINE,
            request(
                applicant(4, birth=dt.date(2012, 1, 1)),
                "pupil",
                Channel.ONLINE_APP,
                PhotoSource.E_STUDENT_CARD,
                chosen_bank="BOC",
            ),
            at(dt.date(2019, 5, 1)),
        ),
    )
    assert run(engine, lambda s: queries.status(s, ONLINE, application_id=pupil.application_id))
    with pytest.raises(errors.ApplicationNotFound):
        run(engine, lambda s: queries.status(s, ONLINE, application_id=icbc.application_id))


def test_daily_stats_like_the_seed(
    engine: Engine, programme: Programme, ca: IssuingCa, personaliser: InMemoryPersonaliser
) -> None:
    day = dt.date(2019, 5, 1)
    for n in range(3):
        run(
            engine,
            functools.partial(
                applications.apply,
                programme=programme,
                agent=ONLINE,
                request=request(
                    applicant(n, birth=dt.date(2012, 1, 1)),
                    "pupil",
                    Channel.ONLINE_WECHAT,
                    chosen_bank="BOC",
                ),
                now=at(day),
            ),
        )
    run(
        engine,
        lambda s: applications.apply(
            s,
            programme,
            BANK_ICBC,
            request(applicant(9), "retiree", Channel.BANK_BRANCH, pension_bank="ICBC"),
            at(day, 23),
        ),
    )
    _produce_and_deliver(engine, ca, personaliser, day)
    stats = run(engine, lambda s: queries.daily_stats(s, HOTLINE, day))
    assert stats.applications == [("bank_branch", "retiree", 1), ("online_wechat", "pupil", 3)]
    assert (stats.applications_counter, stats.applications_online) == (1, 3)
    assert stats.cards["produced"] == stats.cards["mailed"] == stats.cards["delivered"] == 4
    assert stats.cards["activated"] == 0
    next_day = run(engine, lambda s: queries.daily_stats(s, HOTLINE, day + dt.timedelta(days=1)))
    assert next_day.applications == []
    assert next_day.cards["produced"] == 0
    assert next_day.cards_cumulative["produced"] == 4


def test_expiry_sweep(engine: Engine) -> None:
    # Demo holder 0's new card (active) expires ten years after issue.
    with Session(engine) as session:
        card = session.get(Card, sd.demo_card_sn(0, 3).hex)
        assert card is not None
        expires = card.expires_on
    moved = run(
        engine,
        lambda s: card_changes.expire_cards(s, CENTRE, expires + dt.timedelta(days=1), at(expires)),
    )
    assert moved >= 1
    with Session(engine) as session:
        assert session.get(Card, sd.demo_card_sn(0, 3).hex).state is CardState.EXPIRED  # type: ignore[union-attr]
    assert holder_id(0) == 1


def test_a_row_failing_after_its_writes_leaves_nothing_behind(
    engine: Engine, programme: Programme, monkeypatch: pytest.MonkeyPatch
) -> None:
    from issuance_testkit import citizen_id

    from issuance.store import Cardholder

    cids = [citizen_id(200 + n, dt.date(1985, 2, 3)) for n in range(3)]
    real = applications.move_application
    calls = {"n": 0}

    def flaky(session: Session, app: Application, *args: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:  # row 2: its holder, application and "apply" event are written
            raise errors.IllegalTransition("applied", "collect_info", ())
        return real(session, app, *args)

    monkeypatch.setattr(applications, "move_application", flaky)
    results = service_upload(engine, programme, _csv(*(GOOD_ROW.format(cid=c) for c in cids)))
    assert [(r.accepted, r.code) for r in results] == [
        (True, None),
        (False, "ILLEGAL_TRANSITION"),
        (True, None),
    ]
    with Session(engine) as session:
        stored = set(session.execute(select(Cardholder.citizen_id)).scalars())
        assert cids[0] in stored
        assert cids[2] in stored
        assert cids[1] not in stored
        assert len(session.execute(select(Application)).all()) == 2
        assert len(session.execute(select(CardEvent)).all()) == 4


def service_upload(engine: Engine, programme: Programme, text: str) -> list[uploads.RowResult]:
    return run(
        engine,
        lambda s: uploads.upload_employees(s, programme, EMPLOYER, text, at(dt.date(2019, 8, 1))),
    )


def test_production_in_bounded_units_is_resumable_and_dated_at_the_end(
    engine: Engine, programme: Programme, ca: IssuingCa, personaliser: InMemoryPersonaliser
) -> None:
    now = at(dt.date(2019, 3, 1))
    for n in range(5):
        req = request(applicant(300 + n), "retiree", Channel.BANK_BRANCH, pension_bank="ICBC")
        run(engine, lambda s, r=req: applications.apply(s, programme, BANK_ICBC, r, now))
    [batch_id] = run(engine, lambda s: batches.create_batches(s, CENTRE, now))

    def produce(limit: int) -> batches.BatchReport:
        return run(
            engine,
            lambda s: batches.produce_batch(
                s, CENTRE, batch_id, ca=ca, personaliser=personaliser, now=now, limit=limit
            ),
        )

    first = produce(2)
    assert first.by_stage == {"mailed": 2, "in_batch": 3}
    assert first.produced_at is None
    second = produce(2)
    assert second.by_stage == {"mailed": 4, "in_batch": 1}
    last = produce(2)
    assert last.by_stage == {"mailed": 5}
    assert last.produced_at == now
    # Nothing left: another call makes nothing and keeps the date.
    later = at(dt.date(2019, 3, 2))
    again = run(
        engine,
        lambda s: batches.produce_batch(
            s, CENTRE, batch_id, ca=ca, personaliser=personaliser, now=later, limit=2
        ),
    )
    assert (again.by_stage, again.produced_at) == ({"mailed": 5}, now)
    assert len(personaliser.cards) == 5


class FailingPersonaliser(InMemoryPersonaliser):
    """Takes ``fail_at`` keys, then fails: the chip writer breaking in the middle of a unit."""

    def __init__(self, fail_at: int) -> None:
        super().__init__()
        self.fail_at = fail_at

    def write(self, card: PersonalisedCard) -> None:
        if len(self.cards) >= self.fail_at:
            raise OSError("personalisation link down")
        super().write(card)


def test_cards_personalised_outside_the_transaction_survive_a_failure_before_they_are_written(
    engine: Engine, programme: Programme, ca: IssuingCa, personaliser: InMemoryPersonaliser
) -> None:
    """The three steps the gateway runs apart (read, personalise with no transaction open,
    write): a failure after the personalisation writes nothing, and a retry makes every card,
    each registered with the certificate whose key went to the personaliser."""
    now = at(dt.date(2019, 3, 1))
    for n in range(5):
        req = request(applicant(600 + n), "retiree", Channel.BANK_BRANCH, pension_bank="ICBC")
        run(engine, lambda s, r=req: applications.apply(s, programme, BANK_ICBC, r, now))
    [batch_id] = run(engine, lambda s: batches.create_batches(s, CENTRE, now))

    def registered(card_sns: Sequence[str]) -> dict[str, str]:
        """card_sn -> the certificate's SM3 the registry holds."""
        rows = run(
            engine,
            lambda s: s.execute(
                select(Card.card_sn, Card.cert_sm3).where(Card.card_sn.in_(card_sns))
            ).all(),
        )
        return {row.card_sn: row.cert_sm3 for row in rows}

    def nothing_written() -> None:
        apps = run(
            engine,
            lambda s: s.scalars(select(Application).where(Application.batch_id == batch_id)).all(),
        )
        assert [(a.stage, a.card_sn) for a in apps] == [("in_batch", None)] * 5
        assert registered([new_card_sn(a.id) for a in apps]) == {}
        events = run(
            engine,
            lambda s: s.scalars(
                select(CardEvent.event).where(CardEvent.application_id.in_([a.id for a in apps]))
            ).all(),
        )
        assert sorted(set(events)) == ["add_to_batch", "apply", "collect_info"]
        batch = run(engine, lambda s: s.get(ProductionBatch, batch_id))
        assert batch is not None
        assert batch.produced_at is None

    ids = run(engine, lambda s: batches.cards_to_make(s, CENTRE, batch_id, limit=25))
    assert len(ids) == 5
    # Computed with no session at all, then the process dies before the write: nothing was
    # written, and nothing needs undoing.
    lost = batches.personalise_cards(ids, ca, now)
    nothing_written()
    # The write unit fails in its middle (the third card's key cannot be handed over): the
    # two cards already flushed roll back with it.
    with pytest.raises(OSError, match="link down"):
        run(
            engine,
            lambda s: batches.record_made_cards(
                s, CENTRE, batch_id, lost, personaliser=FailingPersonaliser(2), now=now
            ),
        )
    nothing_written()
    # The retry reads again, personalises anew, writes once.
    ids = run(engine, lambda s: batches.cards_to_make(s, CENTRE, batch_id, limit=25))
    made = batches.personalise_cards(ids, ca, now)
    report = run(
        engine,
        lambda s: batches.record_made_cards(
            s, CENTRE, batch_id, made, personaliser=personaliser, now=now
        ),
    )
    assert (report.by_stage, report.produced_at) == ({"mailed": 5}, now)
    cards = registered([new_card_sn(i) for i in ids])
    assert len(cards) == 5
    for app_id in ids:
        sn = new_card_sn(app_id)
        # The key that went to the chip is the one the registry trusts; not the lost round's.
        assert cards[sn] == fingerprint_sm3(personaliser.cards[sn].certificate.der).hex()
        assert cards[sn] != lost[app_id].cert_sm3
    # A late write of the lost round (a second producer, a retried request) changes nothing.
    again = run(
        engine,
        lambda s: batches.record_made_cards(
            s, CENTRE, batch_id, lost, personaliser=InMemoryPersonaliser(), now=now
        ),
    )
    assert (again.by_stage, again.produced_at) == ({"mailed": 5}, now)
    assert registered([new_card_sn(i) for i in ids]) == cards


def test_upload_rows_numbers_rows_of_a_split_file(engine: Engine, programme: Programme) -> None:
    now = at(dt.date(2019, 8, 1))
    header = ",".join(uploads.UPLOAD_COLUMNS)
    lines = [
        f"{citizen_id(400 + n)},员工,1980-01-01,1,310104,1,1,ICBC,,on_site,C-310104-01"
        for n in range(4)
    ]
    rows = uploads.parse_upload("\n".join([header, *lines, lines[0]]))
    first = run(engine, lambda s: uploads.upload_rows(s, programme, EMPLOYER, rows[:3], now))
    rest = run(
        engine,
        lambda s: uploads.upload_rows(s, programme, EMPLOYER, rows[3:], now, first_row=4),
    )
    assert [(r.row, r.accepted, r.code) for r in first + rest] == [
        (1, True, None),
        (2, True, None),
        (3, True, None),
        (4, True, None),
        (5, False, "APPLICATION_OPEN"),  # the first row again: taken once
    ]
    with pytest.raises(errors.IssuanceForbidden):
        run(engine, lambda s: uploads.upload_rows(s, programme, BANK_ICBC, rows, now))


def test_batches_fill_in_bounded_units_until_production_starts(
    engine: Engine, programme: Programme, ca: IssuingCa, personaliser: InMemoryPersonaliser
) -> None:
    now = at(dt.date(2019, 3, 1))

    def take(first: int, count: int) -> None:
        for n in range(first, first + count):
            req = request(applicant(500 + n), "retiree", Channel.BANK_BRANCH, pension_bank="ICBC")
            run(engine, lambda s, r=req: applications.apply(s, programme, BANK_ICBC, r, now))

    def fill(limit: int | None, max_size: int = 4) -> tuple[list[int], int]:
        return run(
            engine,
            lambda s: batches.fill_batches(s, CENTRE, now, max_size=max_size, limit=limit),
        )

    take(0, 5)
    first_ids, moved = fill(limit=3)
    assert moved == 3
    [first] = first_ids
    # The next unit tops the same batch up to max_size (4), then opens another for the rest.
    ids, moved = fill(limit=3)
    assert moved == 2
    assert ids[0] == first
    [second] = ids[1:]
    assert fill(limit=3) == ([], 0)
    take(5, 2)
    # The second batch is not started: it is filled; once its production starts, it is not.
    ids, moved = fill(limit=1)
    assert (ids, moved) == ([second], 1)
    run(
        engine,
        lambda s: batches.produce_batch(
            s, CENTRE, second, ca=ca, personaliser=personaliser, now=now, limit=1
        ),
    )
    ids, moved = fill(limit=None)
    assert moved == 1
    assert ids not in ([first], [second])
    sizes = run(
        engine,
        lambda s: [
            s.get(ProductionBatch, b).size  # type: ignore[union-attr]
            for b in (first, second, ids[0])
        ],
    )
    assert sizes == [4, 2, 1]
