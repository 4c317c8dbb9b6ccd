"""The issuance API over HTTP, signed like every route, with the demo registry loaded: applying,
batches, production, delivery, activation voiding the legacy card AT CARD AUTHENTICATION, loss
report refused at the next authentication, instant replacement, history, stats and roles."""

from __future__ import annotations

import datetime as dt
import io
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any, Final, TypeVar

import pytest
from card_auth_testkit import LEGACY_ACTIVE, NEW_ACTIVE, SEED, CardTerminal, load_registry
from gateway_testkit import Client, FakeClock, Signer, assert_problem
from sqlalchemy import Engine, insert, select, text
from sqlalchemy.orm import Session

from gateway.db import Database
from gateway.issuance_api.routes import DEMO_PERSONALISER
from gateway.store import Institution, Terminal
from issuance import batches
from issuance.production import PersonalisedCard, new_card_sn
from issuance.store import Application, Card, IssuanceAgent
from sscard import demo as sd
from sscard.certs import fingerprint_sm3
from sscard.layout import CardIdentity, CardSn, HolderData, IssuerData, citizen_id_check_digit
from sscard.masking import mask_citizen_id
from sscard.softcard import SoftCard, make_third_gen_card

# Issuance agents are institutions whose terminals call the issuance routes. The gateway's
# institutions table only knows hospitals and pharmacies (kind check constraint), so these test
# institutions are registered as pharmacies; their ROLE comes from issuance_agents.
AGENTS: Final = {
    # terminal: (institution, role, bank, employer, area)
    "ISS-BANK-ICBC": ("B31ICBC0001", "bank", "ICBC", None, None),
    "ISS-BANK-CCB": ("B31CCB00001", "bank", "CCB", None, None),
    "ISS-EMPLOYER": ("E31ACME0001", "employer", "ICBC", "ACME", None),
    "ISS-COMMUNITY": ("C31010400001", "community", None, None, "310104"),
    "ISS-HOTLINE": ("HL962222", "hotline", None, None, None),
    "ISS-CENTRE": ("CTR0000001", "centre", None, None, None),
}
DAY: Final = dt.date(2019, 3, 1)
T = TypeVar("T")


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"demo_world": "on"}  # the demo PKI: card authentication and the issuing CA


@pytest.fixture
def world(engine: Engine, clock: FakeClock) -> Engine:
    load_registry(engine)
    with Session(engine) as session, session.begin():
        if engine.dialect.name == "postgresql":
            session.execute(text("SELECT setval(pg_get_serial_sequence('cardholders', 'id'), 20)"))
        for n, (terminal, (code, role, bank, employer, area)) in enumerate(AGENTS.items()):
            session.execute(
                insert(Institution).values(code=code, name=f"issuance {role}", kind="pharmacy")
            )
            session.execute(
                insert(Terminal).values(
                    terminal_id=terminal,
                    institution_code=code,
                    secret=bytes([0x40 + n]) * 32,
                    enabled=True,
                )
            )
            session.execute(
                insert(IssuanceAgent).values(
                    institution_code=code,
                    role=role,
                    name=f"issuance {role}",
                    bank_code=bank,
                    employer_code=employer,
                    area_code=area,
                )
            )
    clock.now_s = dt.datetime(DAY.year, DAY.month, DAY.day, 2, tzinfo=dt.UTC).timestamp()
    return engine


def as_(client: Client, clock: FakeClock, terminal: str) -> Signer:
    n = list(AGENTS).index(terminal)
    return Signer(client, clock, terminal_id=terminal, secret=bytes([0x40 + n]) * 32)


async def get(signer: Signer, path: str) -> Any:
    headers = signer.headers("GET", path, b"")
    return await signer.client.get(path, headers=headers)


async def ok(response: Any, status: int = 200) -> Any:
    assert response.status == status, await response.text()
    return await response.json()


def new_citizen_id(n: int) -> str:
    first17 = f"310104{1950 + n % 9:04d}0101{n % 1000:03d}"
    return first17 + citizen_id_check_digit(first17)


def retiree(citizen_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "applicant": {
            "citizen_id": citizen_id,
            "name": "测试",
            "birth_date": "1950-01-01",
            "gender": "1",
            "area_code": "310104",
            "hukou_shanghai": True,
            "insured_in_shanghai": False,
        },
        "cohort": "retiree",
        "channel": "bank_branch",
        "photo_source": "on_site",
        "backup_centre": "C31010400001",
        "pension_bank": "ICBC",
        **extra,
    }


def demo_retiree(h: int) -> dict[str, Any]:
    holder = sd.demo_holder(SEED, h)
    body = retiree(holder.citizen_id)
    body["applicant"].update(
        name=holder.name,
        birth_date=holder.birth_date.isoformat(),
        gender=holder.gender.value,
        area_code=holder.area_code,
    )
    return body


async def issue_and_deliver(client: Client, clock: FakeClock, body: dict[str, Any]) -> str:
    """Apply at ICBC, batch, produce, deliver; return the new card's card_sn."""
    bank, centre = as_(client, clock, "ISS-BANK-ICBC"), as_(client, clock, "ISS-CENTRE")
    app = await ok(await bank.post("/v1/issuance/applications", body), 201)
    assert app["stage"] == "info_collected"
    batches = (await ok(await centre.post("/v1/issuance/batches", {})))["batch_ids"]
    assert len(batches) == 1
    report = await ok(await centre.post(f"/v1/issuance/batches/{batches[0]}/produce", {}))
    assert report["by_stage"] == {"mailed": 1}
    [status] = (
        await ok(await bank.post("/v1/issuance/status", {"application_id": app["application_id"]}))
    )["applications"]
    card_sn: str = status["card_sn"]
    delivered = await ok(
        await centre.post(f"/v1/issuance/cards/{card_sn}/delivery", {"outcome": "delivered"})
    )
    assert delivered["stage"] == "delivered"
    assert delivered["allowed_events"] == ["activate", "report_loss", "replace", "expire"]
    return card_sn


async def test_activation_voids_the_legacy_card_at_card_authentication(
    client: Client, clock: FakeClock, world: Engine, signer: Signer
) -> None:
    hospital = CardTerminal(signer)
    assert (await hospital.authenticate(LEGACY_ACTIVE)).status == 200  # parallel use
    card_sn = await issue_and_deliver(client, clock, demo_retiree(LEGACY_ACTIVE // 2))
    # Not yet activated: the legacy card still works.
    assert (await hospital.authenticate(LEGACY_ACTIVE)).status == 200
    bank = as_(client, clock, "ISS-BANK-ICBC")
    change = await ok(await bank.post(f"/v1/issuance/cards/{card_sn}/activate", {}))
    legacy_sn = sd.demo_card(SEED, LEGACY_ACTIVE).card_sn
    assert change["superseded"] == [legacy_sn]
    await assert_problem(await hospital.authenticate(LEGACY_ACTIVE), 403, "CARD_SUPERSEDED")
    # The new card, personalised with its own new key and certificate, authenticates.
    new_card = new_soft_card(card_sn, LEGACY_ACTIVE // 2)
    granted = await hospital.granted_challenge(card_sn, 3)
    session = await ok(await hospital.respond(hospital.answer(new_card, granted)))
    assert session["card_sn"] == card_sn


def new_soft_card(card_sn: str, h: int) -> SoftCard:
    """The chip the card bureau would have written: the personaliser's key and certificate."""
    made = DEMO_PERSONALISER.cards[card_sn]
    holder = sd.demo_holder(SEED, h)
    identity = CardIdentity.from_parts(
        IssuerData(
            card_sn=CardSn.from_hex(card_sn),
            card_type="3",
            spec_version="3.00",
            init_org="31" + "0" * 22,
            issue_date=DAY,
            expiry_date=made.expires_on,
            card_no=made.card_no,
        ),
        HolderData(
            citizen_id=holder.citizen_id,
            name=holder.name,
            gender=holder.gender,
            nation="01",
            birth_date=holder.birth_date,
        ),
    )
    return make_third_gen_card(identity, made.key, made.certificate.der, sd.DEMO_PIN)


async def test_loss_report_refuses_the_next_authentication(
    client: Client, clock: FakeClock, world: Engine, signer: Signer
) -> None:
    hospital = CardTerminal(signer)
    assert (await hospital.authenticate(NEW_ACTIVE)).status == 200
    card_sn = sd.demo_card(SEED, NEW_ACTIVE).card_sn
    hotline = as_(client, clock, "ISS-HOTLINE")
    change = await ok(await hotline.post(f"/v1/issuance/cards/{card_sn}/loss", {}))
    assert change == {
        "card_sn": card_sn,
        "state": "lost",
        "allowed_events": ["replace"],
        "superseded": [],
        "revoked": None,
        "new_application_id": None,
        "new_card_sn": None,
    }
    await assert_problem(await hospital.authenticate(NEW_ACTIVE), 403, "CARD_LOST")

    # Illegal next step: 409 with the current state and what is allowed.
    body = await assert_problem(
        await as_(client, clock, "ISS-CENTRE").post(f"/v1/issuance/cards/{card_sn}/activate", {}),
        409,
        "ILLEGAL_TRANSITION",
    )
    assert body["current_state"] == "lost"
    assert body["event"] == "activate"
    assert body["allowed_transitions"] == ["replace"]

    # Instant replacement at a bank desk: a new card with a new key and certificate.
    centre = as_(client, clock, "ISS-CENTRE")
    replaced = await ok(
        await centre.post(
            f"/v1/issuance/cards/{card_sn}/replace", {"instant": True, "chosen_bank": "BOC"}
        )
    )
    assert replaced["state"] == "revoked"
    new_sn = replaced["new_card_sn"]
    assert new_sn not in (None, card_sn)
    assert DEMO_PERSONALISER.cards[new_sn].cert_sm3
    await assert_problem(await hospital.authenticate(NEW_ACTIVE), 403, "CARD_REVOKED")
    history = await ok(await centre.post("/v1/issuance/history", {"card_sn": new_sn}))
    assert [e["event"] for e in history["events"]] == [
        "apply",
        "collect_info",
        "add_to_batch",
        "produce",
        "hand_over",
    ]
    assert history["events"][0]["actor"] == "CTR0000001/ISS-CENTRE"


async def test_production_makes_keys_outside_the_write_unit_and_resumes_after_a_failure(
    client: Client, clock: FakeClock, world: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Key pairs and certificates are made with no write unit running (the one database
    writer is held for the rows only); a round that fails after its cards were personalised
    leaves nothing half-written, and producing again completes the batch."""
    monkeypatch.setattr("gateway.issuance_api.routes.PRODUCE_CARDS_PER_UNIT", 2)
    bank, centre = as_(client, clock, "ISS-BANK-ICBC"), as_(client, clock, "ISS-CENTRE")
    for n in range(5):
        await ok(
            await bank.post("/v1/issuance/applications", retiree(new_citizen_id(700 + n))), 201
        )
    [batch_id] = (await ok(await centre.post("/v1/issuance/batches", {})))["batch_ids"]

    writing = threading.Event()  # set while any write unit runs (the writer is held)
    made_while_writing: list[bool] = []
    personalise, write = batches.personalise, Database.write

    def watched_personalise(*args: Any, **kwargs: Any) -> Any:
        made_while_writing.append(writing.is_set())
        return personalise(*args, **kwargs)

    async def watched_write(self: Database, unit: Callable[[Session], T], **options: Any) -> T:
        def watched_unit(session: Session) -> T:
            writing.set()
            try:
                return unit(session)
            finally:
                writing.clear()

        return await write(self, watched_unit, **options)

    monkeypatch.setattr(batches, "personalise", watched_personalise)
    monkeypatch.setattr(Database, "write", watched_write)
    # The chip writer breaks on the 4th card: the second round of 2 fails after its cards were
    # personalised and its first card's row was already flushed in the unit.
    chip_write, handed_over = DEMO_PERSONALISER.write, []

    def breaking_write(card: PersonalisedCard) -> None:
        if len(handed_over) == 3:
            raise OSError("personalisation link down")
        handed_over.append(card.card_sn)
        chip_write(card)

    monkeypatch.setattr(DEMO_PERSONALISER, "write", breaking_write)
    await assert_problem(
        await centre.post(f"/v1/issuance/batches/{batch_id}/produce", {}), 500, "INTERNAL"
    )
    report = await ok(await get(centre, f"/v1/issuance/batches/{batch_id}"))
    assert (report["by_stage"], report["produced_at"]) == ({"mailed": 2, "in_batch": 3}, None)
    with Session(world) as session:
        apps = session.execute(
            select(Application.id, Application.card_sn).where(Application.batch_id == batch_id)
        ).all()
        registered = session.scalars(
            select(Card.card_sn).where(Card.card_sn.in_([new_card_sn(a.id) for a in apps]))
        ).all()
    assert sum(a.card_sn is not None for a in apps) == len(registered) == 2

    monkeypatch.setattr(DEMO_PERSONALISER, "write", chip_write)
    report = await ok(await centre.post(f"/v1/issuance/batches/{batch_id}/produce", {}))
    assert report["by_stage"] == {"mailed": 5}
    assert report["produced_at"] is not None
    assert made_while_writing
    assert not any(made_while_writing)
    with Session(world) as session:
        cards = session.execute(
            select(Card.card_sn, Card.cert_sm3)
            .join(Application, Application.card_sn == Card.card_sn)
            .where(Application.batch_id == batch_id)
        ).all()
    assert len(cards) == 5
    for card_sn, cert_sm3 in cards:  # each chip's key is the one the registry trusts
        chip = DEMO_PERSONALISER.cards[card_sn]
        assert cert_sm3 == fingerprint_sm3(chip.certificate.der).hex()


async def test_roles_and_scopes(
    client: Client, clock: FakeClock, world: Engine, signer: Signer
) -> None:
    # A hospital has no issuance role at all.
    await assert_problem(
        await signer.post("/v1/issuance/status", {"application_id": 1}), 403, "ISSUANCE_FORBIDDEN"
    )
    icbc, ccb = as_(client, clock, "ISS-BANK-ICBC"), as_(client, clock, "ISS-BANK-CCB")
    cid = new_citizen_id(1)
    app = await ok(await icbc.post("/v1/issuance/applications", retiree(cid)), 201)
    assert cid not in str(app)
    # sscard.masking's rule (first 3, last 2 kept; the name: first character and one star);
    # issuance used to keep the first 4 and show the name's length.
    assert app["citizen_id_masked"] == cid[:3] + "*" * 13 + cid[-2:]
    assert app["name_masked"] == retiree(cid)["applicant"]["name"][:1] + "*"
    # The other bank: as if it did not exist, by id and by citizen id.
    await assert_problem(
        await ccb.post("/v1/issuance/status", {"application_id": app["application_id"]}),
        404,
        "APPLICATION_NOT_FOUND",
    )
    body = await assert_problem(
        await ccb.post("/v1/issuance/status", {"citizen_id": cid}), 404, "APPLICATION_NOT_FOUND"
    )
    assert cid not in str(body)
    # The hotline sees it; it cannot apply. An employer cannot take counter applications.
    hotline = as_(client, clock, "ISS-HOTLINE")
    assert (await ok(await hotline.post("/v1/issuance/status", {"citizen_id": cid})))[
        "applications"
    ]
    await assert_problem(
        await hotline.post("/v1/issuance/applications", retiree(new_citizen_id(2))),
        403,
        "ISSUANCE_FORBIDDEN",
    )
    await assert_problem(
        await as_(client, clock, "ISS-EMPLOYER").post(
            "/v1/issuance/applications", retiree(new_citizen_id(3))
        ),
        403,
        "ISSUANCE_FORBIDDEN",
    )
    await assert_problem(await icbc.post("/v1/issuance/batches", {}), 403, "ISSUANCE_FORBIDDEN")
    # Domain refusals keep their own codes.
    await assert_problem(
        await icbc.post("/v1/issuance/applications", retiree(cid)), 409, "APPLICATION_OPEN"
    )
    clock.now_s = dt.datetime(2019, 7, 2, tzinfo=dt.UTC).timestamp()
    await assert_problem(
        await icbc.post("/v1/issuance/applications", retiree(new_citizen_id(4))),
        422,
        "COHORT_WINDOW_CLOSED",
    )


CSV_HEADER: Final = (
    "citizen_id,name,birth_date,gender,area_code,hukou_shanghai,insured_in_shanghai,"
    "salary_banks,bank,photo_source,backup_centre"
)


def _row(citizen_id: str, insured: str = "1") -> str:
    return f"{citizen_id},员工,1950-01-01,1,310104,0,{insured},ICBC,,on_site,C31010400001"


async def test_employer_csv_upload(client: Client, clock: FakeClock, world: Engine) -> None:
    clock.now_s = dt.datetime(2019, 8, 1, 2, tzinfo=dt.UTC).timestamp()
    employer = as_(client, clock, "ISS-EMPLOYER")
    good = new_citizen_id(11)
    csv_text = "\n".join(
        [CSV_HEADER, _row(good), _row("31010419500101999Z"), _row(new_citizen_id(12), "0"), ""]
    )
    result = await ok(
        await employer.post(
            "/v1/issuance/employer-batches", csv_text.encode(), content_type="text/csv"
        )
    )
    assert (result["accepted"], result["rejected"]) == (1, 2)
    assert [(r["row"], r["accepted"], r["code"]) for r in result["rows"]] == [
        (1, True, None),
        (2, False, "ROW_INVALID"),
        (3, False, "NOT_ELIGIBLE"),
    ]
    await assert_problem(
        await employer.post("/v1/issuance/employer-batches", csv_text.encode()),
        415,
        "UNSUPPORTED_MEDIA_TYPE",
    )
    await assert_problem(
        await employer.post(
            "/v1/issuance/employer-batches", b"a,b\n1,2\n", content_type="text/csv"
        ),
        422,
        "UPLOAD_INVALID",
    )
    # The employer sees its employee; the bank of the card too.
    status = await ok(await employer.post("/v1/issuance/status", {"citizen_id": good}))
    assert status["applications"][0]["channel"] == "employer_batch"
    await ok(
        await as_(client, clock, "ISS-BANK-ICBC").post("/v1/issuance/status", {"citizen_id": good})
    )


async def test_daily_stats_and_openapi(client: Client, clock: FakeClock, world: Engine) -> None:
    await issue_and_deliver(client, clock, retiree(new_citizen_id(21)))
    hotline = as_(client, clock, "ISS-HOTLINE")
    stats = await ok(await get(hotline, f"/v1/issuance/stats?date={DAY.isoformat()}"))
    assert stats["applications"] == [{"channel": "bank_branch", "cohort": "retiree", "count": 1}]
    assert stats["cards"]["produced"] == stats["cards"]["delivered"] == 1
    for bad in ("yesterday", DAY.strftime("%Y%m%d")):  # the basic ISO form too, as elsewhere
        refused = await get(hotline, f"/v1/issuance/stats?date={bad}")
        problem = await assert_problem(refused, 422, "VALIDATION_FAILED")
        assert [e["field"] for e in problem["errors"]] == ["date"]
    document = await (await client.get("/openapi.json")).json()
    paths = [p for p in document["paths"] if p.startswith("/v1/issuance/")]
    assert len(paths) == 12
    responses = document["paths"]["/v1/issuance/cards/{card_sn}/activate"]["post"]["responses"]
    assert "409" in responses


async def test_times_are_utc_on_every_backend(
    client: Client, clock: FakeClock, world: Engine
) -> None:
    bank = as_(client, clock, "ISS-BANK-ICBC")
    app = await ok(await bank.post("/v1/issuance/applications", retiree(new_citizen_id(31))), 201)
    assert dt.datetime.fromisoformat(app["applied_at"]) == dt.datetime.fromtimestamp(
        clock.now_s, dt.UTC
    )
    history = await ok(
        await as_(client, clock, "ISS-HOTLINE").post(
            "/v1/issuance/history", {"citizen_id": new_citizen_id(31)}
        )
    )
    assert all(dt.datetime.fromisoformat(e["at"]).tzinfo is not None for e in history["events"])


async def test_a_csv_of_5000_rows_is_taken_and_a_larger_body_refused_whole(
    client: Client, clock: FakeClock, world: Engine
) -> None:
    """The CSV route has its own body limit (4 MiB), far above the 64 KiB JSON limit."""
    clock.now_s = dt.datetime(2019, 8, 1, 2, tzinfo=dt.UTC).timestamp()
    employer = as_(client, clock, "ISS-EMPLOYER")
    rows = [_row(new_citizen_id(n)) for n in range(5000)]  # ~370 KB
    body = "\n".join([CSV_HEADER, *rows]).encode()
    assert len(body) > 64 * 1024
    result = await ok(
        await employer.post("/v1/issuance/employer-batches", body, content_type="text/csv")
    )
    assert (result["accepted"], result["rejected"]) == (5000, 0)
    assert [r["row"] for r in result["rows"]] == list(range(1, 5001))
    assert len({r["application_id"] for r in result["rows"]}) == 5000

    def stored() -> int:
        with Session(world) as session:
            return int(session.execute(text("SELECT count(*) FROM applications")).scalar_one())

    before = stored()
    # Over the route's limit: refused before anything is parsed, nothing stored.
    huge = "\n".join([CSV_HEADER, *[_row(new_citizen_id(5000 + n)) for n in range(3000)]])
    padded = (huge + "\n" + "#" * (4 * 1024 * 1024)).encode()
    path = "/v1/issuance/employer-batches"

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(padded), 256 * 1024):
            yield padded[start : start + 256 * 1024]

    # With Content-Length (refused before reading), and chunked (refused while reading).
    for data in (io.BytesIO(padded), chunks()):
        headers = {**employer.headers("POST", path, padded), "Content-Type": "text/csv"}
        response = await client.post(path, data=data, headers=headers)
        await assert_problem(response, 413, "BODY_TOO_LARGE")
    assert stored() == before
    # Every other route keeps the gateway's own limit.
    await assert_problem(
        await employer.post("/v1/issuance/status", b"{" + b" " * (64 * 1024) + b"}"),
        413,
        "BODY_TOO_LARGE",
    )


async def test_personal_data_in_issuance_answers_is_masked(
    client: Client, clock: FakeClock, world: Engine
) -> None:
    """A citizen id, a name, a phone number and a card number planted in uploads and queries
    come back only masked (sscard.masking) in every issuance answer: views, row results,
    whole-file refusals and not-found problems."""
    clock.now_s = dt.datetime(2019, 8, 1, 2, tzinfo=dt.UTC).timestamp()
    employer, hotline = as_(client, clock, "ISS-EMPLOYER"), as_(client, clock, "ISS-HOTLINE")
    cid, name, phone, card_no = new_citizen_id(61), "欧阳娜娜", "13912345678", "A12345678"
    planted = (cid, name, phone, card_no, "阳娜")
    path = "/v1/issuance/employer-batches"

    def row(name: str, *extra: str) -> str:
        return ",".join([cid, name, *_row(cid).split(",")[2:], *extra])

    answers: list[str] = []

    async def answer(response: Any, status: int) -> Any:
        assert response.status == status, await response.text()
        answers.append(await response.text())
        return await response.json()

    # A file without its header row: its first row is taken for the header, and refused.
    headless = "\n".join([row(name, phone, card_no), row(name)]).encode()
    refused = await answer(await employer.post(path, headless, content_type="text/csv"), 422)
    assert f"unknown columns {list(range(1, 14))}" in refused["detail"]  # by position only
    # The holder's row, the same citizen id under another name, a row with extra fields.
    csv_text = "\n".join([CSV_HEADER, row(name), row("欧阳冒名"), row(name, phone, card_no)])
    uploaded = await employer.post(path, csv_text.encode(), content_type="text/csv")
    rows = (await answer(uploaded, 200))["rows"]
    assert [(r["accepted"], r["code"]) for r in rows] == [
        (True, None),
        (False, "HOLDER_MISMATCH"),
        (False, "ROW_INVALID"),
    ]
    assert mask_citizen_id(cid) in rows[1]["reason"]
    [view] = (await answer(await employer.post("/v1/issuance/status", {"citizen_id": cid}), 200))[
        "applications"
    ]
    assert (view["citizen_id_masked"], view["name_masked"]) == (mask_citizen_id(cid), "欧*")
    other = new_citizen_id(62)
    missing = await answer(await hotline.post("/v1/issuance/history", {"citizen_id": other}), 404)
    assert mask_citizen_id(other) in missing["detail"]
    await answer(await hotline.post("/v1/issuance/history", {"citizen_id": cid}), 200)
    for body in answers:
        for raw in (*planted, other):
            assert raw not in body, f"{raw!r} leaked"


@pytest.mark.parametrize("raw", ["%C2%B9", "%D9%A3", "1" * 13])
async def test_a_batch_id_is_ascii_digits_only(
    world: Engine, client: Client, clock: FakeClock, raw: str
) -> None:
    # "¹" passed str.isdigit and then made int() raise (a 500); "٣" was read as batch 3.
    centre = as_(client, clock, "ISS-CENTRE")
    await assert_problem(await get(centre, f"/v1/issuance/batches/{raw}"), 422, "VALIDATION_FAILED")
    path = f"/v1/issuance/batches/{raw}/produce"
    await assert_problem(await centre.post(path, {}), 422, "VALIDATION_FAILED")


@pytest.mark.parametrize("application_id", [2**63, 10**77])
async def test_an_application_id_no_column_can_hold_is_422_not_500(
    client: Client, clock: FakeClock, world: Engine, application_id: int
) -> None:
    """schemathesis sent a 77-digit application_id: the database refused it with a 500."""
    icbc = as_(client, clock, "ISS-BANK-ICBC")
    response = await icbc.post("/v1/issuance/status", {"application_id": application_id})
    await assert_problem(response, 422, "VALIDATION_FAILED")
