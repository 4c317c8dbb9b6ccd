"""Who may do what: the calling terminal's institution acts as an issuance ROLE.

The role comes from issuance's own ``issuance_agents`` table (institution code -> role and
scope), not from the gateway's institution kind, so the gateway's institutions stay what they
are (hospitals and pharmacies settle; banks, employers, centres issue) and an institution with
no agent row has no issuance rights at all.

Two tables decide every call:

* :data:`PERMISSIONS`: role -> the actions it may perform (403 ISSUANCE_FORBIDDEN otherwise);
* :func:`can_see`: the records a role may see. A record outside the caller's scope is answered
  exactly like a record that does not exist (404), so scopes do not leak who applied where.

=========  ===============================================  ==================================
role       sees                                             does
=========  ===============================================  ==================================
bank       applications whose chosen bank is this bank      apply (branch), status, activate,
                                                            report loss, replace, history
employer   its own employees' applications                  batch upload, status
community  holders registered in its district, and cards    apply, status, delivery outcome
           whose backup centre it is                        (pick-up), activate, loss, replace,
                                                            history
online     applications it took (web / WeChat / app)        apply, status
hotline    everything (962222)                              status, history, report loss, stats
centre     everything (市民服务信息中心: production, post)     all of the above + batches, stats
=========  ===============================================  ==================================
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Final

from issuance.errors import IssuanceForbidden

__all__ = ["PERMISSIONS", "Action", "Agent", "Role", "can_see", "require"]


class Role(StrEnum):
    BANK = "bank"
    EMPLOYER = "employer"
    COMMUNITY = "community"
    ONLINE = "online"
    HOTLINE = "hotline"
    CENTRE = "centre"


class Action(StrEnum):
    APPLY = "apply"
    BATCH_UPLOAD = "batch_upload"
    STATUS = "status"
    DELIVERY = "delivery"
    ACTIVATE = "activate"
    REPORT_LOSS = "report_loss"
    REPLACE = "replace"
    HISTORY = "history"
    STATS = "stats"
    PRODUCE = "produce"


A = Action
PERMISSIONS: Final[Mapping[Role, frozenset[Action]]] = MappingProxyType(
    {
        Role.BANK: frozenset({A.APPLY, A.STATUS, A.ACTIVATE, A.REPORT_LOSS, A.REPLACE, A.HISTORY}),
        Role.EMPLOYER: frozenset({A.BATCH_UPLOAD, A.STATUS}),
        Role.COMMUNITY: frozenset(
            {A.APPLY, A.STATUS, A.DELIVERY, A.ACTIVATE, A.REPORT_LOSS, A.REPLACE, A.HISTORY}
        ),
        Role.ONLINE: frozenset({A.APPLY, A.STATUS}),
        Role.HOTLINE: frozenset({A.STATUS, A.HISTORY, A.REPORT_LOSS, A.STATS}),
        Role.CENTRE: frozenset(Action),
    }
)


@dataclass(frozen=True, slots=True)
class Agent:
    """The caller: an institution in its issuance role, and the terminal it called from."""

    institution_code: str
    role: Role
    bank_code: str | None = None
    employer_code: str | None = None
    area_code: str | None = None
    terminal_id: str | None = None

    @property
    def actor(self) -> str:
        """Recorded in the card history."""
        if self.terminal_id is None:
            return self.institution_code
        return f"{self.institution_code}/{self.terminal_id}"[:64]


def require(agent: Agent, action: Action) -> None:
    if action not in PERMISSIONS[agent.role]:
        raise IssuanceForbidden(f"role '{agent.role}' may not {action.value.replace('_', ' ')}")


@dataclass(frozen=True, slots=True)
class Visible:
    """The facts of an application that scopes look at."""

    bank_code: str
    employer_code: str | None
    agent_code: str
    holder_area_code: str
    backup_centre: str


def can_see(agent: Agent, record: Visible) -> bool:
    match agent.role:
        case Role.HOTLINE | Role.CENTRE:
            return True
        case Role.BANK:
            return agent.bank_code is not None and record.bank_code == agent.bank_code
        case Role.EMPLOYER:
            return agent.employer_code is not None and record.employer_code == agent.employer_code
        case Role.COMMUNITY:
            return record.backup_centre == agent.institution_code or (
                agent.area_code is not None and record.holder_area_code == agent.area_code
            )
        case Role.ONLINE:
            return record.agent_code == agent.institution_code
