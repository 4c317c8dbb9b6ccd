"""DEMO ONLY: demo cards as software cards, in memory or served to pcscd through vpcd.

Everything derives from the demo seed (:mod:`sscard.demo`, and
:func:`sscard.terminal_auth.demo_terminal` for the terminals), so ``ssc-terminal demo`` needs
nothing from the gateway's files: the gateway loaded the same world from the same seed.

:func:`serve_through_pcscd` plugs a software card into a vsmartcard *vpcd* reader slot of
pcscd, starting pcscd when none runs and this process may (root, pcscd and the vpcd driver
installed). It shares pcscd with other tools the way tests/integration/pcscd.py does (the same
lock files): a pcscd this process started is stopped on exit only if no one else uses it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final

from sscard import demo as sd
from sscard.softcard import make_legacy_card, make_third_gen_card
from sscard.vpcd import VirtualCard, VirtualCardSlot, VpcdError
from terminal_sdk.client import FeeLine
from terminal_sdk.errors import TerminalError
from terminal_sdk.readers.pcsc import PcscReader

__all__ = [
    "DEMO_LINES",
    "DEMO_PHARMACY_LINES",
    "PcscUnavailable",
    "PcscdService",
    "demo_software_card",
    "serve_through_pcscd",
]

#: A small outpatient visit from the demo catalogue (settlement/catalogues/demo.toml).
DEMO_LINES: Final = (
    FeeLine("DEMO-A-002", 1, 2500),  # 普通门诊诊察费 consultation, 25.00 yuan
    FeeLine("DEMO-A-003", 1, 3200),  # 血常规 full blood count, 32.00 yuan
    FeeLine("DEMO-A-001", 2, 1850),  # 阿莫西林胶囊 amoxicillin, 2 × 18.50 yuan
)

#: A purchase at a designated pharmacy (drugs only: a pharmacy settles visit type "pharmacy").
DEMO_PHARMACY_LINES: Final = (
    FeeLine("DEMO-A-001", 2, 1850),  # 阿莫西林胶囊 amoxicillin, 2 × 18.50 yuan
    FeeLine("DEMO-B-001", 1, 4600),  # 阿托伐他汀钙片 atorvastatin, 46.00 yuan
)

VPCD_READER_CONF: Final = Path("/etc/reader.conf.d/vpcd")
VPCD_BASE_PORT: Final = 0x8C7B  # 35963: CHANNELID of Debian's /etc/reader.conf.d/vpcd
VPCD_READER_PREFIX: Final = "Virtual PCD"
# The lock files of tests/integration/pcscd.py: tools and tests on one machine share pcscd.
_LOCK_DIR: Final = Path(tempfile.gettempdir())
_START_LOCK: Final = _LOCK_DIR / "ssc-pcscd-start.lock"
_USERS_LOCK: Final = _LOCK_DIR / "ssc-pcscd-users.lock"
_POLL_S: Final = 0.05


class PcscUnavailable(Exception):
    """PC/SC with the vpcd driver cannot be used here; the message says why."""


def demo_software_card(seed: str, m: int, *, pki: sd.DemoPki | None = None) -> VirtualCard:
    """Demo card ``m`` as a software card: even ``m`` third generation, odd ``m`` legacy."""
    card = sd.demo_card(seed, m)
    if card.generation == 3:
        pki = pki if pki is not None else sd.demo_pki(seed)
        certificate = sd.demo_card_certificate(seed, m, pki).der
        return make_third_gen_card(
            card.identity, sd.demo_card_key(seed, m), certificate, sd.DEMO_PIN
        )
    return make_legacy_card(card.identity, sd.legacy_master_key(seed), sd.DEMO_PIN)


@dataclass(frozen=True, slots=True)
class PcscdService:
    """The pcscd in use: ``started`` says whether this process started it."""

    vpcd_readers: tuple[str, ...]
    started: bool


def _reader_names() -> list[str] | None:
    """pcscd's reader names, or None if pcscd does not answer."""
    reader = PcscReader()
    try:
        return reader.reader_names()
    except TerminalError:
        return None
    finally:
        reader.close()


def _vpcd_names(names: list[str]) -> tuple[str, ...]:
    return tuple(sorted(n for n in names if n.startswith(VPCD_READER_PREFIX)))


@contextlib.contextmanager
def _flock(path: Path, mode: int) -> Iterator[IO[Any]]:
    with path.open("a+") as handle:
        fcntl.flock(handle, mode)
        try:
            yield handle
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _pcscd_command(binary: str) -> list[str]:
    help_text = subprocess.run(
        [binary, "--help"], capture_output=True, text=True, timeout=10, check=False
    )
    command = [binary, "--foreground"]
    if "--disable-polkit" in help_text.stdout + help_text.stderr:
        command.append("--disable-polkit")  # no polkit agent behind a CLI demo
    return command


def _start_pcscd() -> subprocess.Popen[bytes]:
    binary = shutil.which("pcscd") or shutil.which("pcscd", path="/usr/sbin:/sbin")
    if binary is None:
        raise PcscUnavailable("pcscd is not running and not installed (apt-get install pcscd)")
    if os.geteuid() != 0:
        raise PcscUnavailable("pcscd is not running, and only root may start it")
    if not VPCD_READER_CONF.exists():
        raise PcscUnavailable(f"{VPCD_READER_CONF} is missing (apt-get install vsmartcard-vpcd)")
    return subprocess.Popen(
        _pcscd_command(binary),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _stop_pcscd(process: subprocess.Popen[bytes]) -> None:
    with _flock(_START_LOCK, fcntl.LOCK_EX), _USERS_LOCK.open("a+") as users:
        try:
            fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # someone else uses it now: leave it running for them
        try:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=5)
        finally:
            fcntl.flock(users, fcntl.LOCK_UN)


@contextlib.contextmanager
def pcscd_service(*, allow_start: bool = True, timeout_s: float = 10.0) -> Iterator[PcscdService]:
    """The running pcscd with vpcd readers, or one started here (and stopped on exit when
    nobody else uses it). PcscUnavailable says why neither works."""
    with contextlib.ExitStack() as stack:
        process: subprocess.Popen[bytes] | None = None
        with _flock(_START_LOCK, fcntl.LOCK_EX):
            names = _reader_names()
            if names is None:
                if not allow_start:
                    raise PcscUnavailable("pcscd is not running")
                process = _start_pcscd()
                stack.callback(_stop_pcscd, process)
            deadline = time.monotonic() + timeout_s
            readers: tuple[str, ...] = ()
            while True:
                names = _reader_names()
                readers = _vpcd_names(names or [])
                if readers or time.monotonic() >= deadline:
                    break
                if process is not None and process.poll() is not None:
                    raise PcscUnavailable(f"pcscd exited with {process.returncode} on start")
                time.sleep(_POLL_S)
            if names is None:
                raise PcscUnavailable("pcscd does not answer")
            if not readers:
                raise PcscUnavailable(
                    f"pcscd lists no '{VPCD_READER_PREFIX}' reader: is vsmartcard-vpcd installed"
                    " (pcscd reads its driver list only when it starts)?"
                )
            users = stack.enter_context(_USERS_LOCK.open("a+"))
            fcntl.flock(users, fcntl.LOCK_SH)
        stack.callback(fcntl.flock, users, fcntl.LOCK_UN)
        yield PcscdService(readers, process is not None)


@contextlib.contextmanager
def _claim_slot(readers: tuple[str, ...]) -> Iterator[tuple[str, int]]:
    """A vpcd slot no other process on this machine is using (a per-port lock)."""
    for index, name in enumerate(readers):
        port = VPCD_BASE_PORT + index
        handle = (_LOCK_DIR / f"ssc-vpcd-{port}.lock").open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        try:
            yield name, port
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()
        return
    raise PcscUnavailable("every vpcd reader slot is in use by another program")


@contextlib.contextmanager
def serve_through_pcscd(
    card: VirtualCard, *, allow_start: bool = True, timeout_s: float = 10.0
) -> Iterator[tuple[str, bool]]:
    """Insert ``card`` into a free vpcd reader of pcscd; yields (reader name, pcscd started
    here). The card is pulled out on exit."""
    with contextlib.ExitStack() as stack:
        service = stack.enter_context(pcscd_service(allow_start=allow_start, timeout_s=timeout_s))
        name, port = stack.enter_context(_claim_slot(service.vpcd_readers))
        slot = VirtualCardSlot(port=port)
        try:
            slot.insert(card)
        except VpcdError as exc:
            raise PcscUnavailable(str(exc)) from exc
        stack.callback(slot.remove)
        if not slot.wait_until_polled(timeout_s):
            raise PcscUnavailable(f"pcscd did not see the card in {name} in {timeout_s} s")
        yield name, service.started
