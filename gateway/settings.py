"""The gateway's one settings object, with every default in one place.

Sources, lowest precedence first:

1. the defaults written in :class:`Settings` below;
2. a TOML file (``--config FILE`` or ``GATEWAY_CONFIG``), flat ``key = value`` at top level;
3. environment variables ``GATEWAY_<FIELD>`` (``GATEWAY_DB_URL``, ``GATEWAY_PORT`` …);
4. command-line flags (``--port`` …), passed in as ``overrides``.

Everything is validated once, at start-up, and every problem is reported together with where the
value came from. Unknown keys are errors, not silently ignored: a misspelt ``GATEWAY_DB_ULR``
would otherwise leave the gateway on its default database.

The embedded default (SQLite under ``./var``, demo world) runs with no configuration at all.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Final, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

__all__ = ["CONFIG_ENV", "ENV_PREFIX", "Settings", "SettingsError", "load_settings"]

ENV_PREFIX: Final = "GATEWAY_"
# The config file's own location can come from the environment too; it is not a Settings field.
CONFIG_ENV: Final = "GATEWAY_CONFIG"
SQLITE_FILE_NAME: Final = "gateway.sqlite3"
# A config file larger than this is certainly a mistake (a wrong path), not a config.
CONFIG_MAX_BYTES: Final = 1024 * 1024
# Values of these fields can carry credentials or key material: never echoed in errors.
_SENSITIVE_FIELDS: Final = frozenset(
    {"db_url", "demo_seed", "ops_token", "kek_hex", "redis_url", "metrics_token"}
)
# The ops token is a bearer secret: long enough that guessing it is hopeless (>= 128 bits of
# randomness when made by `secrets.token_urlsafe(32)`), and plain enough for an HTTP header.
OPS_TOKEN_MIN_CHARS: Final = 32


class SettingsError(ValueError):
    """The configuration is invalid. ``str()`` lists every problem, one per line, with its
    source (default, file, environment variable or flag)."""


class Settings(BaseModel):
    """Validated gateway configuration. Frozen: built once at start-up, then only read.

    Picklable, so the supervisor hands the very same object to every worker process.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    # -- network and processes ------------------------------------------------------------------
    host: str = Field("127.0.0.1", min_length=1, max_length=255)
    # 0 asks the kernel for a free port (tests); the supervisor fixes it before forking workers.
    port: int = Field(8080, ge=0, le=65535)
    workers: int = Field(1, ge=1, le=32)
    listen_backlog: int = Field(1024, ge=16, le=65535)
    # aiohttp waits this long for in-flight requests on SIGTERM before cancelling them.
    shutdown_timeout_s: float = Field(30.0, gt=0, le=600)
    # Each worker's event loop. auto: uvloop where it is installed (a dependency on Linux and
    # macOS; measured ~30% less CPU per request here), else asyncio's own.
    event_loop: Literal["auto", "uvloop", "asyncio"] = "auto"
    # sys.setswitchinterval in each worker. The event loop and the database threads hand the
    # GIL to each other at every unit of work; CPython's default 5 ms lets one wait up to that
    # long for the other. 0.5 ms measured here: card-auth p50 at 100/s ~75-140 ms -> ~25-30 ms,
    # throughput up, CPU per request not worse.
    gil_switch_interval_ms: float = Field(0.5, gt=0, le=100)

    # -- storage --------------------------------------------------------------------------------
    data_dir: Path = Path("./var")
    # Empty means the embedded default: sqlite at {data_dir}/gateway.sqlite3.
    db_url: str = Field("", max_length=2048)
    # One thread per connection: each unit of work takes one thread and one pooled connection.
    db_threads: int = Field(4, ge=1, le=64)
    db_pool_timeout_s: float = Field(5.0, gt=0, le=60)
    # Units waiting for the process's one database writer; a write beyond it gets 503
    # OVERLOADED with Retry-After and does nothing (gateway.db.Database).
    db_write_queue_max: int = Field(1024, ge=1, le=1_000_000)
    # SQLite waits this long for another process's write lock before failing with "locked".
    sqlite_busy_timeout_ms: int = Field(5000, ge=0, le=60_000)
    # FULL: a commit survives power loss (money, one-time nonces). NORMAL is faster but may lose
    # the last commits on power loss. See gateway.db for the measured cost.
    sqlite_synchronous: Literal["FULL", "NORMAL"] = "FULL"

    # -- request limits -------------------------------------------------------------------------
    max_body_bytes: int = Field(64 * 1024, ge=1024, le=16 * 1024 * 1024)
    # Per worker process. Beyond it new work gets 503 OVERLOADED with Retry-After.
    max_inflight_requests: int = Field(512, ge=1, le=100_000)

    # -- terminal authentication ----------------------------------------------------------------
    clock_skew_s: int = Field(30, ge=1, le=600)
    # How long a used nonce is remembered. Must cover the whole window in which its timestamp is
    # still accepted (2 × clock_skew_s), or a replay after expiry would pass: checked below.
    nonce_ttl_s: int = Field(120, ge=2, le=86_400)
    nonce_sweep_interval_s: float = Field(60.0, gt=0, le=3600)
    nonce_sweep_batch: int = Field(5000, ge=1, le=1_000_000)
    # A disabled terminal keeps working for at most this long in each worker.
    terminal_cache_ttl_s: float = Field(10.0, ge=0, le=3600)
    terminal_cache_max_entries: int = Field(10_000, ge=1, le=10_000_000)
    # Token bucket per terminal, shared by every worker and replica (gateway.limits): a guard
    # against a runaway client, not a quota. Each worker answers from its own bucket and
    # settles with the shared one every limits_sync_s, so a terminal may overshoot by at most
    # workers × (terminal_burst + terminal_rate_per_s × limits_sync_s) once, then waits it off.
    terminal_rate_per_s: float = Field(50.0, gt=0, le=100_000)
    terminal_burst: int = Field(100, ge=1, le=100_000)
    # Request signature version 1 (sscard.terminal_auth) leaves X-Card-Session and
    # Idempotency-Key unsigned. Unset: refused (401 SIGNATURE_VERSION_UNSUPPORTED); a date:
    # still accepted through that day (Beijing time), a transition window for old terminals.
    terminal_signature_v1_until: date | None = None
    limits_sync_s: float = Field(1.0, gt=0, le=60)
    # The ops token's brute-force guard (gateway.ops.access), shared likewise: this many wrong
    # tokens in total from one address, then one more every ops_wrong_token_refill_s.
    ops_wrong_tokens_allowed: int = Field(5, ge=1, le=1000)
    ops_wrong_token_refill_s: float = Field(60.0, gt=0, le=86_400)
    # Where the shared limits live: empty = the database (guard_buckets); else a Redis URL
    # (redis://host:6379/0, rediss://…, unix:///path.sock), checked at start-up.
    redis_url: str = Field("", max_length=2048)
    # What every Redis key of the shared limits starts with. Two gateways that share one Redis
    # (staging and production, two tenants) need prefixes of their own, or they share counts.
    # Letters, digits and . _ - : only (a key is never quoted), 1 to 64 of them.
    redis_key_prefix: str = Field(
        "ssc-gateway:limit:", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$"
    )
    # Reverse proxies whose X-Forwarded-For is believed (comma-separated CIDRs, e.g.
    # "10.0.0.0/8, ::1/128"); empty = none: the TCP peer is the client (gateway.limits.proxies).
    trusted_proxies: str = Field("", max_length=4096)

    # -- card authentication (used by the card-auth feature) ------------------------------------
    challenge_ttl_s: int = Field(30, ge=1, le=300)
    card_session_ttl_s: int = Field(300, ge=10, le=86_400)
    # Last day second-generation (legacy) cards are accepted beside third-generation ones.
    # Placeholder: set it to the date the Shanghai healthcare security bureau announces.
    legacy_parallel_use_until: date = date(2027, 12, 31)
    # The pinned card PKI root and the issuing CA certificate(s) (PEM; several issuing CA
    # files separated by commas). Unset: the demo PKI in the embedded demo world, otherwise
    # third-generation card authentication answers 503 CARD_AUTH_UNAVAILABLE.
    card_trust_root_pem: Path | None = None
    card_issuing_ca_pems: str = Field("", max_length=4096)
    # Issuer master key for second-generation cards: a file holding 32 hex digits (mode 0600).
    # Unset: the demo key in the embedded demo world, otherwise legacy cards answer 503.
    legacy_master_key_file: Path | None = None
    # Verified card certificates remembered per worker (bounded LRU, by SM3 fingerprint).
    card_cert_cache_max_entries: int = Field(50_000, ge=1, le=10_000_000)
    # Imported card CRLs (gateway.card_auth.revocation): each worker re-reads which list is in
    # force this often, so a certificate revoked by an import is refused everywhere within it.
    card_crl_refresh_s: float = Field(30.0, gt=0, le=3600)
    # Most revoked serials one CRL may list (each worker keeps them all in memory, ~90 bytes
    # each); an import over it is refused. sscard.certs bounds a CRL at 500,000 entries.
    card_crl_max_entries: int = Field(200_000, ge=1, le=500_000)

    # -- settlement -----------------------------------------------------------------------------
    # Institution codes (comma-separated) whose terminals are operations terminals of the
    # healthcare security office: they may list every institution's reconciliation mismatches.
    # Any other terminal sees its own institution's only.
    reconciliation_ops_institutions: str = Field("", max_length=4096)
    # The year-end roll-over of personal accounts (gateway.housekeeping): each worker checks
    # this often whether the last ended year's roll-over has finished (and just after 00:00
    # Beijing time on 1 January), and rolls this many accounts per write transaction. Off:
    # the workers leave it to `admin rollover` (and each settlement rolls its own account),
    # and only read where it stands for the metrics, at the same interval.
    year_end_rollover: bool = True
    rollover_check_interval_s: float = Field(300.0, gt=0, le=86_400)
    rollover_batch: int = Field(500, ge=1, le=10_000)

    # -- the national-interface door (gateway.fsi, docs/national-interface.md) ------------------
    # Where the door listens: under /fsi/, one URL for every infno (most HIS clients), the
    # infno appended as one more path segment also accepted (some clients).
    fsi_path: str = Field(
        "/fsi/api/rsfComIfsService/callService", pattern=r"^/fsi(/[A-Za-z0-9._-]+)+$"
    )
    # A sign-in (9001) is valid this long, or until its sign-out (9002): a working day.
    fsi_sign_in_ttl_s: int = Field(12 * 3600, ge=60, le=7 * 86_400)
    # Signed profiles (sm2-sm4): an envelope whose inf_time is further than this from the
    # gateway's clock is refused (with the msgid store, this bounds a replay).
    fsi_inf_time_skew_s: int = Field(300, ge=5, le=3600)
    # The transport profile of an institution that has none configured (fsi_transport):
    # "plain" (JSON over the institution's private line) or "refuse".
    fsi_default_profile: Literal["plain", "refuse"] = "plain"

    # -- card issuance --------------------------------------------------------------------------
    # The change-over programme (cohorts and their windows, channels, photo sources, the 11
    # banks): a TOML file shaped like issuance/config/programme_2019.toml, checked at start-up.
    # Unset: that file.
    issuance_programme_file: Path | None = None

    # -- cross-province settlement through the national hub (docs/cross-province.md) ----------
    # Base URL of the hub (http://host:port). Empty: with the demo world on, `serve` starts the
    # hub simulator (python -m settlement.hub) as a child process on a free local port;
    # without it, cross-province settlements answer 503 HUB_UNAVAILABLE.
    hub_url: str = Field("", max_length=2048)
    # One attempt's budget; a call makes 1 + hub_retries attempts with the same msgid.
    hub_timeout_ms: int = Field(3000, ge=50, le=60_000)
    hub_retries: int = Field(2, ge=0, le=5)
    # Per worker: this many consecutive connection failures open the circuit for
    # hub_breaker_open_s; then one trial call decides.
    hub_breaker_failures: int = Field(5, ge=1, le=1000)
    hub_breaker_open_s: float = Field(10.0, gt=0, le=3600)
    # Reversal queue (2601): first retry after hub_reversal_backoff_s, doubling up to the cap;
    # each worker polls for due rows every hub_reversal_poll_s.
    hub_reversal_backoff_s: float = Field(1.0, gt=0, le=3600)
    hub_reversal_backoff_max_s: float = Field(300.0, gt=0, le=86_400)
    hub_reversal_poll_s: float = Field(1.0, gt=0, le=600)

    # -- operations dashboard (/ops) ------------------------------------------------------------
    # Bearer token for /v1/ops/* (a browser cannot sign requests with a terminal key; the
    # /ops page itself is static and holds no data).
    # Empty: in the demo world a random token is kept in {data_dir}/ops-token and printed at
    # start-up; otherwise the dashboard refuses everyone (401) until one is configured.
    ops_token: str = Field("", max_length=256, pattern=r"^[\x21-\x7e]*$")
    # Where people read this gateway's documentation (the repository's docs/ folder, e.g.
    # https://git.example.org/ssc-gateway/-/tree/main/docs): the front page (GET /) links to it.
    # Empty: the page names the files of the repository instead.
    docs_url: str = Field("", max_length=2048, pattern=r"^(https?://[\x21-\x7e]+)?$")

    # -- keys at rest (gateway.sealing, docs/operations.md "Keys at rest and rewrap") -----------
    # The key-encryption key that seals terminal secrets and institution keys in the database:
    # a file of 64 hex digits (mode 0600, on the gateway's hosts, never beside a database
    # backup), or the same digits in GATEWAY_KEK_HEX (kek_hex wins). Unset: in the demo world
    # a random one is made in {data_dir}/kek; otherwise nothing can be enrolled and a sealed
    # secret cannot be opened (its terminal answers 503 KEK_UNAVAILABLE).
    kek_file: Path | None = None
    kek_hex: str = Field("", max_length=128)
    # KEKs being retired (files, comma-separated): they still OPEN secrets, never seal them,
    # so `gateway admin rewrap` can move every secret to kek_file with no downtime.
    kek_previous_files: str = Field("", max_length=4096)
    # After `gateway admin terminal rotate`, the previous secret is still accepted this long
    # (a terminal fleet is reconfigured in that window); then only the new one.
    terminal_secret_overlap_s: int = Field(86_400, ge=0, le=30 * 86_400)

    # -- demo world (DEMO ONLY) -----------------------------------------------------------------
    # auto: the demo world only in a database created as one (the marker its loading writes),
    # or loaded now into an EMPTY embedded (SQLite) database; on: loaded and trusted in any
    # database; off: never. Demo terminal secrets, the demo PKI, the demo legacy master key
    # and the demo ops token are derivable from the seed: never on a real deployment.
    demo_world: Literal["auto", "on", "off"] = "auto"
    # The same default as sscard.demo.DEFAULT_DEMO_SEED, so demo terminals and demo cards come
    # from one seed (a test keeps the two equal).
    demo_seed: str = Field("ssc-demo-2019", min_length=1, max_length=256)

    # -- /metrics (gateway.metrics_access) -------------------------------------------------------
    # Bearer token a Prometheus scrape must send (`Authorization: Bearer <token>`, compared in
    # constant time; Prometheus: `authorization.credentials_file`). Empty: /metrics answers
    # only clients connecting from a loopback address (127.0.0.0/8, ::1), 403 to any other;
    # behind a proxy on the same host everyone looks like loopback, so set a token there.
    metrics_token: str = Field("", max_length=256, pattern=r"^[\x21-\x7e]*$")

    # -- logs -----------------------------------------------------------------------------------
    log_format: Literal["json", "kv"] = "json"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("data_dir", mode="before")
    @classmethod
    def _absolute_data_dir(cls, value: Any) -> Any:
        # Absolute from the start, so that every worker process sees the same paths whatever
        # its working directory. An empty value would silently mean the working directory.
        if isinstance(value, str | Path):
            if not str(value).strip():
                raise ValueError("data_dir must not be empty")
            return Path(os.path.abspath(Path(value).expanduser()))
        return value

    @model_validator(mode="after")
    def _check_relations(self) -> Self:
        if self.nonce_ttl_s < 2 * self.clock_skew_s:
            raise ValueError(
                f"nonce_ttl_s ({self.nonce_ttl_s}) must be at least 2 × clock_skew_s "
                f"({2 * self.clock_skew_s}), or a replayed request could outlive its nonce"
            )
        if self.card_trust_root_pem is not None and not self.card_issuing_ca_pems.strip():
            raise ValueError("card_trust_root_pem needs card_issuing_ca_pems as well")
        if self.ops_token and len(self.ops_token) < OPS_TOKEN_MIN_CHARS:
            raise ValueError(f"ops_token must be at least {OPS_TOKEN_MIN_CHARS} characters")
        if self.metrics_token and len(self.metrics_token) < OPS_TOKEN_MIN_CHARS:
            raise ValueError(f"metrics_token must be at least {OPS_TOKEN_MIN_CHARS} characters")
        if self.hub_url and not self.hub_url.startswith(("http://", "https://")):
            raise ValueError("hub_url must be an http:// or https:// URL")
        if self.hub_reversal_backoff_max_s < self.hub_reversal_backoff_s:
            raise ValueError("hub_reversal_backoff_max_s must be at least hub_reversal_backoff_s")
        if self.issuance_programme_file is not None:
            _check_programme_file(self.issuance_programme_file)
        if self.db_url and not self.db_url.startswith(("sqlite", "postgresql")):
            raise ValueError("db_url must be a sqlite:/// or postgresql+psycopg:// URL")
        return self

    @field_validator("redis_url")
    @classmethod
    def _redis_url_syntax(cls, value: str) -> str:
        if value:
            _check_redis_url(value)
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _trusted_proxies_cidrs(cls, value: str) -> str:
        _check_trusted_proxies(value)
        return value

    @property
    def database_url(self) -> str:
        """The effective database URL: ``db_url``, or the embedded SQLite file in data_dir."""
        if self.db_url:
            return self.db_url
        return f"sqlite:///{self.data_dir / SQLITE_FILE_NAME}"

    @property
    def card_issuing_ca_pem_paths(self) -> tuple[Path, ...]:
        return tuple(
            Path(part.strip()) for part in self.card_issuing_ca_pems.split(",") if part.strip()
        )

    @property
    def is_embedded_db(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def metrics_dir(self) -> Path:
        """PROMETHEUS_MULTIPROC_DIR for the worker processes (emptied at each start)."""
        return self.data_dir / "prometheus"

    def should_load_demo_world(self) -> bool:
        """Are the demo world's credentials trusted? Only when "on": "auto" is decided per
        database at start-up (gateway.demo.resolve_demo_world, by the demo world's marker)
        and replaced by "on" or "off"; undecided, it trusts nothing (fails closed)."""
        return self.demo_world == "on"


def _check_redis_url(url: str) -> None:
    # The syntax here (the URL is never echoed: it may carry a password); whether Redis
    # answers is checked when the workers start (gateway.serve).
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        port = parts.port  # a port that is not a number raises here
    except ValueError:
        raise ValueError("redis_url is not a URL (redis://host:6379/0)") from None
    if port == 0:
        raise ValueError("redis_url: port 0 is not a port")
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ValueError("redis_url must start with redis://, rediss:// or unix://")
    if parts.scheme != "unix" and not parts.hostname:
        raise ValueError("redis_url names no host (redis://host:6379/0)")
    if parts.scheme == "unix" and not parts.path:
        raise ValueError("redis_url names no socket path (unix:///run/redis.sock)")
    database = parts.path.lstrip("/")
    if parts.scheme != "unix" and database and not database.isdigit():
        raise ValueError("redis_url: the path must be a database number (redis://host:6379/0)")


def _check_trusted_proxies(text: str) -> None:
    from gateway.limits.proxies import parse_trusted_proxies

    parse_trusted_proxies(text)


def _check_programme_file(path: Path) -> None:
    from issuance.programme import load_programme  # here: settings stays light to import

    try:
        load_programme(path)
    except (OSError, ValueError, KeyError, TypeError) as exc:  # tomllib's error is a ValueError
        raise ValueError(f"issuance_programme_file {path}: {exc!r}") from None


def load_settings(
    *,
    config_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Merge defaults < TOML file < GATEWAY_* environment < overrides, and validate.

    ``environ`` defaults to ``os.environ``; ``overrides`` holds flags given on the command line
    (None values mean "not given"). Raises SettingsError listing every problem.
    """
    env = os.environ if environ is None else environ
    if config_file is None and env.get(CONFIG_ENV):
        config_file = Path(env[CONFIG_ENV])
    layers: list[_Layer] = []
    if config_file is not None:
        layers.append(_file_layer(config_file))
    layers.append(_env_layer(env))
    layers.append(_flag_layer(overrides or {}))

    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    problems: list[str] = []
    for layer in layers:
        problems.extend(layer.problems)
        for key, (value, source) in layer.values.items():
            values[key] = value
            sources[key] = source
    if problems:
        raise SettingsError("invalid gateway configuration:\n  " + "\n  ".join(problems))
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        raise SettingsError(_describe(exc, sources)) from None


@dataclass
class _Layer:
    # key -> (value, where it came from)
    values: dict[str, tuple[Any, str]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def _file_layer(path: Path) -> _Layer:
    layer = _Layer()
    for key, value in _read_toml(path).items():
        if key in Settings.model_fields:
            layer.values[key] = (value, f"{key} in {path}")
        else:
            layer.problems.append(f"{path}: unknown setting {key!r}")
    return layer


def _env_layer(env: Mapping[str, str]) -> _Layer:
    layer = _Layer()
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name == CONFIG_ENV:
            continue
        key = name.removeprefix(ENV_PREFIX).lower()
        if key in Settings.model_fields:
            layer.values[key] = (value, f"environment variable {name}")
        else:
            layer.problems.append(f"{name}: unknown environment variable (known: {_env_names()})")
    return layer


def _flag_layer(overrides: Mapping[str, Any]) -> _Layer:
    layer = _Layer()
    for key, value in overrides.items():
        assert key in Settings.model_fields, f"override for unknown setting {key}"
        if value is not None:
            layer.values[key] = (value, f"command-line flag for {key}")
    return layer


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        size = path.stat().st_size
        if size > CONFIG_MAX_BYTES:
            raise SettingsError(f"{path}: config file is {size} bytes, over {CONFIG_MAX_BYTES}")
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise SettingsError(f"{path}: config file not found") from None
    except OSError as exc:
        raise SettingsError(f"{path}: cannot read config file: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: not valid TOML: {exc}") from None


def _describe(exc: ValidationError, sources: Mapping[str, str]) -> str:
    lines = []
    for error in exc.errors(include_url=False):
        field = str(error["loc"][0]) if error["loc"] else ""
        source = sources.get(field, f"{field} (default)" if field else "settings")
        message = error["msg"]
        if field and field not in _SENSITIVE_FIELDS and "input" in error:
            message += f" (got {error['input']!r})"
        lines.append(f"{source}: {message}")
    return "invalid gateway configuration:\n  " + "\n  ".join(lines)


def _env_names() -> str:
    return ", ".join(ENV_PREFIX + name.upper() for name in Settings.model_fields)
