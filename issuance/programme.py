"""The change-over programme as configuration data: channels, cohorts with their windows, photo
sources and the 11 service banks (``issuance/config/programme_2019.toml``), and the pure rules
that use it: eligibility, window, channel, photo source and the bank choice rule.

Nothing here touches a database; every function is deterministic in its inputs.
"""

from __future__ import annotations

import datetime as dt
import functools
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

from issuance.errors import (
    BankChoiceInvalid,
    ChannelNotAllowed,
    NotEligible,
    PhotoNotAllowed,
    WindowClosed,
)

__all__ = [
    "DEFAULT_PROGRAMME_FILE",
    "BankRule",
    "Channel",
    "Cohort",
    "PhotoSource",
    "Programme",
    "choose_bank",
    "default_programme",
    "load_programme",
]

DEFAULT_PROGRAMME_FILE: Final = Path(__file__).resolve().parent / "config" / "programme_2019.toml"


class Channel(StrEnum):
    BANK_BRANCH = "bank_branch"
    EMPLOYER_BATCH = "employer_batch"
    ONLINE_WEB = "online_web"
    ONLINE_WECHAT = "online_wechat"
    ONLINE_APP = "online_app"
    COMMUNITY_CENTRE = "community_centre"


ONLINE_CHANNELS: Final = frozenset({Channel.ONLINE_WEB, Channel.ONLINE_WECHAT, Channel.ONLINE_APP})


class PhotoSource(StrEnum):
    ON_SITE = "on_site"
    ID_CARD_SHARED = "id_card_shared"
    E_STUDENT_CARD = "e_student_card"


class BankRule(StrEnum):
    PENSION = "pension"
    SALARY = "salary"
    CHOSEN = "chosen"


@dataclass(frozen=True, slots=True)
class Cohort:
    code: str
    label: str
    window: tuple[dt.date, dt.date] | None
    channels: frozenset[Channel]
    bank_rule: BankRule
    # None: whatever the channel allows.
    photo_sources: frozenset[PhotoSource] | None


@dataclass(frozen=True, slots=True)
class Programme:
    name: str
    banks: Mapping[str, str]  # code -> name, the 11 service banks
    channel_photo_sources: Mapping[Channel, frozenset[PhotoSource]]
    cohorts: Mapping[str, Cohort]

    def cohort(self, code: str) -> Cohort:
        try:
            return self.cohorts[code]
        except KeyError:
            raise ChannelNotAllowed(f"unknown cohort {code!r}") from None

    def check_application(
        self,
        *,
        cohort: str,
        channel: Channel,
        photo_source: PhotoSource,
        hukou_shanghai: bool,
        insured_in_shanghai: bool,
        on: dt.date,
    ) -> Cohort:
        """Raise the first reason the application cannot be accepted; return its cohort."""
        if not (hukou_shanghai or insured_in_shanghai):
            raise NotEligible(
                "only Shanghai household-registered people and people insured in Shanghai may apply"
            )
        spec = self.cohort(cohort)
        if channel not in spec.channels:
            raise ChannelNotAllowed(
                f"{spec.code} apply through {', '.join(sorted(spec.channels))}, not {channel}"
            )
        if spec.window is not None and not spec.window[0] <= on <= spec.window[1]:
            raise WindowClosed(
                f"the {spec.code} window is {spec.window[0]} .. {spec.window[1]}; "
                "a community centre takes first cards and replacements all year"
            )
        allowed = self.channel_photo_sources[channel]
        if spec.photo_sources is not None:
            allowed = allowed & spec.photo_sources
        if photo_source not in allowed:
            raise PhotoNotAllowed(
                f"photo source {photo_source} is not available for {spec.code} via {channel}"
            )
        return spec


def choose_bank(
    programme: Programme,
    rule: BankRule,
    *,
    pension_bank: str | None = None,
    salary_banks: Sequence[str] = (),
    chosen_bank: str | None = None,
) -> str:
    """The seed's bank rule. Bank codes outside the 11 are allowed as pension/salary banks
    (that is the point of the rule); the result is always one of the 11."""
    service = programme.banks

    def pick(reason: str) -> str:
        if chosen_bank is None or chosen_bank not in service:
            raise BankChoiceInvalid(f"{reason}: choose one of the 11 service banks")
        return chosen_bank

    if rule is BankRule.PENSION:
        if pension_bank is not None and pension_bank in service:
            if chosen_bank not in (None, pension_bank):
                raise BankChoiceInvalid("the pension-paying bank is a service bank: it is used")
            return pension_bank
        return pick("the pension-paying bank is not a service bank")
    if rule is BankRule.SALARY:
        candidates = list(dict.fromkeys(b for b in salary_banks if b in service))
        if len(candidates) == 1:
            if chosen_bank not in (None, candidates[0]):
                raise BankChoiceInvalid("the only salary bank among the 11 is used")
            return candidates[0]
        if len(candidates) > 1:
            if chosen_bank not in candidates:
                raise BankChoiceInvalid(
                    "several salary banks are service banks: the employer picks one of them"
                )
            assert chosen_bank is not None
            return chosen_bank
        return pick("no salary bank is a service bank")
    return pick("the applicant picks the bank")


def _date(value: Any, where: str) -> dt.date:
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise ValueError(f"{where}: not a date: {value!r}") from None


def parse_programme(data: Mapping[str, Any]) -> Programme:
    """Build and check a Programme from TOML data; ValueError names what is wrong."""
    banks = {str(k): str(v) for k, v in data["banks"].items()}
    if len(banks) != 11:
        raise ValueError(f"banks: the programme has 11 service banks, got {len(banks)}")
    channel_photos: dict[Channel, frozenset[PhotoSource]] = {}
    for name, spec in data["channels"].items():
        channel_photos[Channel(name)] = frozenset(PhotoSource(p) for p in spec["photo_sources"])
    missing = set(Channel) - set(channel_photos)
    if missing:
        raise ValueError(f"channels: missing {sorted(missing)}")
    cohorts: dict[str, Cohort] = {}
    for code, spec in data["cohorts"].items():
        window = None
        if "window" in spec:
            start, end = (_date(v, f"cohorts.{code}.window") for v in spec["window"])
            if end < start:
                raise ValueError(f"cohorts.{code}.window: ends before it starts")
            window = (start, end)
        photos = spec.get("photo_sources")
        cohorts[code] = Cohort(
            code=code,
            label=str(spec["label"]),
            window=window,
            channels=frozenset(Channel(c) for c in spec["channels"]),
            bank_rule=BankRule(spec["bank_rule"]),
            photo_sources=None if photos is None else frozenset(PhotoSource(p) for p in photos),
        )
    return Programme(
        name=str(data["name"]),
        banks=banks,
        channel_photo_sources=channel_photos,
        cohorts=cohorts,
    )


def load_programme(path: Path) -> Programme:
    with path.open("rb") as file:
        return parse_programme(tomllib.load(file))


@functools.cache  # one entry: zero arguments (the built-in file, parsed once per process)
def default_programme() -> Programme:
    return load_programme(DEFAULT_PROGRAMME_FILE)
