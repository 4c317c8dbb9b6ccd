"""What every enrolment use case shares: who acts, and the checks and errors of its inputs."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, NoReturn

from gateway.errors import ErrorCode, GatewayError

__all__ = ["Actor", "check_code", "check_name", "conflict", "invalid", "not_found"]

_CODE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")
NAME_MAX: Final = 128


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts and from where, as the audit trail records them: ``ops:<name>`` from a client
    address, or ``cli:<os user>`` from ``cli``. ``at_s``: the time of the act (unix s)."""

    name: str
    source: str
    at_s: float

    @property
    def at_ms(self) -> int:
        return int(self.at_s * 1000)


def invalid(detail: str) -> NoReturn:
    raise GatewayError(ErrorCode.ENROLMENT_INVALID, detail)


def conflict(detail: str) -> NoReturn:
    raise GatewayError(ErrorCode.ENROLMENT_CONFLICT, detail)


def not_found(detail: str) -> NoReturn:
    raise GatewayError(ErrorCode.ENROLMENT_NOT_FOUND, detail)


def check_code(what: str, code: str) -> str:
    if not _CODE.fullmatch(code):
        invalid(
            f"{what} must be 1-32 characters of A-Z a-z 0-9 _ -, starting with a letter or digit"
        )
    return code


def check_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > NAME_MAX or not name.isprintable():
        invalid(f"name must be 1-{NAME_MAX} printable characters")
    return name
