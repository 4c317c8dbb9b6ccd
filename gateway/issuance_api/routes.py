"""The issuance routes (申领、制卡、发放、开通、挂失、补换、热线查询、统计): thin handlers (parse,
call the :mod:`issuance` use case, render) and :data:`ISSUANCE_ROUTES`, appended to
gateway.routes.ROUTES (router and OpenAPI follow). The request and response models are in
:mod:`gateway.issuance_api.models`; who acts, when, and the shape of a write keyed by the card
in the path are in :mod:`gateway.issuance_api.calls`.

Citizen ids travel in bodies, never in paths or query strings (which reach access logs), and
come back masked. An event the card's current state does not allow is a 409
ILLEGAL_TRANSITION whose problem+json carries ``current_state``, ``event`` and
``allowed_transitions``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, Final

from aiohttp import web
from pydantic import BaseModel
from sqlalchemy.orm import Session

from gateway.errors import ErrorCode, GatewayError
from gateway.issuance_api import calls
from gateway.issuance_api.models import (
    ApplicationCount,
    ApplicationIn,
    ApplicationOut,
    BatchesOut,
    BatchReportOut,
    CardChangeOut,
    DeliveryIn,
    EmptyIn,
    HistoryEntryOut,
    HistoryIn,
    HistoryOut,
    ReplaceIn,
    RowResultOut,
    StatsOut,
    StatusIn,
    StatusOut,
    UploadOut,
)
from gateway.query import query_date
from gateway.routing import Call, ErrorList, RequestModel, Route
from gateway.state import DATABASE
from issuance import applications, batches, card_changes, queries, uploads
from issuance.access import Agent
from issuance.errors import (
    ApplicationRefused,
    IllegalTransition,
    IssuanceForbidden,
    IssuedCardNotFound,
)
from issuance.production import InMemoryPersonaliser

__all__ = ["DEMO_PERSONALISER", "ISSUANCE_ROUTES"]

# DEMO ONLY: where the demo world's new cards' keys go (a real deployment writes chips through
# the card bureau's personalisation system; see issuance.production.Personaliser).
DEMO_PERSONALISER: Final = InMemoryPersonaliser(limit=10_000)
# The CSV route's own body limit (gateway.routing: Route.max_body_bytes), above the gateway's
# JSON limit: 5,000 rows of ~100 bytes need ~0.5 MiB; rows beyond MAX_UPLOAD_ROWS are refused
# as a whole anyway (UPLOAD_INVALID), so a few MiB bound the work without cutting real files.
MAX_UPLOAD_BYTES: Final = 4 * 1024 * 1024
CSV_CONTENT_TYPES: Final = ("text/csv", "application/csv")
# Rows per transaction of an upload, cards per transaction of a production run: every worker
# shares ONE database writer (gateway.db), and settlements must not wait behind a 5,000-row file
# or a 10,000-card batch. ~2.5 ms of CPU per row: ~0.1 s of writer time per unit of 50 instead
# of minutes; a commit costs ~1 ms. A card's key pair and certificate (~2 ms of CPU) are made
# before its unit, in a worker thread (see produce), and the unit writes its rows in a few
# statements: a unit of 25 cards holds the writer ~5 ms (measured; ~60 ms with the keys made
# inside it, ~17 ms with them outside but the rows written one ORM object at a time).
UPLOAD_ROWS_PER_UNIT: Final = 50
PRODUCE_CARDS_PER_UNIT: Final = 25
BATCH_APPLICATIONS_PER_UNIT: Final = 1_000  # ~0.03 ms each: grouping is cheap per row


# --- handlers ----------------------------------------------------------------------------------


async def apply(call: Call[ApplicationIn]) -> ApplicationOut:
    agent = await calls.agent(call)
    body = call.body
    a = body.applicant
    request = applications.ApplicationRequest(
        applicant=applications.Applicant(
            citizen_id=a.citizen_id.upper(),
            name=a.name,
            birth_date=a.birth_date,
            gender=a.gender,
            area_code=a.area_code,
            hukou_shanghai=a.hukou_shanghai,
            insured_in_shanghai=a.insured_in_shanghai,
        ),
        cohort=body.cohort,
        channel=body.channel,
        photo_source=body.photo_source,
        backup_centre=body.backup_centre,
        pension_bank=body.pension_bank,
        salary_banks=tuple(body.salary_banks),
        chosen_bank=body.chosen_bank,
    )
    now, programme = calls.now(call), calls.programme(call)
    view = await call.app[DATABASE].write(
        lambda s: applications.apply(s, programme, agent, request, now)
    )
    return ApplicationOut.of(view)


async def upload(call: Call[None]) -> UploadOut:
    request = call.request
    if request.content_type not in CSV_CONTENT_TYPES:
        raise GatewayError(ErrorCode.UNSUPPORTED_MEDIA_TYPE, "Content-Type must be text/csv")
    raw = await request.read()  # already read by the pipeline, under MAX_UPLOAD_BYTES
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise GatewayError(ErrorCode.UPLOAD_INVALID, "CSV must be UTF-8") from None
    if "\x00" in text:
        raise GatewayError(ErrorCode.UPLOAD_INVALID, "CSV must not contain NUL characters")
    agent, now, programme = await calls.agent(call), calls.now(call), calls.programme(call)
    uploads.require_uploader(agent)
    rows = uploads.parse_upload(text)  # the file as a whole, before anything is written
    results: list[uploads.RowResult] = []
    for start in range(0, len(rows), UPLOAD_ROWS_PER_UNIT):
        part = rows[start : start + UPLOAD_ROWS_PER_UNIT]
        results += await call.app[DATABASE].write(
            partial(
                uploads.upload_rows,
                programme=programme,
                agent=agent,
                rows=part,
                now=now,
                first_row=start + 1,
            )
        )
    accepted = sum(r.accepted for r in results)
    return UploadOut(
        accepted=accepted,
        rejected=len(results) - accepted,
        rows=[RowResultOut.model_validate(r, from_attributes=True) for r in results],
    )


async def status(call: Call[StatusIn]) -> StatusOut:
    agent = await calls.agent(call)
    body = call.body
    views = await call.app[DATABASE].read(
        lambda s: queries.status(
            s, agent, application_id=body.application_id, citizen_id=body.citizen_id
        )
    )
    return StatusOut(applications=[ApplicationOut.of(v) for v in views])


async def delivery(call: Call[DeliveryIn]) -> ApplicationOut | web.Response:
    outcome = call.body.outcome
    return await calls.card_write(
        call,
        calls.card_event(
            lambda s, agent, sn, now: card_changes.record_delivery(s, agent, sn, outcome, now)
        ),
        ApplicationOut.of,
    )


def _change_out(change: card_changes.CardChange) -> CardChangeOut:
    return CardChangeOut.model_validate(change, from_attributes=True)


async def activate(call: Call[EmptyIn]) -> CardChangeOut | web.Response:
    return await calls.card_write(call, calls.card_event(card_changes.activate), _change_out)


async def report_loss(call: Call[EmptyIn]) -> CardChangeOut | web.Response:
    return await calls.card_write(call, calls.card_event(card_changes.report_loss), _change_out)


async def replace(call: Call[ReplaceIn]) -> CardChangeOut | web.Response:
    body = call.body

    def unit_for(
        agent: Agent, sn: str, now: dt.datetime
    ) -> Callable[[Session], card_changes.CardChange]:
        # Only now, after the access check: an institution without the role gets 403, not
        # word of whether cards can be made.
        ca = calls.issuing_ca(call) if body.instant else None
        return partial(
            card_changes.replace,
            agent=agent,
            card_sn=sn,
            now=now,
            instant=body.instant,
            backup_centre=body.backup_centre,
            chosen_bank=body.chosen_bank,
            programme=calls.programme(call),
            ca=ca,
            personaliser=DEMO_PERSONALISER,
        )

    return await calls.card_write(call, unit_for, _change_out)


async def card_history(call: Call[HistoryIn]) -> HistoryOut:
    agent, body = await calls.agent(call), call.body
    entries = await call.app[DATABASE].read(
        lambda s: queries.history(
            s,
            agent,
            card_sn=None if body.card_sn is None else body.card_sn.upper(),
            citizen_id=body.citizen_id,
        )
    )
    return HistoryOut(
        events=[HistoryEntryOut.model_validate(e, from_attributes=True) for e in entries]
    )


async def stats(call: Call[None]) -> StatsOut:
    day = query_date(call, "date")
    agent = await calls.agent(call)
    result = await call.app[DATABASE].read(lambda s: queries.daily_stats(s, agent, day))
    return StatsOut(
        day=result.day,
        applications=[
            ApplicationCount(channel=c, cohort=k, count=n) for c, k, n in result.applications
        ],
        applications_counter=result.applications_counter,
        applications_online=result.applications_online,
        cards=result.cards,
        cards_cumulative=result.cards_cumulative,
    )


async def create_batches(call: Call[EmptyIn]) -> BatchesOut:
    agent, now = await calls.agent(call), calls.now(call)
    limit = BATCH_APPLICATIONS_PER_UNIT
    unit = partial(batches.fill_batches, agent=agent, now=now, limit=limit)
    ids: list[int] = []
    while True:  # each unit moves `limit` applications, or fewer when none are left: this ends
        touched, moved = await call.app[DATABASE].write(unit)
        ids += [batch_id for batch_id in touched if batch_id not in ids]
        if moved < limit:
            return BatchesOut(batch_ids=ids)


async def produce(call: Call[EmptyIn]) -> BatchReportOut | web.Response:
    agent, now = await calls.agent(call), calls.now(call)
    batch_id, ca = calls.batch_id(call), calls.issuing_ca(call)
    find = partial(
        batches.cards_to_make, agent=agent, batch_id=batch_id, limit=PRODUCE_CARDS_PER_UNIT
    )
    while True:  # each round makes its cards, or finds none left: this ends
        ids = await call.app[DATABASE].read(find)
        # Key pairs and certificates (~2 ms of CPU a card) in a worker thread, before the write
        # unit: the one database writer is held for the rows only. A failure from here on
        # writes nothing; the next round (or call) makes the same cards anew.
        made = await asyncio.to_thread(batches.personalise_cards, ids, ca, now)
        result = await calls.write(
            call,
            partial(
                batches.record_made_cards,
                agent=agent,
                batch_id=batch_id,
                made=made,
                personaliser=DEMO_PERSONALISER,
                now=now,
            ),
        )
        if isinstance(result, web.Response):
            return result
        if not result.by_stage.get("in_batch"):
            return BatchReportOut.model_validate(result, from_attributes=True)


async def batch_report(call: Call[None]) -> BatchReportOut:
    agent, batch_id = await calls.agent(call), calls.batch_id(call)
    report = await call.app[DATABASE].read(lambda s: batches.batch_report(s, agent, batch_id))
    return BatchReportOut.model_validate(report, from_attributes=True)


# --- the table -----------------------------------------------------------------------------------

# By the domain errors the use cases raise (gateway.errors.codes_of: each class stands for
# its registered code and its subclasses'), so a new refusal reaches its routes unedited.
_ACCESS: Final[ErrorList] = (IssuanceForbidden,)
_CARD: Final[ErrorList] = (
    *_ACCESS,
    IssuedCardNotFound,
    IllegalTransition,
    ErrorCode.VALIDATION_FAILED,
)
_REFUSED: Final[ErrorList] = (ApplicationRefused,)
_TAGS: Final = ("issuance",)


def _card_route(
    step: str,
    *,
    operation_id: str,
    summary: str,
    handler: Callable[[Call[Any]], Awaitable[BaseModel | web.Response]],
    request_model: type[RequestModel],
    response_model: type[BaseModel] = CardChangeOut,
    description: str = "",
    errors: ErrorList = (),
) -> Route:
    """``POST /v1/issuance/cards/{card_sn}/<step>``, a handler of the :func:`_card_write`
    shape: it can answer every error of that shape (_CARD) plus the step's own."""
    return Route(
        "POST",
        f"/v1/issuance/cards/{{card_sn}}/{step}",
        operation_id=operation_id,
        summary=summary,
        description=description,
        handler=handler,
        request_model=request_model,
        response_model=response_model,
        tags=_TAGS,
        errors=(*_CARD, *errors),
    )


ISSUANCE_ROUTES: Final[tuple[Route, ...]] = (
    Route(
        "POST",
        "/v1/issuance/applications",
        operation_id="issuance_apply",
        summary="Take an application for a new card (申领).",
        description="Eligibility, cohort window, channel, photo source and the bank rule are "
        "checked against the programme (issuance/config/programme_2019.toml). Information is "
        "collected with the application, so it is answered in stage info_collected.",
        handler=apply,
        request_model=ApplicationIn,
        response_model=ApplicationOut,
        response_status=201,
        tags=_TAGS,
        errors=(*_ACCESS, *_REFUSED),
    ),
    Route(
        "POST",
        "/v1/issuance/employer-batches",
        operation_id="issuance_employer_batch",
        summary="An employer's CSV of employees (text/csv, UTF-8): one result per row.",
        description="Header: " + ",".join(uploads.UPLOAD_COLUMNS) + f". At most "
        f"{uploads.MAX_UPLOAD_ROWS} rows and {MAX_UPLOAD_BYTES} bytes (this route's own body "
        "limit; a larger body is 413 BODY_TOO_LARGE and nothing is stored). Each row is "
        "applied whole or not at all; a refused row names its reason.",
        handler=upload,
        max_body_bytes=MAX_UPLOAD_BYTES,
        response_model=UploadOut,
        tags=_TAGS,
        errors=(
            *_ACCESS,
            ErrorCode.UNSUPPORTED_MEDIA_TYPE,  # not text/csv (the handler checks)
            ErrorCode.UPLOAD_INVALID,
            ErrorCode.CHANNEL_NOT_ALLOWED,
        ),
    ),
    Route(
        "POST",
        "/v1/issuance/status",
        operation_id="issuance_status",
        summary="Applications by application id or citizen id (in the body, never the URL).",
        handler=status,
        request_model=StatusIn,
        response_model=StatusOut,
        tags=_TAGS,
        errors=(*_ACCESS, ErrorCode.APPLICATION_NOT_FOUND),
    ),
    _card_route(
        "delivery",
        operation_id="issuance_delivery",
        summary="Record the post's outcome, or the pick-up at the backup community centre.",
        handler=delivery,
        request_model=DeliveryIn,
        response_model=ApplicationOut,
        errors=(ErrorCode.APPLICATION_NOT_FOUND,),
    ),
    _card_route(
        "activate",
        operation_id="issuance_activate",
        summary="Activate (开通): the holder's legacy and older cards are voided atomically.",
        handler=activate,
        request_model=EmptyIn,
    ),
    _card_route(
        "loss",
        operation_id="issuance_report_loss",
        summary="Report the card lost (挂失): refused by card authentication from the next call.",
        handler=report_loss,
        request_model=EmptyIn,
    ),
    _card_route(
        "replace",
        operation_id="issuance_replace",
        summary="Replace (补换) the card; instant (即到即补) makes the new card at the desk.",
        handler=replace,
        request_model=ReplaceIn,
        description="The old card is revoked. The new card gets a new SM2 key pair and "
        "certificate from the issuing CA (now for instant replacement, else in the next batch).",
        errors=(
            ErrorCode.APPLICATION_OPEN,
            ErrorCode.BANK_CHOICE_INVALID,
            ErrorCode.ISSUING_CA_UNAVAILABLE,
        ),
    ),
    Route(
        "POST",
        "/v1/issuance/history",
        operation_id="issuance_history",
        summary="Every transition of a card, or of a citizen's cards (hotline 962222).",
        handler=card_history,
        request_model=HistoryIn,
        response_model=HistoryOut,
        tags=_TAGS,
        errors=(*_ACCESS, ErrorCode.ISSUANCE_CARD_NOT_FOUND, ErrorCode.APPLICATION_NOT_FOUND),
    ),
    Route(
        "GET",
        "/v1/issuance/stats",
        operation_id="issuance_daily_stats",
        summary="Daily statistics (?date=YYYY-MM-DD, Shanghai day): applications by channel "
        "and cohort; cards produced, mailed, delivered, activated, replaced, lost.",
        handler=stats,
        response_model=StatsOut,
        tags=_TAGS,
        errors=(*_ACCESS, ErrorCode.VALIDATION_FAILED),
    ),
    Route(
        "POST",
        "/v1/issuance/batches",
        operation_id="issuance_create_batches",
        summary="Group collected applications into production batches (channel, date).",
        description="At most 10,000 a batch; a day's batch is filled until its production "
        "starts, then another opens. Answers the batches filled by this call.",
        handler=create_batches,
        request_model=EmptyIn,
        response_model=BatchesOut,
        tags=_TAGS,
        errors=_ACCESS,
    ),
    Route(
        "POST",
        "/v1/issuance/batches/{batch_id}/produce",
        operation_id="issuance_produce_batch",
        summary="Make and post every card of a batch; answers the batch report.",
        handler=produce,
        request_model=EmptyIn,
        response_model=BatchReportOut,
        tags=_TAGS,
        errors=(
            *_ACCESS,
            ErrorCode.BATCH_NOT_FOUND,
            ErrorCode.ISSUING_CA_UNAVAILABLE,
            ErrorCode.ILLEGAL_TRANSITION,
            ErrorCode.VALIDATION_FAILED,
        ),
    ),
    Route(
        "GET",
        "/v1/issuance/batches/{batch_id}",
        operation_id="issuance_batch_report",
        summary="A production batch's report.",
        handler=batch_report,
        response_model=BatchReportOut,
        tags=_TAGS,
        errors=(*_ACCESS, ErrorCode.BATCH_NOT_FOUND, ErrorCode.VALIDATION_FAILED),
    ),
)
