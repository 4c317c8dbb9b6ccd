"""The programme as data: cohorts, windows, channels, photo sources, the 11 banks, bank rule."""

from __future__ import annotations

import datetime as dt
import tomllib
from typing import Any

import pytest

from issuance import errors
from issuance.programme import (
    DEFAULT_PROGRAMME_FILE,
    BankRule,
    Channel,
    PhotoSource,
    Programme,
    choose_bank,
    parse_programme,
)


def check(programme: Programme, **overrides: Any) -> str:
    args: dict[str, Any] = {
        "cohort": "retiree",
        "channel": Channel.BANK_BRANCH,
        "photo_source": PhotoSource.ON_SITE,
        "hukou_shanghai": True,
        "insured_in_shanghai": False,
        "on": dt.date(2019, 3, 1),
        **overrides,
    }
    return programme.check_application(**args).code


def test_seed_banks_and_cohorts(programme: Programme) -> None:
    assert len(programme.banks) == 11
    assert programme.banks["BOSH"] == "上海银行"
    windows = {c.code: c.window for c in programme.cohorts.values()}
    assert windows["retiree"] == (dt.date(2019, 1, 1), dt.date(2019, 6, 30))
    assert windows["employee"] == (dt.date(2019, 7, 1), dt.date(2020, 12, 31))
    assert windows["pupil"] == (dt.date(2019, 4, 1), dt.date(2019, 6, 30))
    assert windows["first_card"] is None


@pytest.mark.parametrize(
    ("hukou", "insured", "ok"), [(True, False, True), (False, True, True), (False, False, False)]
)
def test_eligibility(programme: Programme, hukou: bool, insured: bool, ok: bool) -> None:
    if ok:
        assert check(programme, hukou_shanghai=hukou, insured_in_shanghai=insured) == "retiree"
    else:
        with pytest.raises(errors.NotEligible):
            check(programme, hukou_shanghai=hukou, insured_in_shanghai=insured)


@pytest.mark.parametrize(
    ("cohort", "channel", "day", "error"),
    [
        ("retiree", Channel.BANK_BRANCH, dt.date(2018, 12, 31), errors.WindowClosed),
        ("retiree", Channel.BANK_BRANCH, dt.date(2019, 7, 1), errors.WindowClosed),
        ("employee", Channel.EMPLOYER_BATCH, dt.date(2019, 6, 30), errors.WindowClosed),
        ("employee", Channel.EMPLOYER_BATCH, dt.date(2021, 1, 1), errors.WindowClosed),
        ("pupil", Channel.ONLINE_APP, dt.date(2019, 3, 31), errors.WindowClosed),
        ("pupil", Channel.BANK_BRANCH, dt.date(2019, 5, 1), errors.ChannelNotAllowed),
        ("retiree", Channel.ONLINE_WEB, dt.date(2019, 5, 1), errors.ChannelNotAllowed),
        ("nobody", Channel.ONLINE_WEB, dt.date(2019, 5, 1), errors.ChannelNotAllowed),
    ],
)
def test_window_and_channel(
    programme: Programme, cohort: str, channel: Channel, day: dt.date, error: type[Exception]
) -> None:
    with pytest.raises(error):
        check(
            programme,
            cohort=cohort,
            channel=channel,
            on=day,
            photo_source=PhotoSource.ID_CARD_SHARED,
        )


def test_first_cards_all_year(programme: Programme) -> None:
    code = check(
        programme, cohort="first_card", channel=Channel.COMMUNITY_CENTRE, on=dt.date(2027, 1, 15)
    )
    assert code == "first_card"


@pytest.mark.parametrize(
    ("cohort", "channel", "photo", "ok"),
    [
        ("pupil", Channel.ONLINE_WECHAT, PhotoSource.E_STUDENT_CARD, True),
        ("pupil", Channel.ONLINE_WECHAT, PhotoSource.ON_SITE, False),
        ("retiree", Channel.BANK_BRANCH, PhotoSource.E_STUDENT_CARD, False),
        ("retiree", Channel.COMMUNITY_CENTRE, PhotoSource.ID_CARD_SHARED, True),
    ],
)
def test_photo_sources(
    programme: Programme, cohort: str, channel: Channel, photo: PhotoSource, ok: bool
) -> None:
    day = dt.date(2019, 5, 1)
    if ok:
        check(programme, cohort=cohort, channel=channel, photo_source=photo, on=day)
    else:
        with pytest.raises(errors.PhotoNotAllowed):
            check(programme, cohort=cohort, channel=channel, photo_source=photo, on=day)


@pytest.mark.parametrize(
    ("rule", "kwargs", "expected"),
    [
        (BankRule.PENSION, {"pension_bank": "ICBC"}, "ICBC"),
        (BankRule.PENSION, {"pension_bank": "ICBC", "chosen_bank": "ICBC"}, "ICBC"),
        (BankRule.PENSION, {"pension_bank": "HSBC", "chosen_bank": "CMB"}, "CMB"),
        (BankRule.PENSION, {"pension_bank": "HSBC"}, errors.BankChoiceInvalid),
        (
            BankRule.PENSION,
            {"pension_bank": "ICBC", "chosen_bank": "CMB"},
            errors.BankChoiceInvalid,
        ),
        (BankRule.SALARY, {"salary_banks": ("HSBC", "BOC")}, "BOC"),
        (BankRule.SALARY, {"salary_banks": ("BOC", "CCB"), "chosen_bank": "CCB"}, "CCB"),
        (BankRule.SALARY, {"salary_banks": ("BOC", "CCB")}, errors.BankChoiceInvalid),
        (
            BankRule.SALARY,
            {"salary_banks": ("BOC", "CCB"), "chosen_bank": "ICBC"},
            errors.BankChoiceInvalid,
        ),
        (BankRule.SALARY, {"salary_banks": ("HSBC",), "chosen_bank": "SPDB"}, "SPDB"),
        (BankRule.SALARY, {"salary_banks": ("HSBC",)}, errors.BankChoiceInvalid),
        (BankRule.CHOSEN, {"chosen_bank": "PSBC"}, "PSBC"),
        (BankRule.CHOSEN, {"chosen_bank": "HSBC"}, errors.BankChoiceInvalid),
        (BankRule.CHOSEN, {}, errors.BankChoiceInvalid),
    ],
)
def test_bank_rule(
    programme: Programme, rule: BankRule, kwargs: dict[str, Any], expected: object
) -> None:
    if isinstance(expected, str):
        assert choose_bank(programme, rule, **kwargs) == expected
    else:
        assert isinstance(expected, type)
        with pytest.raises(expected):
            choose_bank(programme, rule, **kwargs)


def test_bad_configuration_is_refused() -> None:
    data = tomllib.loads(DEFAULT_PROGRAMME_FILE.read_text(encoding="utf-8"))
    del data["banks"]["CEB"]
    with pytest.raises(ValueError, match="11 service banks"):
        parse_programme(data)
    data = tomllib.loads(DEFAULT_PROGRAMME_FILE.read_text(encoding="utf-8"))
    data["cohorts"]["retiree"]["window"] = ["2019-06-30", "2019-01-01"]
    with pytest.raises(ValueError, match="ends before"):
        parse_programme(data)
