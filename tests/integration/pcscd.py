"""Run pcscd with the vsmartcard vpcd driver for integration tests (no systemd, no udev).

How it works here (Debian 12, pcsc-lite 1.9.9, vsmartcard-vpcd 3.3), as root:

* ``pcscd --foreground`` starts in ~0.1 s; it needs no udev or systemd (socket activation is
  optional: without ``LISTEN_FDS`` it creates ``/run/pcscd/pcscd.comm`` itself). Debian's
  build has no polkit (``pcscd --version`` lists no ``polkit``); where pcscd is built with
  polkit, ``--disable-polkit`` is in ``pcscd --help`` and is passed, because a test runs
  without a polkit agent.
* The driver's config ``/etc/reader.conf.d/vpcd`` gives two readers, ``Virtual PCD 00 00`` and
  ``Virtual PCD 00 01``, whose driver **listens** on TCP 35963 and 35964 (on all interfaces).
  A software card connects to one of them (:class:`sscard.vpcd.VirtualCardSlot`).
* Only one pcscd can run per machine (its socket and pid file are compiled in under
  ``/run/pcscd``). If one already answers and lists the vpcd readers it is used as it is;
  one that does not list them (no vpcd driver loaded) is an error, not something to kill.
* A pcscd killed with SIGKILL leaves ``/run/pcscd/pcscd.pid`` behind; a new pcscd removes it
  by itself unless the old process still exists, e.g. as an unreaped zombie, so the process we
  start is always ``wait()``-ed.
* Concurrent test processes (pytest-xdist, other suites) share the daemon: each holds a shared
  lock while it uses pcscd, and the process that started pcscd stops it only if it can then
  take the lock exclusively. Reader slots are claimed with a per-port lock for the same
  reason (:func:`claim_vpcd_slot`).

If pcscd cannot be made to work, :class:`PcscdUnavailable` says why; the pytest fixture turns
it into a **failure under CI=true** and a skip elsewhere.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final

VPCD_READER_CONF: Final = Path("/etc/reader.conf.d/vpcd")
VPCD_BASE_PORT: Final = 0x8C7B  # 35963, CHANNELID in VPCD_READER_CONF
VPCD_READER_PREFIX: Final = "Virtual PCD"
_POLL_INTERVAL_S: Final = 0.05
_LOCK_DIR: Final = Path(tempfile.gettempdir())
_START_LOCK: Final = _LOCK_DIR / "ssc-pcscd-start.lock"
_USERS_LOCK: Final = _LOCK_DIR / "ssc-pcscd-users.lock"
_LEFT_RUNNING: list[subprocess.Popen[bytes]] = []


class PcscdUnavailable(RuntimeError):
    """pcscd with the vpcd driver cannot be used on this machine; the message says why."""


@dataclass(frozen=True)
class VpcdReader:
    """A vpcd reader slot: its PC/SC name and the TCP port the driver listens on for it."""

    name: str
    port: int


@dataclass(frozen=True)
class PcscdSession:
    """A pcscd that lists vpcd readers. ``started`` is True if this process started it."""

    readers: tuple[VpcdReader, ...]
    started: bool
    log_path: Path | None


def list_readers() -> list[str] | None:
    """Reader names from pcscd, or None if pcscd does not answer."""
    from smartcard import scard  # lazily: no pyscard -> PcscdUnavailable, not a crash

    rv, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if rv != scard.SCARD_S_SUCCESS:
        return None
    try:
        rv, readers = scard.SCardListReaders(context, [])
        if rv == scard.SCARD_E_NO_READERS_AVAILABLE:
            return []
        if rv != scard.SCARD_S_SUCCESS:
            return None
        return list(readers)
    finally:
        scard.SCardReleaseContext(context)


def vpcd_readers(names: list[str]) -> tuple[VpcdReader, ...]:
    """The vpcd readers among ``names``; pcscd names slot *n* ``Virtual PCD 00 0n``."""
    found = sorted(n for n in names if n.startswith(VPCD_READER_PREFIX))
    return tuple(VpcdReader(name, VPCD_BASE_PORT + i) for i, name in enumerate(found))


def find_pcscd() -> str | None:
    """Path of the pcscd binary (it lives in /usr/sbin, which a non-root PATH may lack)."""
    return shutil.which("pcscd") or shutil.which("pcscd", path="/usr/sbin:/sbin")


def pcscd_command(pcscd: str) -> list[str]:
    """The command line that runs pcscd in the foreground for a test.

    No ``--auto-exit``: it stops pcscd after 60 s without clients, which can fall between two
    tests of one session. No ``--apdu``/``--debug``: they would log APDUs, and VERIFY carries
    the PIN.
    """
    help_text = subprocess.run(
        [pcscd, "--help"], capture_output=True, text=True, timeout=10, check=False
    )
    command = [pcscd, "--foreground"]
    if "--disable-polkit" in help_text.stdout + help_text.stderr:
        command.append("--disable-polkit")
    return command


@contextlib.contextmanager
def _flock(path: Path, mode: int) -> Iterator[IO[Any]]:
    with path.open("a+") as handle:
        fcntl.flock(handle, mode)
        try:
            yield handle
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _log_tail(log_path: Path | None, max_chars: int = 2000) -> str:
    if log_path is None:
        return "(pcscd was not started by the tests; see its own log)"
    if not log_path.exists():
        return "(no log)"
    return log_path.read_text(errors="replace")[-max_chars:] or "(empty log)"


def _wait_for_vpcd_readers(
    process: subprocess.Popen[bytes] | None, timeout_s: float
) -> tuple[VpcdReader, ...]:
    deadline = time.monotonic() + timeout_s
    names: list[str] | None = None
    while time.monotonic() < deadline:
        names = list_readers()
        if names is not None:
            readers = vpcd_readers(names)
            if readers:
                return readers
        if process is not None and process.poll() is not None:
            break
        time.sleep(_POLL_INTERVAL_S)
    if names is None:
        raise PcscdUnavailable("pcscd does not answer on /run/pcscd/pcscd.comm")
    raise PcscdUnavailable(
        f"pcscd runs but lists no '{VPCD_READER_PREFIX}' reader (readers: {names}); is"
        f" vsmartcard-vpcd installed and {VPCD_READER_CONF} present? pcscd reads that"
        " directory only when it starts: restart it after installing vsmartcard-vpcd"
    )


# Longer than Linux's TIME_WAIT (60 s): a port held by a closed connection is free by then.
_PORT_WAIT_S: Final = 70.0


def _port_in_use(port: int) -> bool:
    """True if a listener could not bind ``port`` now: another socket has it (a listener, a
    connection using it as its source port, or one in TIME_WAIT)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("0.0.0.0", port))  # as vpcd binds: all interfaces
        except OSError:
            return True
    return False


def _wait_for_vpcd_ports() -> None:
    """Before starting pcscd: wait until vpcd can bind its ports. They lie in the ephemeral
    range, so on a busy machine one may be some connection's source port (scripts/bootstrap
    reserves them where it can); pcscd would then log "Address already in use" and list no
    reader."""
    ports = (VPCD_BASE_PORT, VPCD_BASE_PORT + 1)
    deadline = time.monotonic() + _PORT_WAIT_S
    while any(_port_in_use(port) for port in ports):
        if time.monotonic() >= deadline:
            raise PcscdUnavailable(
                f"TCP ports {ports} stay in use (another program, or a connection's source"
                " port): vpcd cannot listen; reserve them with"
                " sysctl net.ipv4.ip_local_reserved_ports=35963,35964"
            )
        time.sleep(0.5)


@contextlib.contextmanager
def pcscd_with_vpcd(*, start_timeout_s: float = 10.0) -> Iterator[PcscdSession]:
    """Use the running pcscd, or start one, until pyscard lists the vpcd readers.

    Stops pcscd on exit only if this call started it and no other process still uses it.
    Raises :class:`PcscdUnavailable` with the reason (and pcscd's log) when it cannot work.
    """
    try:
        import smartcard.scard  # noqa: F401 - fails here if pyscard is not built
    except ImportError as exc:
        raise PcscdUnavailable(f"pyscard is not importable: {exc}") from exc

    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    with contextlib.ExitStack() as stack:
        with _flock(_START_LOCK, fcntl.LOCK_EX):
            names = list_readers()
            if names is None:
                pcscd = find_pcscd()
                if pcscd is None:
                    raise PcscdUnavailable(
                        "pcscd is not installed (apt-get install pcscd vsmartcard-vpcd)"
                    )
                if not VPCD_READER_CONF.exists():
                    raise PcscdUnavailable(
                        f"{VPCD_READER_CONF} is missing (apt-get install vsmartcard-vpcd)"
                    )
                _wait_for_vpcd_ports()
                log_fd, log_name = tempfile.mkstemp(prefix="pcscd-", suffix=".log")
                log_path = Path(log_name)
                with os.fdopen(log_fd, "wb") as log_file:
                    process = subprocess.Popen(
                        pcscd_command(pcscd),
                        stdin=subprocess.DEVNULL,
                        stdout=log_file,
                        stderr=subprocess.STDOUT,
                    )
                stack.callback(_stop, process)
            try:
                readers = _wait_for_vpcd_readers(process, start_timeout_s)
            except PcscdUnavailable as exc:
                raise PcscdUnavailable(f"{exc}\n--- pcscd log ---\n{_log_tail(log_path)}") from exc
            users = stack.enter_context(_USERS_LOCK.open("a+"))
            fcntl.flock(users, fcntl.LOCK_SH)
        # The users lock is released first (ExitStack runs callbacks last-in first-out), then
        # _stop decides under the start lock whether anyone else still holds it.
        stack.callback(fcntl.flock, users, fcntl.LOCK_UN)
        yield PcscdSession(readers=readers, started=process is not None, log_path=log_path)
    if log_path is not None:
        log_path.unlink(missing_ok=True)


def _stop(process: subprocess.Popen[bytes]) -> None:
    with _flock(_START_LOCK, fcntl.LOCK_EX), _USERS_LOCK.open("a+") as users:
        try:
            fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            # Another test process still uses this pcscd: leave it running (whoever comes next
            # reuses it). Keep the Popen referenced so its destructor does not warn mid-session.
            _LEFT_RUNNING.append(process)
            return
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
def claim_vpcd_slot(
    readers: tuple[VpcdReader, ...], *, timeout_s: float = 60.0
) -> Iterator[VpcdReader]:
    """Claim a vpcd reader slot no other test process is using (a per-port file lock)."""
    deadline = time.monotonic() + timeout_s
    while True:
        for reader in readers:
            handle = (_LOCK_DIR / f"ssc-vpcd-{reader.port}.lock").open("a+")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            try:
                yield reader
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
                handle.close()
            return
        if time.monotonic() >= deadline:
            raise PcscdUnavailable(f"no free vpcd reader slot within {timeout_s} s")
        time.sleep(_POLL_INTERVAL_S)


def wait_for_card(
    reader_name: str, *, present: bool, atr: bytes | None = None, timeout_s: float = 10.0
) -> bytes | None:
    """Block until pcscd reports a card in (``present``) or out of ``reader_name``.

    With ``atr``, wait for a card with that ATR: after a quick swap pcscd may still report
    the previous card for up to one poll (~0.4 s). Returns the ATR when present; raises
    :class:`TimeoutError` when the state does not come in time.
    """
    from smartcard import scard

    rv, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if rv != scard.SCARD_S_SUCCESS:
        raise PcscdUnavailable(f"SCardEstablishContext: {scard.SCardGetErrorMessage(rv)}")
    try:
        wanted = scard.SCARD_STATE_PRESENT if present else scard.SCARD_STATE_EMPTY
        states = [(reader_name, scard.SCARD_STATE_UNAWARE)]
        deadline = time.monotonic() + timeout_s
        while True:
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            rv, result = scard.SCardGetStatusChange(context, max(remaining_ms, 0), states)
            if rv == scard.SCARD_S_SUCCESS:
                event_state = result[0][1]
                seen_atr = bytes(result[0][2])
                if (
                    event_state & wanted
                    and not event_state & scard.SCARD_STATE_MUTE
                    and (atr is None or not present or seen_atr == atr)
                ):
                    return seen_atr if present else None
                states = [(reader_name, event_state & ~scard.SCARD_STATE_CHANGED)]
            elif rv != scard.SCARD_E_TIMEOUT:
                raise PcscdUnavailable(f"SCardGetStatusChange: {scard.SCardGetErrorMessage(rv)}")
            if remaining_ms <= 0 or rv == scard.SCARD_E_TIMEOUT:
                state = "present" if present else "absent"
                raise TimeoutError(f"card not {state} in {reader_name!r} within {timeout_s} s")
    finally:
        scard.SCardReleaseContext(context)
