"""The issuance API's request and response models (pydantic: the one schema library; they are
also what /openapi.json shows).

Citizen ids travel in bodies, never in paths or query strings (which reach access logs), and
come back masked (``citizen_id_masked``, ``name_masked``).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from gateway.routing import RequestModel, Text, exactly_one_of
from issuance import applications, views
from issuance.programme import Channel, PhotoSource

__all__ = [
    "ApplicantIn",
    "ApplicationCount",
    "ApplicationIn",
    "ApplicationOut",
    "BatchReportOut",
    "BatchesOut",
    "CardChangeOut",
    "CardSnHex",
    "CitizenId",
    "Code",
    "DeliveryIn",
    "EmptyIn",
    "HistoryEntryOut",
    "HistoryIn",
    "HistoryOut",
    "ReplaceIn",
    "RowResultOut",
    "StatsOut",
    "StatusIn",
    "StatusOut",
    "UploadOut",
]


def _citizen_id(value: str) -> str:
    value = value.upper()
    if not applications.valid_citizen_id(value):
        raise ValueError("check digit does not match")
    return value


CitizenId = Annotated[
    str,
    Field(pattern=r"^[0-9]{17}[0-9Xx]$", description="社会保障号码 (18 characters)."),
    AfterValidator(_citizen_id),
]
CardSnHex = Annotated[str, Field(pattern=r"^[0-9A-Fa-f]{32}$", description="卡识别码.")]
Code = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")]


class ApplicantIn(RequestModel):
    citizen_id: CitizenId
    name: Text = Field(min_length=1, max_length=30)
    birth_date: dt.date
    gender: Literal["1", "2"]
    area_code: str = Field(pattern=r"^[0-9]{6}$", description="District of registration.")
    hukou_shanghai: bool
    insured_in_shanghai: bool


class ApplicationIn(RequestModel):
    applicant: ApplicantIn
    cohort: Literal["retiree", "employee", "pupil", "first_card"]
    channel: Channel
    photo_source: PhotoSource
    backup_centre: Code = Field(description="Institution code of the backup community centre.")
    pension_bank: Code | None = None
    salary_banks: list[Code] = Field(default_factory=list, max_length=20)
    chosen_bank: Code | None = None


class ApplicationOut(BaseModel):
    application_id: int
    citizen_id_masked: str
    name_masked: str
    cohort: str
    channel: str
    bank_code: str
    stage: str
    allowed_events: list[str]
    card_sn: str | None
    batch_id: int | None
    replaces_card_sn: str | None
    applied_at: dt.datetime

    @classmethod
    def of(cls, view: views.ApplicationView) -> Self:
        return cls.model_validate(view, from_attributes=True)


class StatusIn(RequestModel):
    model_config = ConfigDict(
        json_schema_extra=exactly_one_of(
            ("application_id", "citizen_id"), ("application_id",), ("citizen_id",)
        )
    )

    # Bounded: a larger number is no application id, and beyond 2**63 - 1 no database column
    # can even hold it (schemathesis sent a 77-digit one: a 500).
    application_id: int | None = Field(default=None, ge=1, le=2**63 - 1)
    citizen_id: CitizenId | None = None

    @model_validator(mode="after")
    def _one_key(self) -> Self:
        if (self.application_id is None) == (self.citizen_id is None):
            raise ValueError("give exactly one of application_id, citizen_id")
        return self


class StatusOut(BaseModel):
    applications: list[ApplicationOut]


class HistoryIn(RequestModel):
    model_config = ConfigDict(
        json_schema_extra=exactly_one_of(("card_sn", "citizen_id"), ("card_sn",), ("citizen_id",))
    )

    card_sn: CardSnHex | None = None
    citizen_id: CitizenId | None = None

    @model_validator(mode="after")
    def _one_key(self) -> Self:
        if (self.card_sn is None) == (self.citizen_id is None):
            raise ValueError("give exactly one of card_sn, citizen_id")
        return self


class HistoryEntryOut(BaseModel):
    at: dt.datetime
    event: str
    from_stage: str | None
    to_stage: str
    card_sn: str | None
    application_id: int | None
    actor: str
    channel: str | None
    note: str | None


class HistoryOut(BaseModel):
    events: list[HistoryEntryOut]


class RowResultOut(BaseModel):
    row: int
    accepted: bool
    application_id: int | None = None
    code: str | None = None
    reason: str | None = None


class UploadOut(BaseModel):
    accepted: int
    rejected: int
    rows: list[RowResultOut]


class DeliveryIn(RequestModel):
    outcome: Literal["delivered", "failed", "at_backup_centre", "picked_up"]


class EmptyIn(RequestModel):
    pass


class ReplaceIn(RequestModel):
    instant: bool = Field(description="即到即补: make and hand over the new card now.")
    backup_centre: Code | None = None
    chosen_bank: Code | None = Field(
        default=None, description="Only when the old card has no bank on record (legacy)."
    )


class CardChangeOut(BaseModel):
    card_sn: str
    state: str
    allowed_events: list[str]
    superseded: list[str] = Field(default_factory=list)
    revoked: str | None = None
    new_application_id: int | None = None
    new_card_sn: str | None = None


class BatchesOut(BaseModel):
    batch_ids: list[int]


class BatchReportOut(BaseModel):
    batch_id: int
    channel: str
    collected_on: dt.date
    size: int
    by_stage: dict[str, int]
    by_cohort: dict[str, int]
    by_bank: dict[str, int]
    produced_at: dt.datetime | None


class ApplicationCount(BaseModel):
    channel: str
    cohort: str
    count: int


class StatsOut(BaseModel):
    day: dt.date
    applications: list[ApplicationCount]
    applications_counter: int
    applications_online: int
    cards: dict[str, int]
    cards_cumulative: dict[str, int]
