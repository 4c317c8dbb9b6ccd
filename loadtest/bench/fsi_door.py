"""``settle --door fsi``: the national-interface door beside /v1, in one run, on one server.

Both doors settle the same purchase (the run's two lines, ``visit_type`` pharmacy) for the same
cards at the same pharmacy terminals, read once each by the full SM2 card authentication: the
card session it returns is what /v1 sends, the card presence it records is what the envelope
relies on (``dev_no`` = the terminal). One *settlement* is

- on /v1: pre-settle then settle (new ``Idempotency-Key``), each request HMAC-signed afresh;
- on /fsi: 2101 pharmacy pre-settle then 2102 pharmacy settle, each envelope with a new
  ``msgid`` and the current ``inf_time``, under the till's ``sign_no`` (one 9001 sign-in per
  till during the setup, as an HIS signs in once a shift), on the plain transport profile
  (the demo world's default).

At each concurrency the two doors run back to back in a closed loop, twice in turn (v1, fsi,
fsi, v1: a slow drift of the machine favours neither), each after a short warm-up.
``ratio_fsi_to_v1`` is the best envelope rate over the best /v1 rate; the server CPU per
settlement of each (``server_cpu_ratio_fsi_to_v1``) moves less with machine noise than rates
do.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from loadtest.bench import auth
from loadtest.bench.lean_http import LeanHttpClient, LeanHttpError
from sscard import terminal_auth as ta

__all__ = [
    "FSI_PATH",
    "EnvelopePost",
    "FsiDoor",
    "FsiTill",
    "door_figures",
    "measure_doors",
    "pharmacy_input",
    "pharmacy_terminal",
]

FSI_PATH: Final = "/fsi/api/rsfComIfsService/callService"
OPTER: Final = "OP0001"  # a demo operator of every demo institution (gateway.fsi.demo)
FIRST_PHARMACY_TERMINAL: Final = ta.DEMO_HOSPITAL_COUNT * ta.DEMO_TERMINALS_PER_INSTITUTION
PHARMACY_TERMINALS: Final = ta.DEMO_PHARMACY_COUNT * ta.DEMO_TERMINALS_PER_INSTITUTION
BEIJING: Final = dt.timezone(dt.timedelta(hours=8))
# A success envelope's first bytes (gateway.fsi.envelope.render: compact, infcode first): a
# settle's answer is checked without parsing it, as /v1's is by its status.
_OK_PREFIX: Final = b'{"infcode":0,'
# Each door measured this many times per concurrency, in turn: on a shared machine the load
# of others moves rates by tens of percent from one second to the next.
ROUNDS: Final = 2
_MSGID_MARK: Final = "@MSGID@"
_TIME_MARK: Final = "@INF_TIME@"


def pharmacy_terminal(seed: str, n: int) -> tuple[str, str, bytes]:
    """(institution code, terminal id, secret) of the ``n``-th demo pharmacy terminal."""
    index = FIRST_PHARMACY_TERMINAL + n % PHARMACY_TERMINALS
    terminal_id, secret = ta.demo_terminal(seed, index)
    return ta.demo_institution_code(index // ta.DEMO_TERMINALS_PER_INSTITUTION), terminal_id, secret


def pharmacy_input(card_sn: str, lines: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """2101/2102 ``input`` for the run's lines (the /v1 visit's, in yuan strings)."""
    total = sum(int(line["quantity"]) * int(line["unit_price_fen"]) for line in lines)
    return {
        "data": {
            "mdtrt_cert_type": "03",
            "card_sn": card_sn,
            "med_type": "41",
            "medfee_sumamt": _yuan(total),
            "feedetail": [
                {
                    "feedetl_sn": str(n + 1),
                    "med_list_codg": line["code"],
                    "cnt": int(line["quantity"]),
                    "pric": _yuan(int(line["unit_price_fen"])),
                }
                for n, line in enumerate(lines)
            ],
        }
    }


def _yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


@dataclass(frozen=True)
class FsiTill:
    """A till on the envelope door: its institution, device (= terminal id), sign-in, card."""

    fixmedins_code: str
    dev_no: str
    sign_no: str
    card_sn: str


def envelope(till: FsiTill, infno: str, body: Any, msgid: str, inf_time: str) -> dict[str, Any]:
    return {
        "infno": infno,
        "msgid": msgid,
        "inf_time": inf_time,
        "mdtrtarea_admvs": "310000",
        "insuplc_admdvs": "310000",
        "recer_sys_code": "BENCH",
        "dev_no": till.dev_no,
        "dev_safe_info": "",
        "cainfo": "",
        "signtype": "",
        "infver": "V1.0",
        "opter_type": "1",
        "opter": OPTER,
        "opter_name": "bench",
        "fixmedins_code": till.fixmedins_code,
        "fixmedins_name": "",
        "sign_no": till.sign_no,
        "input": body,
    }


class EnvelopePost:
    """``POST FSI_PATH`` of one till's envelope as the bytes the lean client sends: the JSON is
    encoded once around the two fields that change (``msgid``, ``inf_time``)."""

    def __init__(self, host: str, till: FsiTill, infno: str, body: Any) -> None:
        text = json.dumps(
            envelope(till, infno, body, _MSGID_MARK, _TIME_MARK),
            ensure_ascii=False,
            separators=(",", ":"),
        ).encode()
        before, rest = text.split(_MSGID_MARK.encode())
        middle, after = rest.split(_TIME_MARK.encode())
        self._parts = (before, middle, after)
        self._head = (
            f"POST {FSI_PATH} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        ).encode("ascii")

    def build(self, msgid: str, inf_time: str) -> bytes:
        before, middle, after = self._parts
        body = before + msgid.encode("ascii") + middle + inf_time.encode("ascii") + after
        return self._head + b"Content-Length: %d\r\n\r\n" % len(body) + body


def refusal_code(data: bytes) -> str:
    """The stable code of a refused envelope (``err_msg`` "[CODE] ..."), else what it was."""
    try:
        parsed = json.loads(data)
    except ValueError:
        return "FSI_NOT_JSON"
    message = parsed.get("err_msg") if isinstance(parsed, dict) else None
    if isinstance(message, str) and message.startswith("[") and "]" in message:
        return message[1 : message.index("]")]
    return "FSI_UNREADABLE"


class FsiDoor:
    """Signs the tills in (9001), then sends 2101 + 2102 settlements on the generator's
    connection pool (``client`` is set by the caller for each phase)."""

    def __init__(self, host: str, port: int, run_id: str, lines: Sequence[dict[str, Any]]):
        self.host = f"{host}:{port}"
        self.run_id = run_id
        self.lines = lines
        self.client: LeanHttpClient | None = None
        self.tills: list[FsiTill] = []
        self._posts: list[tuple[EnvelopePost, EnvelopePost]] = []
        self._second = -1
        self._inf_time = ""

    def inf_time(self) -> str:
        now = int(time.time())
        if now != self._second:  # formatted once a second, not once a request
            self._second = now
            self._inf_time = dt.datetime.fromtimestamp(now, BEIJING).strftime("%Y-%m-%d %H:%M:%S")
        return self._inf_time

    def msgid(self, kind: str, i: int) -> str:
        # <= 30 letters and digits, unique per institution: the run, the kind, the number.
        return f"{self.run_id}{kind}{i:012d}"

    async def _send(self, request: bytes) -> tuple[int, bytes]:
        assert self.client is not None
        try:
            return await self.client.send(request)
        except LeanHttpError as exc:
            raise auth.AuthFailed(f"CLIENT_{exc.kind}") from None

    async def sign_in(self, fixmedins_code: str, dev_no: str, card_sn: str) -> FsiTill:
        unsigned = FsiTill(fixmedins_code, dev_no, "", card_sn)
        body = {"signIn": {"opter_no": OPTER, "mac": "", "ip": ""}}
        post = EnvelopePost(self.host, unsigned, "9001", body)
        status, data = await self._send(post.build(self.msgid("S", len(self.tills)), ""))
        if status != 200 or not data.startswith(_OK_PREFIX):
            raise auth.AuthFailed("SIGNIN_" + refusal_code(data))
        sign_no = json.loads(data)["output"]["signinoutb"]["sign_no"]
        till = FsiTill(fixmedins_code, dev_no, sign_no, card_sn)
        self.tills.append(till)
        body_2101 = pharmacy_input(card_sn, self.lines)
        self._posts.append(
            (
                EnvelopePost(self.host, till, "2101", body_2101),
                EnvelopePost(self.host, till, "2102", body_2101),
            )
        )
        return till

    async def settlement(self, i: int) -> None:
        """2101 (the estimate shown), then 2102; each a new msgid."""
        pre, settle = self._posts[i % len(self._posts)]
        status, data = await self._send(pre.build(self.msgid("P", i), self.inf_time()))
        if status != 200 or not data.startswith(_OK_PREFIX):
            raise auth.AuthFailed("PRE_" + refusal_code(data))
        status, data = await self._send(settle.build(self.msgid("F", i), self.inf_time()))
        if status != 200 or not data.startswith(_OK_PREFIX):
            raise auth.AuthFailed(refusal_code(data))


Op = Callable[[int], Awaitable[None]]


def _from(op: Op, start: int) -> Op:
    return lambda i: op(start + i)


async def measure_doors(
    *,
    v1: Op,
    fsi: Op,
    pool: Callable[[int], Any],
    concurrencies: Sequence[int],
    seconds: float,
    server_pgid: int | None,
    rounds: int = ROUNDS,
) -> dict[str, Any]:
    """Closed loops of both doors at each concurrency, back to back, ``rounds`` times in
    turn (v1 fsi fsi v1 …). ``pool(limit)`` is an async context manager that opens the
    phase's connections (and hands them to both doors)."""
    phases: dict[str, list[auth.Phase]] = {"v1": [], "fsi": []}
    offset = 0
    doors = [("v1", v1), ("fsi", fsi)]
    for concurrency in concurrencies:
        turns = [doors if n % 2 == 0 else doors[::-1] for n in range(rounds)]
        for name, op in (pair for turn in turns for pair in turn):
            async with pool(concurrency):
                await auth.closed_loop(_from(op, offset), concurrency, min(0.3, seconds))
                offset += 10_000_000
                phase = await auth.closed_loop(
                    _from(op, offset), concurrency, seconds, server_pgid=server_pgid
                )
                offset += 10_000_000
            phases[name].append(phase)
    return door_figures(phases["v1"], phases["fsi"])


def _side(best: auth.Phase, phases: Sequence[auth.Phase]) -> dict[str, Any]:
    return {
        "settle_per_s": round(best.per_s, 1),
        "concurrency": best.concurrency,
        "errors": dict(best.errors),
        "p50_ms": auth._round(auth._percentile(best.latencies_ms, 50)),
        "p99_ms": auth._round(auth._percentile(best.latencies_ms, 99)),
        "server_cpu_ms_per_settlement": auth._server_cpu_ms(best),
        "client_cpu_ms_per_settlement": auth._round(
            best.client_cpu_s / best.ok * 1000 if best.ok else None, 3
        ),
        "by_concurrency": [auth._phase_summary(p) for p in phases],
    }


def _ratio(top: float | None, bottom: float | None) -> float | None:
    return round(top / bottom, 3) if top is not None and bottom else None


def door_figures(v1: Sequence[auth.Phase], fsi: Sequence[auth.Phase]) -> dict[str, Any]:
    """Both doors' figures (each at its best concurrency) and the ratios of fsi to v1."""
    if not v1 or not fsi:
        raise ValueError("both doors need at least one phase")
    best_v1 = max(v1, key=lambda p: p.per_s)
    best_fsi = max(fsi, key=lambda p: p.per_s)
    v1_side, fsi_side = _side(best_v1, v1), _side(best_fsi, fsi)
    return {
        "v1": v1_side,
        "fsi": fsi_side,
        "ratio_fsi_to_v1": _ratio(best_fsi.per_s, best_v1.per_s),
        "server_cpu_ratio_fsi_to_v1": _ratio(
            fsi_side["server_cpu_ms_per_settlement"], v1_side["server_cpu_ms_per_settlement"]
        ),
    }
