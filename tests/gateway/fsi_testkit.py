"""Helpers for the national-door tests: an HIS that speaks the envelope to the in-process app,
operators registered for the test institutions, and the demo cards read at a terminal.
(A uniquely named module: every test directory has its own conftest.)"""

from __future__ import annotations

import datetime as dt
import io
import itertools
import json
from dataclasses import dataclass, field
from typing import Any

from gateway_testkit import HOSPITAL, OK_TERMINAL, OTHER_TERMINAL, PHARMACY, Client, FakeClock
from sqlalchemy import Engine, insert
from sqlalchemy.orm import Session

from dbkit import BEIJING
from gateway.fsi.store import FsiOperator
from sscard import demo as sd

FSI_PATH = "/fsi/api/rsfComIfsService/callService"
OPTER = "OP0001"
DEVICE = {HOSPITAL: OK_TERMINAL, PHARMACY: OTHER_TERMINAL}


def register_operators(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        session.execute(
            insert(FsiOperator),
            [
                {"fixmedins_code": code, "opter": OPTER, "opter_name": "收费员", "enabled": True}
                for code in (HOSPITAL, PHARMACY)
            ],
        )


def card_of(m: int) -> tuple[str, str]:
    """(card_sn, card number) of demo card ``m``."""
    card = sd.demo_card(sd.DEFAULT_DEMO_SEED, m)
    return card.card_sn.upper(), card.identity.card_no


_SEQ = itertools.count(1)


@dataclass
class His:
    """One HIS workstation: an institution, an operator at a device, its sign_no."""

    client: Client
    clock: FakeClock
    fixmedins_code: str = HOSPITAL
    opter: str = OPTER
    dev_no: str = ""
    sign_no: str = ""
    sent: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.dev_no:
            self.dev_no = DEVICE[self.fixmedins_code]

    def msgid(self) -> str:
        at = dt.datetime.fromtimestamp(self.clock.now_s, BEIJING)
        return f"{self.fixmedins_code}{at:%Y%m%d%H%M%S}{next(_SEQ) % 10000:04d}"

    def envelope(
        self, infno: str, body: Any, *, msgid: str | None = None, **over: Any
    ) -> dict[str, Any]:
        at = dt.datetime.fromtimestamp(self.clock.now_s, BEIJING)
        env = {
            "infno": infno,
            "msgid": msgid or self.msgid(),
            "mdtrtarea_admvs": "310000",
            "insuplc_admdvs": "310000",
            "recer_sys_code": "HIS",
            "dev_no": self.dev_no,
            "dev_safe_info": "",
            "cainfo": "",
            "signtype": "SM2",
            "infver": "V1.0",
            "opter_type": "1",
            "opter": self.opter,
            "opter_name": "收费员",
            "inf_time": f"{at:%Y-%m-%d %H:%M:%S}",
            "fixmedins_code": self.fixmedins_code,
            "fixmedins_name": "测试机构",
            "sign_no": self.sign_no,
            "input": body,
        }
        env.update(over)
        return env

    async def post_raw(self, raw: bytes | dict[str, Any], path: str = FSI_PATH) -> Any:
        data = raw if isinstance(raw, bytes) else json.dumps(raw, ensure_ascii=False).encode()
        return await self.client.post(
            path, data=io.BytesIO(data), headers={"Content-Type": "application/json"}
        )

    async def call(self, infno: str, body: Any, **over: Any) -> dict[str, Any]:
        env = self.envelope(infno, body, **over)
        self.sent.append(env["msgid"])
        response = await self.post_raw(env)
        assert response.status == 200, await response.text()
        answer: dict[str, Any] = await response.json()
        return answer

    async def ok(self, infno: str, body: Any, **over: Any) -> dict[str, Any]:
        answer = await self.call(infno, body, **over)
        assert answer["infcode"] == 0, answer["err_msg"]
        output: dict[str, Any] = answer["output"]
        return output

    async def sign_in(self) -> str:
        output = await self.ok("9001", {"signIn": {"opter_no": self.opter, "mac": "", "ip": ""}})
        self.sign_no = output["signinoutb"]["sign_no"]
        return self.sign_no


def refused_code(answer: dict[str, Any]) -> str:
    """The stable code of a refusal's err_msg ("[CODE] ...")."""
    assert answer["infcode"] in (-1, -2), answer
    message: str = answer["err_msg"]
    assert message.startswith("[")
    return message[1 : message.index("]")]
