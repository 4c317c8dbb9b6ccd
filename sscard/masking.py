"""Masking personal data (个人信息的展示限制): ONE rule per kind, for every output surface.

Log lines, APDU traces, issuance views and error answers, receipts, the terminal CLI, the ops
page and the hub simulator's log show a person's data only through these functions, so one
rule holds wherever the data surfaces. They live in :mod:`sscard` because sscard imports
nothing else of the project, so every package may use them::

    kind          function          rule                                example
    citizen id    mask_citizen_id   first 3 and last 2 characters kept  110*************2X
    name          mask_name         first character and one star        张* (whatever the length)
    phone number  mask_phone        last 4 digits kept                  *******5678
    card number   mask_card_no      first 1 and last 2 characters kept  A******78
    psn_no        mask_psn_no       first 2 and last 2 characters kept  32***********45
    birth date    mask_birth_date   the year only                       1949-**-**

:func:`mask_text` masks the citizen ids and mobile numbers it finds in free text (exception
messages, tracebacks); :func:`mask_fields` masks a log line's fields by their names. A name or
a card number has no shape a scanner could find, so those are masked by field name, at the
place that knows what the value is.

Why these rules, and how sure we are of the sources (re-check them before relying on them for
compliance):

* No published standard or regulation we could read fixes how many characters of each kind may
  be shown. GB/T 35273 (信息安全技术 个人信息安全规范; 2017 edition §7.2 "个人信息的展示限制",
  read in a secondary quotation; the 2020 revision keeps the requirement) asks that personal
  information shown on screens or paper be de-identified, without digit counts. JR/T 0171-2020
  (个人金融信息保护技术规范, People's Bank of China) has an informative Annex A "信息屏蔽"
  (masking); we saw only its table of contents, not its text, and it governs financial
  institutions, so it is not applied here. GB/T 35273-2020 Annex B counts identity document
  numbers (身份证, 社保卡) among sensitive personal information (fairly sure).
* So where the project had two rules, the more private one wins: the citizen id keeps 3+2
  (sscard.layout's rule; issuance had kept 4+2) and the name hides its length (sscard.layout's
  rule; issuance had starred all but the first character). Common practice shows a phone as
  3+4 (``138****5678``); the last four alone (尾号) is what a clerk confirms with the holder,
  and hiding the carrier prefix leaves ~40 times as many candidate numbers.
* What is kept is what a clerk needs to tell records apart with the holder in front of them
  (the last characters; the citizen id's first three only place the region of issue), and a
  short value is starred whole, so that the kept part never is most of it.

>>> mask_citizen_id("11010519491231002X"), mask_name("张三丰"), mask_phone("13812345678")
('110*************2X', '张*', '*******5678')
>>> mask_card_no("A12345678"), mask_psn_no("320000000012345")
('A******78', '32***********45')
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping
from typing import Any, Final

__all__ = [
    "PERSONAL_FIELDS",
    "mask_birth_date",
    "mask_card_no",
    "mask_citizen_id",
    "mask_fields",
    "mask_name",
    "mask_phone",
    "mask_psn_no",
    "mask_text",
]

STAR: Final = "*"


def _keep(text: str, head: int, tail: int) -> str:
    """``head`` first and ``tail`` last characters kept, the rest starred; starred whole when
    the value is shorter than twice the kept part (the kept part would be most of it)."""
    if len(text) < 2 * (head + tail):
        return STAR * len(text)
    return text[:head] + STAR * (len(text) - head - tail) + text[len(text) - tail :]


def mask_citizen_id(citizen_id: str) -> str:
    """社会保障号码 (the citizen id, 18 characters): the first 3 and the last 2 kept.

    The first three place the region of issue; the last two (a sequence digit and the check
    character) let a clerk match the card to the ID card without reading the birth date in
    the middle. 5 or fewer characters are starred whole.

    >>> mask_citizen_id("11010519491231002X")
    '110*************2X'
    >>> mask_citizen_id("123456"), mask_citizen_id("12345"), mask_citizen_id("")
    ('123*56', '*****', '')
    """
    if len(citizen_id) <= 5:
        return STAR * len(citizen_id)
    return citizen_id[:3] + STAR * (len(citizen_id) - 5) + citizen_id[-2:]


def mask_name(name: str) -> str:
    """姓名: the first character and ONE star, whatever the length, so that the length (and a
    two-character surname's second character) is not told either.

    >>> mask_name("张三丰"), mask_name("欧阳娜娜"), mask_name("张"), mask_name("")
    ('张*', '欧*', '张*', '*')
    """
    return name[:1] + STAR


def mask_phone(phone: str) -> str:
    """A phone number: the last 4 digits kept (尾号, what a clerk confirms), every other
    character starred; 7 characters or fewer are starred whole.

    >>> mask_phone("13812345678"), mask_phone("021-62345678"), mask_phone("1234567")
    ('*******5678', '********5678', '*******')
    """
    if len(phone) <= 7:
        return STAR * len(phone)
    return STAR * (len(phone) - 4) + phone[-4:]


def mask_card_no(card_no: str) -> str:
    """卡号, the social security card number (EF05 tag 07, 9 characters): the first and the last
    2 kept, enough to tell a holder's old and new cards apart; 6 of 9 stay hidden.

    >>> mask_card_no("A12345678"), mask_card_no("S00000001"), mask_card_no("12345")
    ('A******78', 'S******01', '*****')
    """
    return _keep(card_no, 1, 2)


def mask_psn_no(psn_no: object) -> str:
    """人员编号 (psn_no, the insured person's number in the national interface): the first 2 (the
    insured province, which routes the call and is not personal) and the last 2 kept.

    >>> mask_psn_no("320000000012345"), mask_psn_no("abc"), mask_psn_no(None)
    ('32***********45', '***', '****')
    """
    text = str(psn_no)
    if len(text) <= 4:
        return STAR * len(text)
    return text[:2] + STAR * (len(text) - 4) + text[-2:]


def mask_birth_date(birth_date: dt.date | str) -> str:
    """A birth date: the year only (an age band stays readable, the day does not).

    >>> mask_birth_date(dt.date(1949, 12, 31)), mask_birth_date("1949-12-31")
    ('1949-**-**', '1949-**-**')
    """
    year = f"{birth_date.year:04d}" if isinstance(birth_date, dt.date) else str(birth_date)[:4]
    return f"{year}-**-**"


# An 18-character citizen id (GB 11643: region, birth date, sequence, check) or a mainland
# mobile number, standing alone: a letter or digit on either side means it is part of
# something longer (a request id, a bank card number), which is left alone.
_CITIZEN_ID_TEXT: Final = (
    r"[1-9][0-9]{5}(?:18|19|20)[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])[0-9]{3}[0-9Xx]"
)
_MOBILE_TEXT: Final = r"1[3-9][0-9]{9}"
_IN_TEXT: Final = re.compile(
    rf"(?<![0-9A-Za-z])(?:(?P<id>{_CITIZEN_ID_TEXT})|(?P<phone>{_MOBILE_TEXT}))(?![0-9A-Za-z])"
)
_SHORTEST_FOUND: Final = 11  # a mobile number; nothing shorter can hold either kind


def _mask_found(match: re.Match[str]) -> str:
    found = match.group("id")
    return mask_citizen_id(found) if found is not None else mask_phone(match.group("phone"))


def mask_text(text: str) -> str:
    """Free text with every citizen id and mobile number in it masked (for messages and
    tracebacks, whose content no caller chose). Names and card numbers cannot be recognised
    in free text: mask them where they are known (:func:`mask_fields`, the callers).

    >>> mask_text("holder 11010519491231002X, phone 13812345678, request 0123456789abcdef")
    'holder 110*************2X, phone *******5678, request 0123456789abcdef'
    """
    if len(text) < _SHORTEST_FOUND:
        return text
    return _IN_TEXT.sub(_mask_found, text)


#: Field names whose value is a person's data, and the mask each gets (the national interface's
#: names too: certno 证件号码, psn_name 人员姓名, tel 联系电话).
PERSONAL_FIELDS: Final[Mapping[str, Callable[[Any], str]]] = {
    "citizen_id": lambda v: mask_citizen_id(str(v)),
    "certno": lambda v: mask_citizen_id(str(v)),
    "name": lambda v: mask_name(str(v)),
    "psn_name": lambda v: mask_name(str(v)),
    "holder_name": lambda v: mask_name(str(v)),
    "phone": lambda v: mask_phone(str(v)),
    "mobile": lambda v: mask_phone(str(v)),
    "tel": lambda v: mask_phone(str(v)),
    "card_no": lambda v: mask_card_no(str(v)),
    "psn_no": mask_psn_no,
    "birth_date": lambda v: mask_birth_date(v if isinstance(v, dt.date) else str(v)),
    "brdy": lambda v: mask_birth_date(v if isinstance(v, dt.date) else str(v)),
}
_MAX_DEPTH: Final = 4  # log fields are flat; a nested structure deeper than this is shown as is
_SMALLEST_NUMBER_FOUND: Final = 10**10  # an int below 11 digits can hold neither kind


def _masked_number(value: int) -> int | str:
    if value < _SMALLEST_NUMBER_FOUND:
        return value
    text = str(value)
    masked = mask_text(text)
    return value if masked == text else masked


def _masked_value(value: Any, depth: int) -> Any:
    kind = type(value)
    if kind is str or isinstance(value, str):  # a str subclass too (an enum's value)
        return mask_text(value)
    if kind is int:
        return _masked_number(value)
    if depth < _MAX_DEPTH and value is not None and kind is not float and kind is not bool:
        if isinstance(value, Mapping):
            return _masked_fields(value, depth + 1)
        if isinstance(value, list | tuple):
            return [_masked_value(item, depth + 1) for item in value]
    return value


def _masked_fields(values: Mapping[Any, Any], depth: int) -> dict[Any, Any]:
    masked: dict[Any, Any] = {}
    for key, value in values.items():
        # The common cases inline: this runs for every field of every log line.
        if value is None:
            masked[key] = None
            continue
        mask = PERSONAL_FIELDS.get(key) if type(key) is str else None
        if mask is not None:
            masked[key] = mask(value)
        elif type(value) is str:
            masked[key] = mask_text(value) if len(value) >= _SHORTEST_FOUND else value
        else:
            masked[key] = _masked_value(value, depth)
    return masked


def mask_fields(values: Mapping[str, Any]) -> dict[str, Any]:
    """A log line's fields with personal data masked: a field named in
    :data:`PERSONAL_FIELDS` by its kind's rule, any other text through :func:`mask_text`
    (nested mappings and lists too, a few levels deep).

    >>> mask_fields({"name": "张三丰", "card_no": "A12345678", "status": 200,
    ...              "detail": "holder 11010519491231002X"})
    {'name': '张*', 'card_no': 'A******78', 'status': 200, 'detail': 'holder 110*************2X'}
    """
    return _masked_fields(values, 0)
