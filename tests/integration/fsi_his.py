"""A scripted HIS on the national-interface door, written only from docs/national-interface.md.

It knows the gateway as an HIS vendor would: one URL (§1), the request and response envelopes
(§1), msgids (§2), the transactions' inputs and outputs (§3), the card step at the counter's
terminal (§4: ``terminal_sdk.his_card``, as ``ssc-terminal his-card``), the plain transport
profile (§5) and the refusal codes (§6). It imports nothing of the gateway, settlement or
issuance packages: stdlib, aiohttp and terminal_sdk only.

Amounts go out as strings in yuan with two decimals and come back as JSON numbers in yuan
(§1); :func:`fen` turns an answer's amount into integer fen exactly (never through a float's
arithmetic).
"""

from __future__ import annotations

import base64
import datetime as dt
import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final

import aiohttp

from terminal_sdk import SocialSecurityCard, SyncGatewayClient
from terminal_sdk.his_card import HisCard, read_his_card

__all__ = [
    "BEIJING",
    "FSI_PATH",
    "BookEntry",
    "CardRead",
    "Counter",
    "FeeLine",
    "Refused",
    "fen",
    "reconcile_details",
    "reconcile_totals",
    "splits",
]

FSI_PATH: Final = "/fsi/api/rsfComIfsService/callService"  # §1, the default fsi_path
BEIJING: Final = dt.timezone(dt.timedelta(hours=8))
# The setlinfo amounts this HIS keeps for its books (§3 setlinfo).
SPLIT_FIELDS: Final = (
    "medfee_sumamt",
    "fund_pay_sumamt",
    "acct_pay",
    "psn_cash_pay",
    "hifp_pay",
    "hifob_pay",
    "act_pay_dedc",
    "fulamt_ownpay_amt",
    "preselfpay_amt",
    "inscp_scp_amt",
    "balc",
)


class Refused(Exception):
    """An answer with infcode -1 or -2 (§1, §6): ``code`` is the err_msg's stable [CODE]."""

    def __init__(self, infno: str, answer: Mapping[str, Any]) -> None:
        message = str(answer.get("err_msg") or "")
        self.infcode = answer.get("infcode")
        self.code = message[1 : message.index("]")] if message.startswith("[") else message
        super().__init__(f"{infno}: infcode {self.infcode}: {message}")


def fen(amount: object) -> int:
    """An answer's amount (a JSON number in yuan, at most two decimals) in fen, exactly."""
    value = Decimal(str(amount)) * 100
    if value != value.to_integral_value():
        raise ValueError(f"not a two-decimal amount: {amount!r}")
    return int(value)


def yuan_text(amount_fen: int) -> str:
    return f"{amount_fen // 100}.{amount_fen % 100:02d}"


def splits(setlinfo: Mapping[str, Any]) -> dict[str, int]:
    """The settlement's amounts in fen (those the answer carries)."""
    return {name: fen(setlinfo[name]) for name in SPLIT_FIELDS if setlinfo.get(name) is not None}


@dataclass(frozen=True)
class FeeLine:
    code: str
    count: int
    price_fen: int

    @property
    def total_fen(self) -> int:
        return self.count * self.price_fen


@dataclass(frozen=True)
class CardRead:
    """The card step's output (§4) as the HIS keeps it for this patient's envelopes."""

    card_no: str
    card_sn: str
    dev_no: str

    @classmethod
    def of(cls, read: HisCard) -> CardRead:
        return cls(read.card_no, read.card_sn, read.dev_no)

    def card(self) -> dict[str, str]:
        """The ``card`` fields of §3."""
        return {"mdtrt_cert_type": "03", "mdtrt_cert_no": self.card_no, "card_sn": self.card_sn}


def read_card_at(client: SyncGatewayClient, card: SocialSecurityCard) -> CardRead:
    """§4: the card authenticates at this counter's terminal; its id is the envelopes' dev_no."""
    return CardRead.of(read_his_card(client, card))


_SEQUENCE = itertools.count(1)


@dataclass
class Counter:
    """One HIS workstation: an institution, an operator at a device (= the card terminal), its
    sign_no; it keeps every answer it received (``journal``), as an HIS keeps its log."""

    http: aiohttp.ClientSession
    base_url: str
    fixmedins_code: str
    dev_no: str
    opter: str = "OP0001"
    sign_no: str = ""
    journal: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    # -- the envelope (§1, §2) ---------------------------------------------------------------

    def msgid(self) -> str:
        """Institution code + yyyyMMddHHmmss + a 4-digit sequence (§1)."""
        now = dt.datetime.now(BEIJING)
        return f"{self.fixmedins_code}{now:%Y%m%d%H%M%S}{next(_SEQUENCE) % 10000:04d}"

    def envelope(self, infno: str, body: Mapping[str, Any], msgid: str) -> dict[str, Any]:
        return {
            "infno": infno,
            "msgid": msgid,
            "mdtrtarea_admvs": "310000",
            "insuplc_admdvs": "310000",
            "recer_sys_code": "SCRIPTED",
            "dev_no": self.dev_no,
            "dev_safe_info": "",
            "cainfo": "",
            "signtype": "SM2",
            "infver": "V1.0",
            "opter_type": "1",
            "opter": self.opter,
            "opter_name": "收费员",
            "inf_time": f"{dt.datetime.now(BEIJING):%Y-%m-%d %H:%M:%S}",
            "fixmedins_code": self.fixmedins_code,
            "fixmedins_name": "scripted HIS",
            "sign_no": self.sign_no,
            "input": dict(body),
        }

    async def post(self, env: Mapping[str, Any]) -> dict[str, Any]:
        async with self.http.post(
            self.base_url + FSI_PATH,
            data=json.dumps(env, ensure_ascii=False).encode(),
            headers={"Content-Type": "application/json"},
        ) as response:
            assert response.status == 200, await response.text()  # §1: HTTP 200 either way
            answer: dict[str, Any] = json.loads(await response.read())
        return answer

    async def call(
        self, infno: str, body: Mapping[str, Any], *, msgid: str | None = None
    ) -> dict[str, Any]:
        """Send; the output on infcode 0, else :class:`Refused`."""
        msgid = msgid or self.msgid()
        answer = await self.post(self.envelope(infno, body, msgid))
        self.journal.append((infno, msgid, answer))
        if answer["infcode"] != 0:
            raise Refused(infno, answer)
        output: dict[str, Any] = answer["output"]
        return output

    async def send_and_lose_the_answer(
        self, infno: str, body: Mapping[str, Any], msgid: str
    ) -> None:
        """The request reaches the gateway; its answer never reaches the HIS (a network cut)."""
        await self.post(self.envelope(infno, body, msgid))

    # -- 9001 / 9002 ---------------------------------------------------------------------------

    async def sign_in(self) -> str:
        output = await self.call("9001", {"signIn": {"opter_no": self.opter, "mac": "", "ip": ""}})
        self.sign_no = str(output["signinoutb"]["sign_no"])
        return self.sign_no

    async def sign_out(self) -> None:
        await self.call("9002", {"signOut": {"sign_no": self.sign_no, "opter_no": self.opter}})

    # -- 1101 ----------------------------------------------------------------------------------

    async def person(self, card: CardRead) -> dict[str, Any]:
        return await self.call("1101", {"data": card.card()})

    # -- outpatient 2201-2208 --------------------------------------------------------------------

    async def register(self, card: CardRead, when: dt.datetime, ipt_otp_no: str) -> str:
        data = {**card.card(), "begntime": f"{when:%Y-%m-%d %H:%M:%S}", "ipt_otp_no": ipt_otp_no}
        output = await self.call("2201", {"data": data})
        return str(output["data"]["mdtrt_id"])

    async def upload_fees(
        self, infno: str, mdtrt_id: str, lines: Sequence[FeeLine], batch: str
    ) -> dict[str, Any]:
        """2204 (outpatient) or 2301 (a stay): one visit's one batch."""
        return await self.call(
            infno,
            {
                "feedetail": [
                    {
                        "feedetl_sn": f"{batch}-{n}",
                        "mdtrt_id": mdtrt_id,
                        "chrg_bchno": batch,
                        "med_list_codg": line.code,
                        "cnt": line.count,
                        "pric": yuan_text(line.price_fen),
                        "det_item_fee_sumamt": yuan_text(line.total_fen),
                    }
                    for n, line in enumerate(lines, start=1)
                ]
            },
        )

    @staticmethod
    def visit_input(card: CardRead, mdtrt_id: str, total_fen: int, med_type: str) -> dict[str, Any]:
        """2206/2207 and 2303/2304 input."""
        data = {
            **card.card(),
            "mdtrt_id": mdtrt_id,
            "medfee_sumamt": yuan_text(total_fen),
            "med_type": med_type,
        }
        return {"data": data}

    async def cancel_settlement(
        self, infno: str, setl_id: str, mdtrt_id: str, psn_no: str
    ) -> dict[str, Any]:
        """2208 (outpatient), 2103 (pharmacy) or 2305 (a stay)."""
        data = {"setl_id": setl_id, "mdtrt_id": mdtrt_id, "psn_no": psn_no}
        return await self.call(infno, {"data": data})

    # -- pharmacy 2101/2102 ------------------------------------------------------------------------

    @staticmethod
    def purchase_input(card: CardRead, lines: Sequence[FeeLine]) -> dict[str, Any]:
        data = {
            **card.card(),
            "med_type": "41",
            "medfee_sumamt": yuan_text(sum(line.total_fen for line in lines)),
            "feedetail": [
                {"med_list_codg": line.code, "cnt": line.count, "pric": yuan_text(line.price_fen)}
                for line in lines
            ],
        }
        return {"data": data}

    # -- inpatient 2401/2402 -------------------------------------------------------------------

    async def admit(self, card: CardRead, when: dt.date, ipt_no: str) -> str:
        data = {**card.card(), "begntime": f"{when:%Y-%m-%d}", "ipt_no": ipt_no, "med_type": "21"}
        output = await self.call("2401", {"mdtrtinfo": data, "diseinfo": []})
        return str(output["result"]["mdtrt_id"])

    async def discharge(self, mdtrt_id: str, when: dt.date) -> None:
        data = {"mdtrt_id": mdtrt_id, "endtime": f"{when:%Y-%m-%d}", "dscg_way": "1"}
        await self.call("2402", {"dscginfo": data, "diseinfo": []})

    # -- 2601 ----------------------------------------------------------------------------------

    async def reverse(self, omsgid: str, oinfno: str, psn_no: str) -> dict[str, Any]:
        return await self.call(
            "2601", {"data": {"omsgid": omsgid, "oinfno": oinfno, "psn_no": psn_no}}
        )


# -- reconciliation 3201 / 3202 and files 9101 (§3 "Reconciliation and files") -----------------


@dataclass(frozen=True)
class BookEntry:
    """One settlement as the HIS's own books keep it, for the statement."""

    setl_id: str
    mdtrt_id: str
    psn_no: str
    amounts: Mapping[str, int]  # splits(): medfee_sumamt, fund_pay_sumamt, acct_pay, ...
    cancelled: bool = False


def statement_totals(entries: Sequence[BookEntry]) -> dict[str, Any]:
    """3201's figures over the valid (not cancelled) settlements."""
    valid = [entry for entry in entries if not entry.cancelled]

    def total(name: str) -> str:
        return yuan_text(sum(entry.amounts[name] for entry in valid))

    return {
        "medfee_sumamt": total("medfee_sumamt"),
        "fund_pay_sumamt": total("fund_pay_sumamt"),
        "acct_pay": total("acct_pay"),
        "cash_payamt": total("psn_cash_pay"),
        "fixmedins_setl_cnt": len(valid),
    }


def detail_file(entries: Sequence[BookEntry]) -> bytes:
    """The 3202 detail file, "our form": a header, then one settlement a line, seven
    tab-separated fields (refd_setl_flag 1: cancelled, left out of the statement)."""
    rows = ["setl_id\tmdtrt_id\tpsn_no\tmedfee_sumamt\tfund_pay_sumamt\tacct_pay\trefd_setl_flag"]
    for entry in entries:
        amounts = [yuan_text(entry.amounts[name]) for name in ("medfee_sumamt",
                   "fund_pay_sumamt", "acct_pay")]  # fmt: skip
        flag = "1" if entry.cancelled else "0"
        rows.append("\t".join([entry.setl_id, entry.mdtrt_id, entry.psn_no, *amounts, flag]))
    return ("\n".join(rows) + "\n").encode()


async def reconcile_totals(
    counter: Counter, clr_type: str, day: dt.date, entries: Sequence[BookEntry]
) -> dict[str, Any]:
    data = {"clr_type": clr_type, "stmt_begndate": f"{day:%Y-%m-%d}", "insutype": "310",
            **statement_totals(entries)}  # fmt: skip
    output = await counter.call("3201", {"data": data})
    stmtinfo: dict[str, Any] = output["stmtinfo"]
    return stmtinfo


async def upload_file(counter: Counter, filename: str, content: bytes) -> str:
    """9101: the file as Base64 text; its file_qury_no."""
    body = {"fsUploadIn": {"in": base64.b64encode(content).decode("ascii"), "filename": filename,
                           "fixmedins_code": counter.fixmedins_code}}  # fmt: skip
    output = await counter.call("9101", body)
    return str(output["file_qury_no"])


async def reconcile_details(
    counter: Counter, clr_type: str, day: dt.date, entries: Sequence[BookEntry]
) -> dict[str, Any]:
    """3202 with the detail file uploaded by 9101 (most clients) and the totals."""
    file_qury_no = await upload_file(counter, f"{counter.fixmedins_code}-{day:%Y%m%d}.txt",
                                     detail_file(entries))  # fmt: skip
    data = {"clr_type": clr_type, "stmt_begndate": f"{day:%Y-%m-%d}", "insutype": "310",
            "file_qury_no": file_qury_no, **statement_totals(entries)}  # fmt: skip
    return await counter.call("3202", {"data": data})
