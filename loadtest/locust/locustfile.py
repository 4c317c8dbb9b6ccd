"""Locust suite of the SSC settlement gateway: a Shanghai day at its hospitals and pharmacies.

Run it against a gateway serving the demo world (``scripts/serve``, or ``python -m gateway
serve``), e.g.::

    locust -f loadtest/locust --headless --host http://127.0.0.1:8080 \\
        --ssc-shape day --ssc-duration 600 --ssc-peak-users 40 \\
        --csv var/locust --html var/locust.html

Locust loads this file only (the other modules of the package start with ``_``, which Locust
skips). Every command, the options and how to read the results: docs/load-testing.md.

- Users: :class:`HospitalTerminal` and :class:`PharmacyTerminal` (``FastHttpUser``), each a
  demo terminal of the demo world (:mod:`loadtest.locust._world`), signing every request with
  HMAC-SM3; patients' cards answer the gateway's challenges with real SM2 signatures or
  legacy cryptograms (:mod:`loadtest.locust._cards`).
- What they do, and how often: the table in :mod:`loadtest.locust._mix`, the one place where
  the weights are; the visits themselves: :mod:`loadtest.locust._visits`.
- Load shapes (``--ssc-shape day|step|spike|soak``, ``none`` for Locust's own -u/-r/-t):
  :mod:`loadtest.locust._shapes`.
- At the end, the books check (:mod:`loadtest.locust._books`): what the users saw confirmed
  against the gateway's books; disagreeing books make the run exit with code 3. In
  distributed mode each worker sends its tally to the master (runner messages
  ``ssc_flush`` / ``ssc_tally``), which checks.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import locust.argument_parser
from locust import FastHttpUser, LoadTestShape, between, events, task
from locust.contrib.fasthttp import FastHttpSession
from locust.env import Environment
from locust.runners import LocalRunner, MasterRunner, WorkerRunner

from loadtest.locust import _mix as mix
from loadtest.locust import _run
from loadtest.locust import _shapes as shapes
from loadtest.locust._books import BooksReport, Comparison, Tally, summarise
from loadtest.locust._gateway_books import BooksUnreadable, GatewayBooks, check_books
from loadtest.locust._http import SignedClient
from loadtest.locust._visits import Visitor, next_visit, resolve_pending
from loadtest.locust._world import Terminal, pick_terminal
from sscard import demo as sd

log = logging.getLogger("ssc.locust")

#: Exit code of a run whose books disagree (or could not be read). Locust's own codes: 1 when
#: a request failed, 2 on an unhandled error.
BOOKS_EXIT_CODE: Final = 3
#: A ramp-down lets a user finish the visit it is in (Locust kills users at once when
#: ``--stop-timeout`` is 0); a visit takes well under this.
STOP_TIMEOUT_S: Final = 30.0
#: How long the end of a run waits for the visits in progress, then for the workers' tallies.
DRAIN_S: Final = 30.0
FLUSH_WAIT_S: Final = 120.0
TALLY_CHUNK: Final = 2_000
NETWORK_TIMEOUT_S: Final = 15.0
CONNECT_TIMEOUT_S: Final = 5.0


# -- a worker's cost per spawn message ----------------------------------------------------------

# Locust 2.47's worker filters the options the master sends with every spawn message through
# `argument_parser.default_args_dict()` once per option: each call builds Locust's whole
# argument parser and parses it (~20 ms), so one spawn message costs a worker ~0.5 s of CPU
# during which its event loop does nothing else. A shape sends one whenever the user count
# changes (every hour slot of the compressed day); on a busy machine the stall outgrew
# Locust's 3-second heartbeat and the master declared healthy workers missing. The default
# options never change during a run, so they are computed once. (Only the keys are read.)
if not getattr(locust.argument_parser.default_args_dict, "cache_info", None):
    locust.argument_parser.default_args_dict = functools.cache(
        locust.argument_parser.default_args_dict
    )


# -- options -----------------------------------------------------------------------------------


def _options(parser: Any) -> None:
    group = parser.add_argument_group("SSC gateway suite (docs/load-testing.md)")
    group.add_argument(
        "--ssc-shape",
        choices=(*shapes.SHAPES, "none"),
        default="day",
        env_var="LOCUST_SSC_SHAPE",
        help="load shape: a compressed Shanghai day, step, spike, soak; none = -u/-r/-t",
    )
    group.add_argument(
        "--ssc-duration",
        type=float,
        default=0.0,
        env_var="LOCUST_SSC_DURATION",
        help="seconds the shape runs (default: day 600, step 300, spike 180, soak 3600)",
    )
    group.add_argument(
        "--ssc-peak-users",
        type=int,
        default=40,
        env_var="LOCUST_SSC_PEAK_USERS",
        help="users at the top of the shape (default 40)",
    )
    group.add_argument(
        "--ssc-seed",
        default=sd.DEFAULT_DEMO_SEED,
        env_var="LOCUST_SSC_SEED",
        help="the demo world's seed: the gateway's GATEWAY_DEMO_SEED (default ssc-demo-2019)",
    )
    group.add_argument(
        "--ssc-books",
        choices=("on", "off"),
        default="on",
        env_var="LOCUST_SSC_BOOKS",
        help="check the gateway's books against what the users saw at the end (default on)",
    )
    group.add_argument(
        "--ssc-books-report",
        default="",
        env_var="LOCUST_SSC_BOOKS_REPORT",
        help="also write the books check's result to this JSON file",
    )
    group.add_argument(
        "--ssc-hospitals",
        type=int,
        default=400,
        env_var="LOCUST_SSC_HOSPITALS",
        help="users act as terminals of the first N demo hospitals only (1-400, default 400)",
    )
    group.add_argument(
        "--ssc-pharmacies",
        type=int,
        default=800,
        env_var="LOCUST_SSC_PHARMACIES",
        help="users act as terminals of the first N demo pharmacies only (1-800, default 800)",
    )
    group.add_argument(
        "--ssc-cover-mix",
        action="store_true",
        default=False,
        env_var="LOCUST_SSC_COVER_MIX",
        help="each user first makes one visit of every kind of its row, then draws by weight",
    )


def _option(environment: Environment, name: str, default: Any) -> Any:
    options = environment.parsed_options
    return getattr(options, name, default) if options is not None else default


def _plan(environment: Environment) -> shapes.ShapePlan:
    shape = str(_option(environment, "ssc_shape", "day"))
    duration = float(_option(environment, "ssc_duration", 0.0) or 0.0)
    return shapes.ShapePlan(
        shape,
        duration or shapes.DEFAULT_DURATION_S[shape],
        int(_option(environment, "ssc_peak_users", 40)),
    )


def _books_on(environment: Environment) -> bool:
    return str(_option(environment, "ssc_books", "on")) == "on"


# -- users -------------------------------------------------------------------------------------


class _TerminalUser(FastHttpUser):
    """One demo terminal at a counter (abstract: the two classes below say which kind)."""

    abstract = True
    host = "http://127.0.0.1:8080"  # scripts/serve's; --host overrides
    wait_time = between(0.5, 1.5)  # the clerk calls the next patient
    network_timeout = NETWORK_TIMEOUT_S
    connection_timeout = CONNECT_TIMEOUT_S
    kind = "hospital"

    def on_start(self) -> None:
        run = _run.current()
        rng = random.Random()
        level = None
        if self.kind == "hospital":
            levels = list(mix.HOSPITAL_LEVEL_WEIGHTS)
            weights = [mix.HOSPITAL_LEVEL_WEIGHTS[lv] for lv in levels]
            level = rng.choices(levels, weights=weights)[0]
        terminal = pick_terminal(
            run.seed, self.kind, level, rng, hospitals=run.hospitals, pharmacies=run.pharmacies
        )
        row = mix.row_for(self.kind, level)
        self.visitor = Visitor(SignedClient(self.client, terminal), run, rng, row)
        if run.cover_mix:
            self.visitor.cover = [kind for kind, weight in row.items() if weight > 0]
            rng.shuffle(self.visitor.cover)

    @task
    def visit(self) -> None:
        next_visit(self.visitor)


class HospitalTerminal(_TerminalUser):
    """A terminal of one of the 400 demo hospitals, its level drawn by the mix's weights."""

    weight = mix.USER_CLASS_WEIGHTS["HospitalTerminal"]
    kind = "hospital"


class PharmacyTerminal(_TerminalUser):
    """A till of one of the 800 demo pharmacies."""

    weight = mix.USER_CLASS_WEIGHTS["PharmacyTerminal"]
    kind = "pharmacy"


# -- shape -------------------------------------------------------------------------------------


class ShanghaiShape(LoadTestShape):
    """The shape chosen with ``--ssc-shape`` (:mod:`loadtest.locust._shapes`)."""

    def tick(self) -> tuple[int, float] | None:
        assert self.runner is not None
        # start_time: set when the shape starts (reset_time), as get_run_time() reads it.
        elapsed_s = time.perf_counter() - float(self.start_time)
        return shapes.tick(_plan(self.runner.environment), elapsed_s)


# -- the books: collected at the end, checked by the master (or the only process) ----------


class _Books:
    """The checking side (master, or the single process): the run's start on the gateway's
    clock, and the tallies coming in."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.cutoff: dt.datetime | None = None
        self.clock_error = ""
        self.tally = Tally()
        self.done: set[str] = set()
        self.expected: set[str] = set()
        #: Workers that reported running users during this run: each owes a tally, even one
        #: that died (its settlements would be unknown, so the books cannot be called equal).
        self.participants: set[str] = set()


_BOOKS = _Books()


def _gateway(environment: Environment) -> GatewayBooks:
    host = environment.host or _TerminalUser.host
    return GatewayBooks(host, str(_option(environment, "ssc_seed", sd.DEFAULT_DEMO_SEED)))


def _session_for(environment: Environment) -> Callable[[Terminal], FastHttpSession]:
    """Sessions for the requests resent at the end, counted in the run's statistics; one
    serves every terminal (each request's signature names its terminal)."""
    session = FastHttpSession(
        environment.host or _TerminalUser.host,
        environment.events.request,
        user=None,
        network_timeout=NETWORK_TIMEOUT_S,
        connection_timeout=CONNECT_TIMEOUT_S,
    )
    return lambda terminal: session


def _validate(environment: Environment) -> None:
    """Refuse options that cannot work, before anything starts (a message, no traceback)."""
    if _option(environment, "ssc_shape", "day") != "none":
        try:
            _plan(environment)
        except ValueError as exc:
            raise SystemExit(f"--ssc-shape/--ssc-duration/--ssc-peak-users: {exc}") from None
    hospitals = int(_option(environment, "ssc_hospitals", 400))
    pharmacies = int(_option(environment, "ssc_pharmacies", 800))
    if not (1 <= hospitals <= 400 and 1 <= pharmacies <= 800):
        raise SystemExit("--ssc-hospitals must be 1-400 and --ssc-pharmacies 1-800")
    try:
        _gateway(environment)
    except ValueError as exc:
        raise SystemExit(f"--host: {exc}") from None


def _init(environment: Environment, **_: Any) -> None:
    runner = environment.runner
    if not isinstance(runner, WorkerRunner):
        _validate(environment)
    if _option(environment, "ssc_shape", "day") == "none":
        environment.shape_class = None  # Locust's -u / -r / -t drive the run
    if not isinstance(runner, WorkerRunner) and not environment.stop_timeout:
        environment.stop_timeout = STOP_TIMEOUT_S
    if isinstance(runner, MasterRunner | LocalRunner):
        runner.register_message("ssc_tally", _on_tally)
    if isinstance(runner, WorkerRunner):
        runner.register_message("ssc_flush", _on_flush, concurrent=True)


def _test_start(environment: Environment, **_: Any) -> None:
    _run.begin(
        str(_option(environment, "ssc_seed", sd.DEFAULT_DEMO_SEED)),
        cover_mix=bool(_option(environment, "ssc_cover_mix", False)),
        hospitals=int(_option(environment, "ssc_hospitals", 400)),
        pharmacies=int(_option(environment, "ssc_pharmacies", 800)),
    )
    if isinstance(environment.runner, WorkerRunner) or not _books_on(environment):
        return
    _BOOKS.reset()
    try:
        _BOOKS.cutoff = _gateway(environment).clock()
    except BooksUnreadable as exc:
        _BOOKS.clock_error = str(exc)
        log.error("SSC books check: cannot read the gateway's clock at the start: %s", exc)


def _flush(environment: Environment) -> None:
    """End of the run in this process: no new visits, wait for those in progress, resolve
    the money requests still in doubt, send the tally to the checker (always: a tally that
    says what went wrong beats a checker waiting for one)."""
    run = _run.current()
    run.closing = True
    try:
        deadline = time.monotonic() + DRAIN_S
        while run.inflight > 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        if run.inflight > 0:
            run.tally.errors.append(f"{run.inflight} visit(s) still running after {DRAIN_S:.0f} s")
        if run.pending:
            resent = len(run.pending)
            left = resolve_pending(run, _session_for(environment))
            log.info(
                "SSC books check: %d money request(s) without a final answer resent at the "
                "end, %d still in doubt",
                resent,
                left,
            )
    except Exception as exc:
        log.exception("SSC books check: gathering this process's tally failed")
        run.tally.errors.append(f"gathering a tally failed: {type(exc).__name__}: {exc}")
    runner = environment.runner
    assert runner is not None
    for chunk in run.tally.chunks(TALLY_CHUNK):
        runner.send_message("ssc_tally", chunk)


def _on_flush(environment: Environment, msg: Any, **_: Any) -> None:
    if _books_on(environment):
        _flush(environment)


def _on_worker_report(client_id: str, data: Any, **_: Any) -> None:
    if isinstance(data, dict) and data.get("user_count"):
        _BOOKS.participants.add(str(client_id))


def _on_tally(environment: Environment, msg: Any, **_: Any) -> None:
    del environment
    data = msg.data if isinstance(msg.data, dict) else {}
    _BOOKS.tally.absorb(data)
    if data.get("last"):
        _BOOKS.done.add(str(msg.node_id))


def _test_stopping(environment: Environment, **_: Any) -> None:
    if not _books_on(environment):
        return
    runner = environment.runner
    if isinstance(runner, LocalRunner):
        _flush(environment)
    elif isinstance(runner, MasterRunner):
        workers = [
            client.id
            for client in (*runner.clients.ready, *runner.clients.spawning, *runner.clients.running)
        ]
        runner.send_message("ssc_flush")
        deadline = time.monotonic() + FLUSH_WAIT_S
        while not set(workers) <= _BOOKS.done and time.monotonic() < deadline:
            time.sleep(0.1)
        _BOOKS.expected = set(workers) | _BOOKS.participants


def _test_stop(environment: Environment, **_: Any) -> None:
    runner = environment.runner
    if isinstance(runner, WorkerRunner) or not _books_on(environment):
        return
    report = _check(environment)
    log.info(report.line)
    for problem in report.problems:
        log.error("SSC books check: %s", problem)
    path = str(_option(environment, "ssc_books_report", ""))
    if path:
        Path(path).write_text(
            json.dumps(
                {
                    "ok": report.ok,
                    "line": report.line,
                    "problems": list(report.problems),
                    "figures": dict(report.figures),
                },
                indent=2,
            )
            + "\n",
            encoding="utf-8",
        )
    if not report.ok:
        environment.process_exit_code = BOOKS_EXIT_CODE


def _check(environment: Environment) -> BooksReport:
    try:
        return _check_books(environment)
    except Exception as exc:
        log.exception("SSC books check crashed")
        comparison = Comparison()
        comparison.problem(f"the books check crashed: {type(exc).__name__}: {exc}")
        return summarise(_BOOKS.tally, comparison, matched=0, pages=0)


def _check_books(environment: Environment) -> BooksReport:
    tally = _BOOKS.tally
    missing = sorted(_BOOKS.expected - _BOOKS.done)
    if missing or _BOOKS.cutoff is None:
        comparison = Comparison()
        for worker in missing:
            comparison.problem(f"worker {worker} sent no tally: its settlements are unknown")
        if _BOOKS.cutoff is None:
            comparison.problem(
                f"the run's start on the gateway's clock is unknown: {_BOOKS.clock_error}"
            )
        return summarise(tally, comparison, matched=0, pages=0)
    gateway = _gateway(environment)
    try:
        now = gateway.clock()
    except BooksUnreadable as exc:
        comparison = Comparison()
        comparison.problem(f"the gateway's books could not be read: {exc}")
        return summarise(tally, comparison, matched=0, pages=0)
    return check_books(tally, gateway, _BOOKS.cutoff, now)


# Locust's event hooks are untyped: registered through Any, so that mypy --strict holds here.
def _listen(hook: Any, handler: Callable[..., None]) -> None:
    hook.add_listener(handler)


_listen(events.init_command_line_parser, _options)
_listen(events.init, _init)
_listen(events.test_start, _test_start)
_listen(events.test_stopping, _test_stopping)
_listen(events.test_stop, _test_stop)
_listen(events.worker_report, _on_worker_report)
