"""Start and drive the hub simulator (``python -m settlement.hub``) as a real process.

For integration tests (tests/integration/ puts this folder on sys.path: ``from hubproc import
start_hub``)::

    with start_hub(tmp_path, seed="t", drop_ratio=0.0) as hub:
        hub.url                               # "http://127.0.0.1:<port>"
        hub.set_faults(drop_after_commit_ratio=1.0)
        hub.post(envelope)                    # (HTTP status, JSON body or None)
        hub.query(msgid)                      # 5201 output
        hub.totals("320000", day, day)        # 3201 output
    # stopped: SIGTERM, then SIGKILL after a grace period; never leaves a process behind

As a fixture::

    @pytest.fixture
    def hub(tmp_path):
        with start_hub(tmp_path) as running:
            yield running

Sync (urllib) on purpose: usable from sync and async tests alike; admin calls are short.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from settlement.crossprov import wire

__all__ = ["DEFAULT_INSTITUTION", "HubProcess", "HubStartError", "free_port", "start_hub"]

DEFAULT_INSTITUTION = "H31000000001"
START_TIMEOUT_S = 30.0
STOP_GRACE_S = 10.0
_REPO_ROOT = Path(__file__).resolve().parents[2]
# No proxies: an http_proxy in the environment must not route 127.0.0.1 elsewhere.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class HubStartError(RuntimeError):
    """The simulator exited or did not become ready; the message carries its log."""


def free_port() -> int:
    """A port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class HubProcess:
    """A running simulator. Use through :func:`start_hub`."""

    def __init__(self, process: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
        self.process = process
        self.port = port
        self.host = "127.0.0.1"
        self.log_path = log_path
        self._sequence = itertools.count(1)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    # --- raw HTTP ------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        body: object = None,
        *,
        headers: Mapping[str, str] | None = None,
        timeout_s: float = 10.0,
    ) -> tuple[int, Any]:
        """(status, parsed JSON or None). Connection errors (refused, dropped) propagate as
        OSError / http.client exceptions, so a test can assert on them."""
        data = None if body is None else json.dumps(body).encode()
        sent_headers = {"Content-Type": "application/json", **(headers or {})}
        req = urllib.request.Request(
            self.url + path, data=data, method=method, headers=sent_headers
        )
        try:
            with _OPENER.open(req, timeout=timeout_s) as response:
                return response.status, _json_or_none(response.read())
        except urllib.error.HTTPError as error:
            with error:
                return error.code, _json_or_none(error.read())

    def post(self, envelope: Mapping[str, Any], *, fault: str | None = None) -> tuple[int, Any]:
        """POST an envelope to ``/hub/v1/<infno>``; ``fault`` sets ``X-Hub-Fault``."""
        headers = {"X-Hub-Fault": fault} if fault else None
        return self.request("POST", f"/hub/v1/{envelope['infno']}", envelope, headers=headers)

    # --- envelopes -----------------------------------------------------------------------------

    def next_msgid(self, fixmedins_code: str = DEFAULT_INSTITUTION) -> str:
        """A fresh msgid (this helper's own sequence, wrapping at 10,000)."""
        return wire.make_msgid(
            fixmedins_code, dt.datetime.now(wire.BEIJING), next(self._sequence) % 10_000
        )

    def envelope(
        self,
        infno: str,
        payload: Mapping[str, Any],
        *,
        insuplc_admdvs: str = "320000",
        msgid: str | None = None,
        fixmedins_code: str = DEFAULT_INSTITUTION,
    ) -> dict[str, Any]:
        return wire.HubRequest.build(
            infno,
            msgid=msgid or self.next_msgid(fixmedins_code),
            insuplc_admdvs=insuplc_admdvs,
            fixmedins_code=fixmedins_code,
            input=payload,
            at=dt.datetime.now(wire.BEIJING),
        ).to_json()

    def call(
        self, infno: str, payload: Mapping[str, Any], *, insuplc_admdvs: str = "320000"
    ) -> wire.HubResponse:
        """One processed call; AssertionError unless the hub answered HTTP 200."""
        status, body = self.post(self.envelope(infno, payload, insuplc_admdvs=insuplc_admdvs))
        assert status == 200, (status, body)
        return wire.parse_response(body)

    def query(self, omsgid: str, *, insuplc_admdvs: str = "320000") -> dict[str, Any]:
        """5201 output for ``omsgid`` (``status``, ``setlinfo`` when settled)."""
        return dict(self.call("5201", {"omsgid": omsgid}, insuplc_admdvs=insuplc_admdvs).output)

    def reverse(
        self, omsgid: str, oinfno: str, *, insuplc_admdvs: str = "320000"
    ) -> wire.HubResponse:
        return self.call(
            "2601", {"omsgid": omsgid, "oinfno": oinfno}, insuplc_admdvs=insuplc_admdvs
        )

    def totals(self, insuplc_admdvs: str, begin: dt.date, end: dt.date) -> dict[str, Any]:
        """3201 output for one province and period (Beijing dates, inclusive)."""
        return self._period("3201", insuplc_admdvs, begin, end)

    def detail(self, insuplc_admdvs: str, begin: dt.date, end: dt.date) -> dict[str, Any]:
        """3202 output for one province and period."""
        return self._period("3202", insuplc_admdvs, begin, end)

    def _period(
        self, infno: str, insuplc_admdvs: str, begin: dt.date, end: dt.date
    ) -> dict[str, Any]:
        payload = {
            "insuplc_admdvs": insuplc_admdvs,
            "stmt_begndate": begin.isoformat(),
            "stmt_enddate": end.isoformat(),
        }
        response = self.call(infno, payload, insuplc_admdvs=insuplc_admdvs)
        assert response.ok, response
        return dict(response.output)

    # --- faults --------------------------------------------------------------------------------

    def set_faults(self, **switches: Any) -> dict[str, Any]:
        """PUT /hub/admin/faults with the given switches (``latency_ms``,
        ``drop_after_commit_ratio``, ``error_5xx_ratio``, ``refuse_connections_s``, ``seed``);
        the others keep their values. Returns the switches now in force."""
        status, body = self.request("PUT", "/hub/admin/faults", switches)
        assert status == 200, (status, body)
        assert isinstance(body, dict)
        return body

    def get_faults(self) -> dict[str, Any]:
        status, body = self.request("GET", "/hub/admin/faults")
        assert status == 200, (status, body)
        assert isinstance(body, dict)
        return body

    def clear_faults(self) -> dict[str, Any]:
        return self.set_faults(latency_ms=0, drop_after_commit_ratio=0.0, error_5xx_ratio=0.0)

    def calls_in_flight(self) -> int:
        """Calls the hub has received and not answered yet (GET /hub/admin/healthz)."""
        status, body = self.request("GET", "/hub/admin/healthz", timeout_s=2.0)
        assert status == 200, body
        return int(body["calls_in_flight"])

    def healthy(self) -> bool:
        try:
            status, _ = self.request("GET", "/hub/admin/healthz", timeout_s=2.0)
        except OSError:
            return False
        return status == 200

    def wait_healthy(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Poll healthz until it answers (after start, or after refuse_connections_s)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise HubStartError(f"hub exited with {self.process.returncode}:\n{self.log()}")
            if self.healthy():
                return
            time.sleep(0.05)
        raise HubStartError(f"hub not healthy within {timeout_s} s:\n{self.log()}")

    # --- stopping ------------------------------------------------------------------------------

    def stop(self, grace_s: float = STOP_GRACE_S) -> int:
        """SIGTERM, then SIGKILL after ``grace_s``. Returns the exit code (negative: the
        signal that ended it). Safe to call twice."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(grace_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(grace_s)
        return self.process.returncode


def _json_or_none(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


@contextlib.contextmanager
def start_hub(
    tmp_path: Path | None = None,
    *,
    seed: str = "hub-test-seed",
    latency_ms: int = 0,
    drop_ratio: float = 0.0,
    error_ratio: float = 0.0,
    fault_seed: int = 0,
    extra_args: Sequence[str] = (),
    start_timeout_s: float = START_TIMEOUT_S,
) -> Iterator[HubProcess]:
    """Run ``python -m settlement.hub`` on a free 127.0.0.1 port until the block ends. Its log
    goes to ``tmp_path/hub-<port>.log`` (a temporary directory when None). The process is
    stopped (SIGTERM, then SIGKILL) however the block ends, start-up failures included."""
    with contextlib.ExitStack() as stack:
        if tmp_path is None:
            tmp_path = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hub-")))
        port = free_port()
        log_path = tmp_path / f"hub-{port}.log"
        argv = [
            sys.executable,
            "-m",
            "settlement.hub",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--seed",
            seed,
            "--latency-ms",
            str(latency_ms),
            "--drop-ratio",
            str(drop_ratio),
            "--error-ratio",
            str(error_ratio),
            "--fault-seed",
            str(fault_seed),
            *extra_args,
        ]
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                argv,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=_REPO_ROOT,
                start_new_session=True,  # its own process group: stop() reaches everything
            )
        hub = HubProcess(process, port, log_path)
        try:
            hub.wait_healthy(start_timeout_s)
            yield hub
        finally:
            hub.stop()
