"""Issue #6 walked through the gateway with the demo issuing world (11 banks, employers, community
centres, online service, hotline, card centre, each acting through its own demo terminal):
every cohort through every channel to an authenticating card; every illegal transition a card
route can be asked for, as 409 with the current state and the allowed transitions, changing
nothing; the hotline's history; statistics per day; and ordinary replacement revoking the old
card and its certificate at card authentication."""

from __future__ import annotations

import datetime as dt
from typing import Any, Final

import pytest
from card_auth_testkit import (
    LEGACY_ACTIVE,
    LEGACY_SUPERSEDED,
    NEW_ACTIVE,
    NEW_EXPIRED,
    SEED,
    CardTerminal,
    load_registry,
)
from gateway_testkit import HOSPITAL, Client, FakeClock, Signer, assert_problem
from sqlalchemy import Engine, insert, text
from sqlalchemy.orm import Session

from gateway.issuance_api.demo import DemoIssuingInstitutions
from gateway.issuance_api.routes import DEMO_PERSONALISER
from issuance.lifecycle import TRANSITIONS, Event, Stage, allowed_events
from issuance.store import IssuanceAgent
from sscard import demo as sd
from sscard.layout import (
    CardIdentity,
    CardSn,
    Gender,
    HolderData,
    IssuerData,
    citizen_id_check_digit,
)
from sscard.softcard import SoftCard, make_third_gen_card

SHANGHAI: Final = dt.timezone(dt.timedelta(hours=8))
CENTRE_AREA: Final = "310104"  # Xuhui: the backup community centre's district
# Applicants are registered in Chongming, where no demo holder is from (so no generated citizen
# id is a demo holder's).
APPLICANT_AREA: Final = "310151"
BACKUP: Final = sd.demo_community_centre(CENTRE_AREA).institution_code


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"demo_world": "on"}  # the demo PKI: card authentication and the issuing CA


@pytest.fixture
def world(engine: Engine) -> Engine:
    load_registry(engine)
    with Session(engine) as session, session.begin():
        if engine.dialect.name == "postgresql":
            session.execute(text("SELECT setval(pg_get_serial_sequence('cardholders', 'id'), 20)"))
        DemoIssuingInstitutions().load(session, SEED)
    return engine


def at(clock: FakeClock, day: dt.date, hour: int = 10) -> None:
    clock.now_s = dt.datetime(day.year, day.month, day.day, hour, tzinfo=SHANGHAI).timestamp()


def issuer(client: Client, clock: FakeClock, kind: str, index: int = 0) -> Signer:
    """Terminal 1 of the ``index``-th demo issuing institution of ``kind``."""
    terminal_id, secret = sd.demo_issuing_terminal(SEED, kind, 2 * index)
    return Signer(client, clock, terminal_id=terminal_id, secret=secret)


def bank(client: Client, clock: FakeClock, code: str) -> Signer:
    return issuer(client, clock, "service_bank", sd.DEMO_SERVICE_BANKS.index(code))


def community(client: Client, clock: FakeClock, area: str = CENTRE_AREA) -> Signer:
    centres = [c.area_code for c in sd.demo_issuers("community_centre")]
    return issuer(client, clock, "community_centre", centres.index(area))


def centre(client: Client, clock: FakeClock) -> Signer:
    return issuer(client, clock, "card_centre")


def hotline(client: Client, clock: FakeClock) -> Signer:
    return issuer(client, clock, "hotline")


async def ok(response: Any, status: int = 200) -> Any:
    assert response.status == status, await response.text()
    return await response.json()


async def get(signer: Signer, path: str) -> Any:
    return await signer.client.get(path, headers=signer.headers("GET", path, b""))


def citizen(n: int, birth: dt.date) -> str:
    first17 = f"{APPLICANT_AREA}{birth:%Y%m%d}{n:03d}"
    return first17 + citizen_id_check_digit(first17)


def applicant(n: int, birth: dt.date = dt.date(1950, 5, 5)) -> dict[str, Any]:
    return {
        "citizen_id": citizen(n, birth),
        "name": f"测试{n}",
        "birth_date": birth.isoformat(),
        "gender": "1" if n % 2 else "2",
        "area_code": APPLICANT_AREA,
        "hukou_shanghai": True,
        "insured_in_shanghai": True,
    }


def application(
    n: int, cohort: str, channel: str, photo: str, banks: dict[str, Any], birth: dt.date
) -> dict[str, Any]:
    return {
        "applicant": applicant(n, birth),
        "cohort": cohort,
        "channel": channel,
        "photo_source": photo,
        "backup_centre": BACKUP,
        **banks,
    }


CSV_HEADER: Final = (
    "citizen_id,name,birth_date,gender,area_code,hukou_shanghai,insured_in_shanghai,"
    "salary_banks,bank,photo_source,backup_centre"
)


def csv_row(a: dict[str, Any], salary_bank: str, photo: str) -> str:
    return (
        f"{a['citizen_id']},{a['name']},{a['birth_date']},{a['gender']},{a['area_code']},"
        f"1,1,{salary_bank},,{photo},{BACKUP}"
    )


def soft_card(card_sn: str, holder: dict[str, Any], issued: dt.date) -> SoftCard:
    """The chip the card bureau wrote: the personaliser's new key and certificate."""
    made = DEMO_PERSONALISER.cards[card_sn]
    identity = CardIdentity.from_parts(
        IssuerData(
            card_sn=CardSn.from_hex(card_sn),
            card_type="3",
            spec_version="3.00",
            init_org="31" + "0" * 22,
            issue_date=issued,
            expiry_date=made.expires_on,
            card_no=made.card_no,
        ),
        HolderData(
            citizen_id=holder["citizen_id"],
            name=holder["name"],
            gender=Gender(holder["gender"]),
            nation="01",
            birth_date=dt.date.fromisoformat(holder["birth_date"]),
        ),
    )
    return make_third_gen_card(identity, made.key, made.certificate.der, sd.DEMO_PIN)


async def authenticate(hospital: CardTerminal, card: SoftCard) -> Any:
    granted = await hospital.granted_challenge(card.card_sn.hex, 3)
    return await hospital.respond(hospital.answer(card, granted))


async def produce_all(client: Client, clock: FakeClock) -> dict[str, Any]:
    """The card centre batches every collected application and makes the one batch."""
    x = centre(client, clock)
    [batch_id] = (await ok(await x.post("/v1/issuance/batches", {})))["batch_ids"]
    return await ok(await x.post(f"/v1/issuance/batches/{batch_id}/produce", {}))


# (cohort, channel, taking terminal (kind, index), a day in the window, bank fields, photo,
#  delivery: "post" = delivered by post; "backup" = failed, at the backup centre, picked up)
MATRIX: Final[list[tuple[str, str, tuple[str, int], dt.date, dict[str, Any], str, str]]] = [
    (
        "retiree",
        "bank_branch",
        ("service_bank", 3),
        dt.date(2019, 3, 1),
        {"pension_bank": "ICBC"},
        "on_site",
        "post",
    ),
    (
        "retiree",
        "community_centre",
        ("community_centre", 1),
        dt.date(2019, 6, 30),
        {"pension_bank": "HSBC", "chosen_bank": "BOSH"},
        "id_card_shared",
        "backup",
    ),
    ("employee", "employer_batch", ("employer", 0), dt.date(2019, 7, 1), {}, "on_site", "post"),
    (
        "pupil",
        "online_web",
        ("online_service", 0),
        dt.date(2019, 4, 1),
        {"chosen_bank": "CMB"},
        "e_student_card",
        "backup",
    ),
    (
        "pupil",
        "online_wechat",
        ("online_service", 0),
        dt.date(2019, 5, 15),
        {"chosen_bank": "SPDB"},
        "e_student_card",
        "post",
    ),
    (
        "pupil",
        "online_app",
        ("online_service", 0),
        dt.date(2019, 6, 30),
        {"chosen_bank": "PSBC"},
        "id_card_shared",
        "backup",
    ),
    (
        "first_card",
        "community_centre",
        ("community_centre", 1),
        dt.date(2027, 1, 15),
        {"chosen_bank": "CEB"},
        "on_site",
        "post",
    ),
]


@pytest.mark.parametrize(
    ("cohort", "channel", "taker", "day", "banks", "photo", "delivery"), MATRIX, ids=str
)
async def test_every_cohort_through_every_channel_to_an_authenticating_card(
    client: Client,
    clock: FakeClock,
    world: Engine,
    signer: Signer,
    cohort: str,
    channel: str,
    taker: tuple[str, int],
    day: dt.date,
    banks: dict[str, Any],
    photo: str,
    delivery: str,
) -> None:
    at(clock, day)
    birth = dt.date(2012, 3, 3) if cohort == "pupil" else dt.date(1950, 5, 5)
    body = application(7, cohort, channel, photo, banks, birth)
    who = issuer(client, clock, *taker)
    if channel == "employer_batch":
        partner = sd.demo_issuers("employer")[taker[1]].bank_code
        assert partner is not None
        csv_text = f"{CSV_HEADER}\n{csv_row(body['applicant'], partner, photo)}\n"
        upload = await ok(
            await who.post(
                "/v1/issuance/employer-batches", csv_text.encode(), content_type="text/csv"
            )
        )
        assert upload["accepted"] == 1, upload
        application_id = upload["rows"][0]["application_id"]
    else:
        taken = await ok(await who.post("/v1/issuance/applications", body), 201)
        application_id = taken["application_id"]
    report = await produce_all(client, clock)
    assert report["channel"] == channel
    assert (report["by_cohort"], report["by_stage"]) == ({cohort: 1}, {"mailed": 1})

    [status] = (
        await ok(await who.post("/v1/issuance/status", {"application_id": application_id}))
    )["applications"]
    assert (status["cohort"], status["channel"], status["stage"]) == (cohort, channel, "mailed")
    card_sn, bank_code = status["card_sn"], status["bank_code"]
    assert bank_code in sd.DEMO_SERVICE_BANKS
    path = f"/v1/issuance/cards/{card_sn}/delivery"
    x = centre(client, clock)
    if delivery == "post":
        await ok(await x.post(path, {"outcome": "delivered"}))
    else:
        await ok(await x.post(path, {"outcome": "failed"}))
        await ok(await x.post(path, {"outcome": "at_backup_centre"}))
        # The backup community centre hands the card over (it sees cards it backs up).
        picked = await ok(await community(client, clock).post(path, {"outcome": "picked_up"}))
        assert picked["stage"] == "collected"
    # The holder's bank opens the card (开通) at its counter.
    activated = await ok(
        await bank(client, clock, bank_code).post(f"/v1/issuance/cards/{card_sn}/activate", {})
    )
    assert activated["state"] == "active"

    card = soft_card(card_sn, body["applicant"], day)
    session = await ok(await authenticate(CardTerminal(signer), card))
    assert session["card_sn"] == card_sn

    history = await ok(
        await hotline(client, clock).post(
            "/v1/issuance/history", {"citizen_id": body["applicant"]["citizen_id"]}
        )
    )
    events = [e["event"] for e in history["events"]]
    delivered = (
        ["deliver"] if delivery == "post" else ["delivery_fail", "send_to_backup", "pick_up"]
    )
    assert events == [
        "apply",
        "collect_info",
        "add_to_batch",
        "produce",
        "mail",
        *delivered,
        "activate",
    ]
    assert {e["channel"] for e in history["events"]} == {channel}
    stats = await ok(await get(hotline(client, clock), f"/v1/issuance/stats?date={day}"))
    assert stats["applications"] == [{"channel": channel, "cohort": cohort, "count": 1}]
    assert stats["cards"]["activated"] == 1


def test_the_matrix_is_every_configured_cohort_and_channel() -> None:
    from issuance.programme import default_programme

    configured = {
        (c.code, ch.value) for c in default_programme().cohorts.values() for ch in c.channels
    }
    assert {(cohort, channel) for cohort, channel, *_ in MATRIX} == configured


# --- every illegal transition a card route can be asked for -----------------------------------

CARD_ROUTES: Final = {
    Event.DELIVER: ("delivery", {"outcome": "delivered"}),
    Event.DELIVERY_FAIL: ("delivery", {"outcome": "failed"}),
    Event.SEND_TO_BACKUP: ("delivery", {"outcome": "at_backup_centre"}),
    Event.PICK_UP: ("delivery", {"outcome": "picked_up"}),
    Event.ACTIVATE: ("activate", {}),
    Event.REPORT_LOSS: ("loss", {}),
    Event.REPLACE: ("replace", {"instant": False}),
}
# ``produced`` is never observable over HTTP (a batch is posted as it is made; an instant
# replacement is handed over at once); the application stages have no card_sn yet.
OBSERVABLE: Final = sorted(
    {
        Stage.MAILED,
        Stage.DELIVERED,
        Stage.DELIVERY_FAILED,
        Stage.AT_BACKUP_CENTRE,
        Stage.COLLECTED,
        Stage.ACTIVE,
        Stage.LOST,
        Stage.REVOKED,
        Stage.SUPERSEDED,
        Stage.EXPIRED,
    }
)
# How each stage is reached from ``mailed`` (the demo registry holds superseded and expired).
PATHS: Final = {
    Stage.MAILED: [],
    Stage.DELIVERED: [Event.DELIVER],
    Stage.DELIVERY_FAILED: [Event.DELIVERY_FAIL],
    Stage.AT_BACKUP_CENTRE: [Event.DELIVERY_FAIL, Event.SEND_TO_BACKUP],
    Stage.COLLECTED: [Event.DELIVERY_FAIL, Event.SEND_TO_BACKUP, Event.PICK_UP],
    Stage.ACTIVE: [Event.DELIVER, Event.ACTIVATE],
    Stage.LOST: [Event.DELIVER, Event.REPORT_LOSS],
    Stage.REVOKED: [Event.DELIVER, Event.REPLACE],
}


async def card_event(x: Signer, card_sn: str, event: Event) -> Any:
    route, body = CARD_ROUTES[event]
    return await x.post(f"/v1/issuance/cards/{card_sn}/{route}", body)


async def test_every_illegal_card_transition_is_409_with_state_and_allowed_and_changes_nothing(
    client: Client, clock: FakeClock, world: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The 8 applications are batched, and their cards made, in units of 3 (three transactions
    # each), as 100,000 are in units of 1,000 and 25.
    monkeypatch.setattr("gateway.issuance_api.routes.BATCH_APPLICATIONS_PER_UNIT", 3)
    monkeypatch.setattr("gateway.issuance_api.routes.PRODUCE_CARDS_PER_UNIT", 3)
    at(clock, dt.date(2019, 3, 1))
    icbc, x = bank(client, clock, "ICBC"), centre(client, clock)
    for n in range(len(PATHS)):
        body = application(
            n, "retiree", "bank_branch", "on_site", {"pension_bank": "ICBC"}, dt.date(1950, 5, 5)
        )
        await ok(await icbc.post("/v1/issuance/applications", body), 201)
    report = await produce_all(client, clock)
    assert report["by_stage"] == {"mailed": len(PATHS)}
    assert report["produced_at"] is not None
    cards: dict[Stage, str] = {}
    for n, (stage, path) in enumerate(PATHS.items()):
        cid = citizen(n, dt.date(1950, 5, 5))
        [app] = (await ok(await x.post("/v1/issuance/status", {"citizen_id": cid})))["applications"]
        for event in path:
            await ok(await card_event(x, app["card_sn"], event))
        cards[stage] = app["card_sn"]
    cards[Stage.SUPERSEDED] = sd.demo_card(SEED, LEGACY_SUPERSEDED).card_sn
    cards[Stage.EXPIRED] = sd.demo_card(SEED, NEW_EXPIRED).card_sn
    assert sorted(cards) == OBSERVABLE

    async def history_length(card_sn: str) -> int:
        found = await ok(await x.post("/v1/issuance/history", {"card_sn": card_sn}))
        return len(found["events"])

    before = {stage: await history_length(sn) for stage, sn in cards.items()}
    tried = 0
    for stage, card_sn in cards.items():
        for event in CARD_ROUTES:
            if (stage, event) in TRANSITIONS:
                continue
            problem = await assert_problem(
                await card_event(x, card_sn, event), 409, "ILLEGAL_TRANSITION"
            )
            assert problem["current_state"] == stage.value, (stage, event)
            assert problem["event"] == event.value
            assert problem["allowed_transitions"] == [e.value for e in allowed_events(stage)]
            tried += 1
    assert tried == len(OBSERVABLE) * len(CARD_ROUTES) - sum(
        (s, e) in TRANSITIONS for s in OBSERVABLE for e in CARD_ROUTES
    )
    assert {stage: await history_length(sn) for stage, sn in cards.items()} == before


# --- hotline, statistics per day, replacement ----------------------------------------------------


async def test_activation_supersedes_the_legacy_card_hotline_history_and_daily_stats(
    client: Client, clock: FakeClock, world: Engine, signer: Signer
) -> None:
    hospital = CardTerminal(signer)
    h = LEGACY_ACTIVE // 2
    holder = sd.demo_holder(SEED, h)
    who = {
        "citizen_id": holder.citizen_id,
        "name": holder.name,
        "birth_date": holder.birth_date.isoformat(),
        "gender": holder.gender.value,
        "area_code": holder.area_code,
        "hukou_shanghai": True,
        "insured_in_shanghai": True,
    }
    body = {
        "applicant": who,
        "cohort": "retiree",
        "channel": "bank_branch",
        "photo_source": "on_site",
        "backup_centre": BACKUP,
        "pension_bank": "ICBC",
    }
    day1, day2, day3 = dt.date(2019, 3, 1), dt.date(2019, 3, 4), dt.date(2019, 3, 5)
    at(clock, day1)
    await ok(await bank(client, clock, "ICBC").post("/v1/issuance/applications", body), 201)
    at(clock, day2)
    await produce_all(client, clock)
    x = centre(client, clock)
    [app] = (await ok(await x.post("/v1/issuance/status", {"citizen_id": holder.citizen_id})))[
        "applications"
    ]
    card_sn = app["card_sn"]
    at(clock, day3)
    await ok(await x.post(f"/v1/issuance/cards/{card_sn}/delivery", {"outcome": "delivered"}))
    assert (await hospital.authenticate(LEGACY_ACTIVE)).status == 200  # parallel use
    # The hotline may look, report a loss, count; it may not open a card.
    line = hotline(client, clock)
    await assert_problem(
        await line.post(f"/v1/issuance/cards/{card_sn}/activate", {}), 403, "ISSUANCE_FORBIDDEN"
    )
    change = await ok(
        await bank(client, clock, "ICBC").post(f"/v1/issuance/cards/{card_sn}/activate", {})
    )
    legacy_sn = sd.demo_card(SEED, LEGACY_ACTIVE).card_sn
    assert change["superseded"] == [legacy_sn]
    await assert_problem(await hospital.authenticate(LEGACY_ACTIVE), 403, "CARD_SUPERSEDED")

    history = (
        await ok(await line.post("/v1/issuance/history", {"citizen_id": holder.citizen_id}))
    )["events"]
    assert [(e["card_sn"], e["event"], e["from_stage"], e["to_stage"]) for e in history] == [
        (None, "apply", None, "applied"),
        (None, "collect_info", "applied", "info_collected"),
        (None, "add_to_batch", "info_collected", "in_batch"),
        (card_sn, "produce", "in_batch", "produced"),
        (card_sn, "mail", "produced", "mailed"),
        (card_sn, "deliver", "mailed", "delivered"),
        (card_sn, "activate", "delivered", "active"),
        (legacy_sn, "supersede", "active", "superseded"),
    ]
    icbc_actor = sd.demo_issuers("service_bank")[3].institution_code
    assert history[0]["actor"].startswith(icbc_actor + "/")
    assert history[-1]["note"] == f"by …{card_sn[-6:]}"
    assert {dt.datetime.fromisoformat(e["at"]).astimezone(SHANGHAI).date() for e in history} == {
        day1,
        day2,
        day3,
    }

    async def stats(day: dt.date) -> Any:
        return await ok(await get(line, f"/v1/issuance/stats?date={day}"))

    first, second, third = await stats(day1), await stats(day2), await stats(day3)
    assert first["applications"] == [{"channel": "bank_branch", "cohort": "retiree", "count": 1}]
    assert (second["applications"], third["applications"]) == ([], [])
    assert first["cards"] == dict.fromkeys(first["cards"], 0)
    assert (second["cards"]["produced"], second["cards"]["mailed"]) == (1, 1)
    assert (third["cards"]["delivered"], third["cards"]["activated"]) == (1, 1)
    assert third["cards"]["produced"] == 0
    assert third["cards_cumulative"]["produced"] == third["cards_cumulative"]["activated"] == 1
    assert (await stats(dt.date(2019, 3, 2)))["cards"] == dict.fromkeys(first["cards"], 0)


async def test_ordinary_replacement_revokes_the_old_card_and_its_certificate(
    client: Client, clock: FakeClock, world: Engine, signer: Signer
) -> None:
    hospital = CardTerminal(signer)
    day = dt.date(2019, 3, 1)
    at(clock, day)
    body = application(
        40, "retiree", "bank_branch", "on_site", {"pension_bank": "CCB"}, dt.date(1950, 5, 5)
    )
    ccb, x = bank(client, clock, "CCB"), centre(client, clock)
    await ok(await ccb.post("/v1/issuance/applications", body), 201)
    await produce_all(client, clock)
    cid = body["applicant"]["citizen_id"]
    [app] = (await ok(await ccb.post("/v1/issuance/status", {"citizen_id": cid})))["applications"]
    old_sn = app["card_sn"]
    await ok(await x.post(f"/v1/issuance/cards/{old_sn}/delivery", {"outcome": "delivered"}))
    await ok(await ccb.post(f"/v1/issuance/cards/{old_sn}/activate", {}))
    old_card = soft_card(old_sn, body["applicant"], day)
    await ok(await authenticate(hospital, old_card))

    # Replaced at the bank (worn card, not lost): revoked at once, the new one in the next batch.
    replaced = await ok(await ccb.post(f"/v1/issuance/cards/{old_sn}/replace", {"instant": False}))
    assert (replaced["state"], replaced["revoked"], replaced["new_card_sn"]) == (
        "revoked",
        old_sn,
        None,
    )
    await assert_problem(await authenticate(hospital, old_card), 403, "CARD_REVOKED")
    report = await produce_all(client, clock)
    assert (report["by_cohort"], report["by_bank"]) == ({"first_card": 1}, {"CCB": 1})
    apps = (await ok(await ccb.post("/v1/issuance/status", {"citizen_id": cid})))["applications"]
    assert [a["replaces_card_sn"] for a in apps] == [None, old_sn]
    new_sn = apps[1]["card_sn"]
    assert new_sn != old_sn
    await ok(await x.post(f"/v1/issuance/cards/{new_sn}/delivery", {"outcome": "delivered"}))
    opened = await ok(await ccb.post(f"/v1/issuance/cards/{new_sn}/activate", {}))
    assert opened["superseded"] == []  # the old card is revoked already, not active
    new_card = soft_card(new_sn, body["applicant"], day)
    assert DEMO_PERSONALISER.cards[new_sn].cert_sm3 != DEMO_PERSONALISER.cards[old_sn].cert_sm3
    await ok(await authenticate(hospital, new_card))
    await assert_problem(await authenticate(hospital, old_card), 403, "CARD_REVOKED")


# --- who may do what -------------------------------------------------------------------------


async def test_medical_terminals_issue_nothing_unless_mapped_and_demo_roles_hold(
    client: Client, clock: FakeClock, world: Engine, signer: Signer
) -> None:
    at(clock, dt.date(2019, 3, 1))
    body = application(
        50, "retiree", "community_centre", "on_site", {"pension_bank": "ICBC"}, dt.date(1950, 5, 5)
    )
    await assert_problem(
        await signer.post("/v1/issuance/applications", body), 403, "ISSUANCE_FORBIDDEN"
    )
    # An employer cannot take counter applications; a bank cannot produce; the hotline
    # cannot apply; an online service cannot record a delivery.
    await assert_problem(
        await issuer(client, clock, "employer").post("/v1/issuance/applications", body),
        403,
        "ISSUANCE_FORBIDDEN",
    )
    await assert_problem(
        await bank(client, clock, "ICBC").post("/v1/issuance/batches", {}),
        403,
        "ISSUANCE_FORBIDDEN",
    )
    await assert_problem(
        await hotline(client, clock).post("/v1/issuance/applications", body),
        403,
        "ISSUANCE_FORBIDDEN",
    )
    active_sn = sd.demo_card(SEED, NEW_ACTIVE).card_sn
    await assert_problem(
        await issuer(client, clock, "online_service").post(
            f"/v1/issuance/cards/{active_sn}/delivery", {"outcome": "delivered"}
        ),
        403,
        "ISSUANCE_FORBIDDEN",
    )
    # Mapped by an explicit agent row (a hospital's own community desk), it may.
    with Session(world) as session, session.begin():
        session.execute(
            insert(IssuanceAgent).values(
                institution_code=HOSPITAL, role="community", name="desk", area_code=CENTRE_AREA
            )
        )
    taken = await ok(await signer.post("/v1/issuance/applications", body), 201)
    assert taken["channel"] == "community_centre"
