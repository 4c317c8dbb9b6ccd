"""PostgreSQL clusters of the tests' own, on free ports under a temporary directory: one plain
server (:func:`pg_server`) or a Patroni pair with etcd (:func:`patroni_pair`), never the
shared server on 5432.

Who runs them: postgres refuses to run as root, and CI runs as root. As root, every process
here (initdb, postgres, etcd, patroni) runs as the ``postgres`` user that Debian's
``postgresql`` package creates (Popen ``user=``, ``group=``, no supplementary groups), in a
directory made for it under the system temporary directory (pytest's own ``tmp_path`` under
``/tmp/pytest-of-root`` is mode 0700: that user could not enter it). As anyone else, they run
as the current user.

Nothing here skips or fails by itself: what cannot start raises :class:`CannotStart`, and the
test calls :func:`cannot_start`, which FAILS under ``CI=true`` (these tests are part of CI's
contract, as the suite's PostgreSQL fixture is) and skips with the reason otherwise.

Every process is stopped however the block ends: SIGTERM (postgres: SIGINT, its fast
shutdown), then SIGKILL after a grace period, by the process id this module started.
"""

from __future__ import annotations

import contextlib
import grp
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import psycopg
from cikit import fail_or_skip

__all__ = [
    "CannotStart",
    "Etcd",
    "PatroniNode",
    "PatroniPair",
    "PgServer",
    "cannot_start",
    "cluster_user",
    "free_port",
    "patroni_pair",
    "pg_bindir",
    "pg_server",
    "private_dir",
]

# A leader's bootstrap is initdb, whose fsyncs wait behind the rest of the suite's PostgreSQL
# writes (and the checkpoints of tests/dbtemplate.py's background DROP DATABASEs): measured
# over 60 s once on this 2-core machine. A bound, not an expected time.
START_TIMEOUT_S = 180.0
STOP_GRACE_S = 15.0
DATABASE = "gateway"
# No proxies: an http_proxy in the environment must not route 127.0.0.1 elsewhere.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class CannotStart(RuntimeError):
    """A cluster (or a tool it needs) could not be started here; the message says why."""


def cannot_start(reason: str) -> NoReturn:
    """Fail under CI (these tests must run there), skip otherwise."""
    fail_or_skip(f"cannot start: {reason}")


def free_port() -> int:
    """A port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def pg_bindir() -> Path:
    """The newest installed PostgreSQL's bin directory (Debian: /usr/lib/postgresql/N/bin)."""
    candidates = sorted(
        (path for path in Path("/usr/lib/postgresql").glob("*/bin") if (path / "initdb").exists()),
        key=lambda path: int(path.parent.name) if path.parent.name.isdigit() else 0,
    )
    if not candidates:
        raise CannotStart("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin")
    return candidates[-1]


@dataclass(frozen=True)
class ClusterUser:
    """The account the clusters run as: ``postgres`` when we are root, else ourselves."""

    name: str
    uid: int
    gid: int

    @property
    def switch(self) -> bool:
        return self.uid != os.geteuid()

    def popen_args(self) -> dict[str, Any]:
        """Popen keyword arguments that run the child as this user (none if we are it)."""
        if not self.switch:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": []}


def cluster_user() -> ClusterUser:
    if os.geteuid() != 0:
        me = pwd.getpwuid(os.geteuid())
        return ClusterUser(me.pw_name, me.pw_uid, me.pw_gid)
    try:
        entry = pwd.getpwnam("postgres")
    except KeyError:
        raise CannotStart(
            "running as root and there is no `postgres` user to run PostgreSQL as "
            "(apt-get install postgresql creates it)"
        ) from None
    return ClusterUser(entry.pw_name, entry.pw_uid, grp.getgrgid(entry.pw_gid).gr_gid)


@contextlib.contextmanager
def private_dir(prefix: str, user: ClusterUser) -> Iterator[Path]:
    """A fresh directory under the system temporary directory, owned by ``user`` (mode 0700),
    removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        os.chown(path, user.uid, user.gid)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _child_env(home: Path) -> dict[str, str]:
    # No PG* variables of ours (PGHOST, PGPORT ...) may steer the children's libpq.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update({"HOME": str(home), "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8", "TZ": "UTC"})
    return env


def _run(argv: Sequence[str], user: ClusterUser, home: Path, log: Path, timeout_s: float) -> None:
    with log.open("ab") as out:
        result = subprocess.run(
            list(argv),
            stdout=out,
            stderr=subprocess.STDOUT,
            env=_child_env(home),
            timeout=timeout_s,
            check=False,
            **user.popen_args(),
        )
    if result.returncode != 0:
        raise CannotStart(f"{argv[0]} exited with {result.returncode}:\n{_tail(log)}")


def _tail(path: Path, chars: int = 4000) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[-chars:]
    except OSError:
        return "(no log)"


def _stop_process(
    process: subprocess.Popen[bytes], sig: int = signal.SIGTERM, grace_s: float = STOP_GRACE_S
) -> None:
    """``sig``, then SIGKILL after ``grace_s``; always reaped."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(sig)
        try:
            process.wait(grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait(grace_s)


def _connect(port: int, dbname: str = "postgres", timeout_s: int = 2) -> psycopg.Connection[Any]:
    return psycopg.connect(
        host="127.0.0.1",
        port=port,
        user="postgres",
        dbname=dbname,
        connect_timeout=timeout_s,
        autocommit=True,
    )


# --- one plain server ----------------------------------------------------------------------------


@dataclass
class PgServer:
    """A PostgreSQL server started by :func:`pg_server` (superuser ``postgres``, trust)."""

    port: int
    data_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes]

    def url(self, dbname: str = DATABASE) -> str:
        """SQLAlchemy URL of database ``dbname``."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{dbname}"

    def connect(self, dbname: str = DATABASE) -> psycopg.Connection[Any]:
        return _connect(self.port, dbname)

    def log(self) -> str:
        return _tail(self.log_path, 20_000)


# Small and quick: the tests need a few dozen connections and a short-lived database. fsync
# stays ON: these tests are about what survives, and a cluster that lies about it would hide
# exactly what they look for.
_SERVER_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "max_connections": "100",
    "shared_buffers": "32MB",
    "unix_socket_directories": "",  # TCP only: no socket file in a shared /var/run
    "logging_collector": "off",
    "log_min_messages": "warning",
}


def _initdb(bindir: Path, data_dir: Path, user: ClusterUser, home: Path, log: Path) -> None:
    _run(
        [
            str(bindir / "initdb"),
            "-D",
            str(data_dir),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--no-sync",  # a throwaway cluster: initdb's own fsync of every file costs seconds
        ],
        user,
        home,
        log,
        timeout_s=START_TIMEOUT_S,
    )


def _wait_accepting(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise CannotStart(f"postgres exited with {process.returncode}:\n{_tail(log)}")
        try:
            _connect(port, timeout_s=1).close()
            return
        except psycopg.OperationalError:
            time.sleep(0.1)
    raise CannotStart(f"postgres not accepting connections within {START_TIMEOUT_S} s")


@contextlib.contextmanager
def pg_server(dbname: str = DATABASE) -> Iterator[PgServer]:
    """initdb + postgres on a free 127.0.0.1 port, with database ``dbname`` created; stopped
    (fast shutdown) and removed afterwards. Raises CannotStart."""
    bindir = pg_bindir()
    user = cluster_user()
    with private_dir("ssc-pg-", user) as root:
        data_dir = root / "data"
        log_path = root / "postgres.log"
        _initdb(bindir, data_dir, user, root, log_path)
        port = free_port()
        options = [f"-c{name}={value}" for name, value in {**_SERVER_SETTINGS}.items()]
        with log_path.open("ab") as log_file:
            process = subprocess.Popen(
                [str(bindir / "postgres"), "-D", str(data_dir), "-p", str(port), *options],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=_child_env(root),
                start_new_session=True,
                **user.popen_args(),
            )
        try:
            _wait_accepting(port, process, log_path)
            with _connect(port) as connection:
                connection.execute(f'CREATE DATABASE "{dbname}"')
            yield PgServer(port, data_dir, log_path, process)
        finally:
            # SIGINT is postgres's fast shutdown: sessions are ended, a checkpoint is written.
            _stop_process(process, signal.SIGINT)


# --- a Patroni pair with etcd ------------------------------------------------------------------


@dataclass
class Etcd:
    process: subprocess.Popen[bytes]
    client_port: int
    log_path: Path

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"


@contextlib.contextmanager
def _etcd(root: Path, user: ClusterUser) -> Iterator[Etcd]:
    """A one-member etcd (v3 API, which Patroni's ``etcd3`` section speaks)."""
    binary = shutil.which("etcd")
    if binary is None:
        raise CannotStart("etcd is not installed (Debian package `etcd-server`)")
    client_port, peer_port = free_port(), free_port()
    log_path = root / "etcd.log"
    client, peer = f"http://127.0.0.1:{client_port}", f"http://127.0.0.1:{peer_port}"
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            [
                binary,
                *("--name", "e1", "--data-dir", str(root / "etcd")),
                *("--listen-client-urls", client, "--advertise-client-urls", client),
                *("--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer),
                *("--initial-cluster", f"e1={peer}", "--initial-cluster-state", "new"),
                # Small and local: no need for etcd's default 100 ms / 1 s election timing
                # to be any slower than it is, nor for its metrics.
                *("--quota-backend-bytes", str(64 * 1024 * 1024)),
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=_child_env(root),
            start_new_session=True,
            **user.popen_args(),
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _http_ok(f"{client}/health"):
            if process.poll() is not None:
                raise CannotStart(f"etcd exited with {process.returncode}:\n{_tail(log_path)}")
            if time.monotonic() > deadline:
                raise CannotStart(f"etcd not healthy within {START_TIMEOUT_S} s")
            time.sleep(0.1)
        yield Etcd(process, client_port, log_path)
    finally:
        _stop_process(process)


def _http_json(url: str, timeout_s: float = 2.0) -> tuple[int, Any]:
    """(status, parsed JSON or None); status 0 when nothing answered."""
    try:
        with _OPENER.open(url, timeout=timeout_s) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        with error:
            try:
                return error.code, json.loads(error.read() or b"null")
            except ValueError:
                return error.code, None
    except (OSError, ValueError):
        return 0, None


def _http_ok(url: str) -> bool:
    return _http_json(url)[0] == 200


@dataclass
class PatroniNode:
    """One Patroni-managed PostgreSQL (Patroni runs its postgres as a detached child)."""

    name: str
    pg_port: int
    api_port: int
    data_dir: Path
    config_path: Path
    log_path: Path
    user: ClusterUser
    home: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def start(self) -> None:
        with self.log_path.open("ab") as log_file:
            self.process = subprocess.Popen(
                ["patroni", str(self.config_path)],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=_child_env(self.home),
                start_new_session=True,
                **self.user.popen_args(),
            )

    def is_primary(self) -> bool:
        """Patroni's health check for a load balancer: 200 on the running leader only."""
        return _http_ok(f"{self.api}/primary")

    def accepts_writes(self) -> bool:
        """The server itself answers as a primary (out of recovery)."""
        try:
            with _connect(self.pg_port, timeout_s=1) as connection:
                row = connection.execute("SELECT pg_is_in_recovery()").fetchone()
                return row is not None and row[0] is False
        except psycopg.Error:
            return False

    def stop(self, grace_s: float = 60.0) -> None:
        """SIGTERM to Patroni: it shuts its postgres down (fast: sessions end, the rest of the
        WAL goes to the standby), gives up the leader key, and exits. Then make sure no
        postgres of this node is left (Patroni detaches it: a Patroni that died hard would
        leave it running)."""
        if self.process is not None:
            _stop_process(self.process, signal.SIGTERM, grace_s)
        pid = self.postmaster_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGQUIT)  # immediate shutdown: we are cleaning up
            deadline = time.monotonic() + STOP_GRACE_S
            while time.monotonic() < deadline and _alive(pid):
                time.sleep(0.1)
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def postmaster_pid(self) -> int | None:
        """The running postmaster of this node, from its postmaster.pid, if any."""
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if _alive(pid) else None

    def log(self) -> str:
        return _tail(self.log_path, 20_000)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (ours, not reaped yet) is not alive.
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    return True


@dataclass
class PatroniPair:
    """Two nodes, one leader and one synchronous standby, sharing one etcd."""

    etcd: Etcd
    nodes: list[PatroniNode] = field(default_factory=list)

    def primary(self) -> PatroniNode | None:
        for node in self.nodes:
            if node.is_primary():
                return node
        return None

    def cluster(self) -> dict[str, Any]:
        """Patroni's view of the cluster (GET /cluster on any node that answers)."""
        for node in self.nodes:
            status, body = _http_json(f"{node.api}/cluster")
            if status == 200 and isinstance(body, dict):
                return body
        return {}

    def sync_standby(self) -> PatroniNode | None:
        members = self.cluster().get("members", [])
        names = {
            m["name"]
            for m in members
            if m.get("role") == "sync_standby" and m.get("state") in ("running", "streaming")
        }
        return next((node for node in self.nodes if node.name in names), None)

    def url(self, dbname: str = DATABASE) -> str:
        """The gateways' SQLAlchemy URL: every node, and libpq keeps to the one that takes
        writes (target_session_attrs=read-write); see docs/scale-out.md for why this rather
        than haproxy in front of the database."""
        hosts = "&".join(f"host=127.0.0.1:{node.pg_port}" for node in self.nodes)
        return (
            f"postgresql+psycopg://postgres@/{dbname}?{hosts}"
            "&target_session_attrs=read-write&connect_timeout=3"
        )

    def connect(self, dbname: str = DATABASE) -> psycopg.Connection[Any]:
        """A connection to whichever node is the primary now."""
        return psycopg.connect(
            host=",".join("127.0.0.1" for _ in self.nodes),
            port=",".join(str(node.pg_port) for node in self.nodes),
            user="postgres",
            dbname=dbname,
            target_session_attrs="read-write",
            connect_timeout=3,
            autocommit=True,
        )

    def wait(self, what: str, ready: Any, timeout_s: float = START_TIMEOUT_S) -> Any:
        """Poll ``ready()`` until it returns something truthy; CannotStart with the nodes'
        logs if it does not in time."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            value = ready()
            if value:
                return value
            for node in self.nodes:
                if node.process is not None and node.process.poll() is not None:
                    raise CannotStart(f"patroni {node.name} exited:\n{node.log()}")
            time.sleep(0.2)
        logs = "\n".join(f"--- {node.name}\n{node.log()[-3000:]}" for node in self.nodes)
        raise CannotStart(f"{what}: not within {timeout_s} s\n{logs}")


def patroni_config(
    node: PatroniNode, etcd: Etcd, bindir: Path, root: Path, scope: str
) -> dict[str, Any]:
    """The node's patroni.yml (as a dict; JSON is YAML). docs/scale-out.md shows it."""
    return {
        "scope": scope,
        "name": node.name,
        "restapi": {
            "listen": f"127.0.0.1:{node.api_port}",
            "connect_address": f"127.0.0.1:{node.api_port}",
        },
        "etcd3": {"hosts": etcd.endpoint},
        "bootstrap": {
            "dcs": {
                # The leader key lives ttl s without renewal; each node acts every loop_wait
                # s; a DCS or PostgreSQL call is retried for retry_timeout s (Patroni needs
                # loop_wait + 2 × retry_timeout <= ttl). An orderly stop of the primary hands
                # over at once (its leader key is deleted); only a primary that vanishes
                # without a word waits out the ttl.
                "ttl": 20,
                "loop_wait": 1,
                "retry_timeout": 5,
                # Patroni keeps synchronous_standby_names naming the healthy standby, and
                # promotes only a synchronous standby: no acknowledged commit is lost. Not
                # strict: with the standby gone the primary goes on alone rather than stall.
                "synchronous_mode": True,
                "synchronous_mode_strict": False,
                "postgresql": {
                    "use_pg_rewind": False,
                    "use_slots": True,
                    "parameters": {
                        "max_connections": 100,
                        "shared_buffers": "32MB",
                        "wal_level": "replica",
                        "hot_standby": "on",
                        "max_wal_senders": 5,
                        "max_replication_slots": 5,
                        "wal_keep_size": "64MB",
                    },
                },
            },
            "initdb": [{"encoding": "UTF8"}, {"auth": "trust"}, "no-sync"],
            "pg_hba": [
                "local all all trust",
                "host all all 127.0.0.1/32 trust",
                "host replication all 127.0.0.1/32 trust",
            ],
        },
        "postgresql": {
            "listen": f"127.0.0.1:{node.pg_port}",
            "connect_address": f"127.0.0.1:{node.pg_port}",
            "data_dir": str(node.data_dir),
            "bin_dir": str(bindir),
            "pgpass": str(root / f"pgpass-{node.name}"),
            "authentication": {
                "superuser": {"username": "postgres"},
                "replication": {"username": "postgres"},
            },
            "parameters": {"unix_socket_directories": str(root)},
        },
        # No /dev/watchdog here; a production pair should have one (docs/scale-out.md).
        "watchdog": {"mode": "off"},
    }


@contextlib.contextmanager
def patroni_pair(dbname: str = DATABASE) -> Iterator[PatroniPair]:
    """etcd and two Patroni nodes started together: one bootstraps and leads, the other
    clones it (pg_basebackup) and becomes its synchronous standby. Database ``dbname`` is
    created once both run. Everything is stopped however the block ends. Raises CannotStart.
    """
    if shutil.which("patroni") is None:
        raise CannotStart("patroni is not installed (Debian package `patroni`)")
    bindir = pg_bindir()
    user = cluster_user()
    with private_dir("ssc-patroni-", user) as root, _etcd(root, user) as etcd:
        pair = PatroniPair(etcd)
        try:
            for name in ("n1", "n2"):
                node = PatroniNode(
                    name,
                    free_port(),
                    free_port(),
                    root / name,
                    root / f"{name}.yml",
                    root / f"{name}.log",
                    user,
                    root,
                )
                config = patroni_config(node, etcd, bindir, root, scope=f"ssc-{root.name[-8:]}")
                node.config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")
                os.chown(node.config_path, user.uid, user.gid)
                pair.nodes.append(node)
            for node in pair.nodes:
                node.start()
            primary = pair.wait("a leader", pair.primary)
            with _connect(primary.pg_port) as connection:
                connection.execute(f'CREATE DATABASE "{dbname}"')
            pair.wait("a synchronous standby", pair.sync_standby)
            yield pair
        finally:
            for node in pair.nodes:
                node.stop(grace_s=STOP_GRACE_S)
