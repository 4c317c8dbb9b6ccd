"""A clearing statement (清算) for one insured province and period: the hub's 3201 totals and
3202 details against the gateway's own messages (settlement.crossprov.clearing.compare).

Read only on both sides: two queries to the hub, one read of our messages.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from functools import partial
from typing import Any

from settlement.crossprov import clearing, wire
from settlement.crossprov.ports import Hub, Units, require_client, unavailable
from settlement.errors import HubRefused

__all__ = ["clearing_statement"]


def _hub_figures(raw: object) -> clearing.Figures:
    if not isinstance(raw, Mapping):
        raise wire.WireError("figures must be an object", field="figures")
    count = raw.get("count")
    if type(count) is not int:
        raise wire.WireError("count must be an int", field="count")
    return clearing.Figures(
        count,
        *(wire.yuan_to_fen(raw.get(name), field=name) for name in wire.FIGURE_FIELDS),
    )


def _hub_detail(raw: object) -> clearing.HubMessage:
    if not isinstance(raw, Mapping) or not isinstance(raw.get("msgid"), str):
        raise wire.WireError("a detail needs a msgid", field="details")
    status = str(raw.get("status"))
    return clearing.HubMessage(
        msgid=raw["msgid"],
        status=status,
        setl_id=str(raw.get("setl_id")),
        figures=clearing.Figures(
            1, *(wire.yuan_to_fen(raw.get(name), field=name) for name in wire.FIGURE_FIELDS)
        ),
    )


async def clearing_statement(
    units: Units,
    hub: Hub,
    *,
    fixmedins_code: str,
    insuplc_admdvs: str,
    begin: dt.date,
    end: dt.date,
) -> tuple[clearing.Statement, dict[str, Any] | None]:
    """The statement, and the hub's own figures of what it reversed (as it gave them)."""
    client = require_client(hub)
    period = {
        "insuplc_admdvs": insuplc_admdvs,
        "stmt_begndate": begin.isoformat(),
        "stmt_enddate": end.isoformat(),
    }
    answers = {}
    for infno in (wire.INFNO_TOTALS, wire.INFNO_DETAIL):
        outcome = await client.call(
            infno=infno,
            msgid=client.msgids.next(fixmedins_code, odd=True),
            insuplc_admdvs=insuplc_admdvs,
            fixmedins_code=fixmedins_code,
            payload=period,
        )
        if outcome.outcome == "refused" and outcome.answer is not None:
            raise HubRefused(f"{outcome.answer.err_code}: {outcome.answer.err_msg}"[:300])
        if outcome.outcome != "ok" or outcome.answer is None:
            raise unavailable(hub, outcome.error)
        answers[infno] = outcome.answer.output
    try:
        hub_settled = _hub_figures(answers[wire.INFNO_TOTALS].get("settled"))
        details = [_hub_detail(d) for d in answers[wire.INFNO_DETAIL].get("details") or []]
    except wire.WireError as exc:
        raise unavailable(hub, f"unreadable statement: {exc.message}") from None
    ours = await units.read(
        partial(clearing.gateway_messages, insuplc_admdvs=insuplc_admdvs, begin=begin, end=end)
    )
    statement = clearing.compare(
        insuplc_admdvs=insuplc_admdvs,
        begin=begin,
        end=end,
        ours=ours,
        hub_settled=hub_settled,
        hub_details=details,
    )
    reversed_raw = answers[wire.INFNO_TOTALS].get("reversed")
    return statement, dict(reversed_raw) if isinstance(reversed_raw, Mapping) else None
