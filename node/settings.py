"""The node's one validated settings model.

Loaded once in ``main()`` from ``config/node.toml`` (or ``--config``), then
overridden by environment variables ``LSENT_<SECTION>__<FIELD>``, e.g.
``LSENT_DATABASE__URL=postgresql+psycopg://.../lsent``. Every default lives
here; the TOML file documents them.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import json
import math
import os
import re
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, SettingsError

_ENV_PREFIX = "LSENT_"
DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "config" / "node.toml"

# Signed, and with an exponent: "-5s" and "1e400" then get the range's message, not an ISO parse error.
_DURATION = re.compile(r"^\s*([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


_LONGEST = timedelta(days=3650)


def _duration(value: object) -> object:
    """Seconds as a number or "20", "20s", "500ms", "5m", "2h", "30d"; else ISO 8601 for pydantic."""
    if isinstance(value, bool):  # a bool is an int to Python: `true` would be 1 s
        raise ValueError("must be a duration, not true or false")
    seconds: float | None = None
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds is None:
        return value
    if not math.isfinite(seconds) or abs(seconds) > _LONGEST.total_seconds():
        raise ValueError(f"must be a duration of at most {_LONGEST.days} days")
    return timedelta(seconds=seconds)


def _not_negative(value: timedelta) -> timedelta:
    if value < timedelta(0):
        raise ValueError("must not be negative")
    if value > _LONGEST:
        raise ValueError(f"must be a duration of at most {_LONGEST.days} days")
    return value


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("must be positive")
    return _not_negative(value)


# A period the node waits or runs for: positive. `Duration`: zero allowed (at once).
Period = Annotated[timedelta, BeforeValidator(_duration), AfterValidator(_positive)]
Duration = Annotated[timedelta, BeforeValidator(_duration), AfterValidator(_not_negative)]
AETitle = Annotated[str, Field(min_length=1, max_length=16, pattern=r"^[\x20-\x5b\x5d-\x7e]*[^ ]$")]
Port = Annotated[int, Field(ge=1, le=65535)]


def _path(value: object) -> object:
    # Path("") is Path("."): an empty setting would silently mean the working folder.
    if isinstance(value, str) and not value.strip():
        raise ValueError("must be a path, not empty")
    return value


SettingPath = Annotated[Path, BeforeValidator(_path)]

# SQLAlchemy's URL grammar (sqlalchemy.engine.url._parse_url), checked here without importing
# SQLAlchemy: commands that never open the database (echo, health) must start without it.
_DATABASE_URL = re.compile(r"""
    (?P<name>[\w+]+)://
    (?:[^:/]*(?::[^@]*)?@)?
    (?:(?:\[[^/?]+\]|[^/:?]+)?(?::(?P<port>[^/?]*))?)?
    (?:/[^?]*)?
    (?:\?.*)?""", re.X)
# The synchronous drivers of the two supported backends (None: SQLAlchemy's default) and the
# module each needs: create_engine would otherwise fail on a missing one with a traceback.
_DATABASE_DRIVERS: dict[str, dict[str | None, str]] = {
    "sqlite": {None: "sqlite3", "pysqlite": "sqlite3"},
    "postgresql": {None: "psycopg", "psycopg": "psycopg", "psycopg2": "psycopg2", "pg8000": "pg8000"},
}


class ConfigError(ValueError):
    """The configuration is invalid; the message says which setting and why."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AllowedCaller(_Section):
    """A calling AE title allowed to associate, optionally from given addresses only."""

    ae_title: AETitle
    addresses: tuple[str, ...] = ()

    @field_validator("addresses")
    @classmethod
    def _valid_addresses(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            ipaddress.ip_network(item, strict=False)
        return value


class DicomSettings(_Section):
    ae_title: AETitle = "LSENTINEL"
    # Reject an association whose called AE title is not ae_title (a caller aiming at another node).
    require_called_ae_title: bool = True
    host: str = "0.0.0.0"
    port: Port = 11112
    max_associations: int = Field(default=10, ge=1, le=1000)
    # Processes receiving on the port: the first listens and hands each new connection
    # to the one with the fewest open (node.receiver.handoff). One Python process runs
    # one core's worth of DICOM networking, so concurrent senders need more to use more cores.
    receiver_processes: int = Field(default=1, ge=1, le=64)
    max_instance_bytes: int = Field(default=2 * 1024**3, ge=1024)
    acse_timeout: Period = timedelta(seconds=30)
    dimse_timeout: Period = timedelta(seconds=60)
    network_timeout: Period = timedelta(seconds=60)
    # On SIGTERM open associations get this long to finish, then are aborted.
    shutdown_grace: Duration = timedelta(seconds=10)
    # An empty list accepts any caller; hospitals list their PACS here.
    allowed_callers: tuple[AllowedCaller, ...] = ()


class TlsSettings(_Section):
    enabled: bool = False
    cert_file: SettingPath | None = None
    key_file: SettingPath | None = None
    ca_file: SettingPath | None = None
    require_client_cert: bool = False

    @model_validator(mode="after")
    def _files_when_enabled(self) -> TlsSettings:
        if self.enabled and (self.cert_file is None or self.key_file is None):
            raise ValueError("tls.enabled needs tls.cert_file and tls.key_file")
        if self.require_client_cert and self.ca_file is None:
            raise ValueError("tls.require_client_cert needs tls.ca_file")
        return self


class RetentionSettings(_Section):
    """Received images are deleted this long after their results were delivered."""

    enabled: bool = False
    delete_after: Duration = timedelta(days=30)
    # How often `serve` looks for studies past `delete_after`.
    interval: Period = timedelta(hours=1)


class StorageSettings(_Section):
    root: SettingPath = Path("var/storage")
    results: SettingPath = Path("var/results")
    min_free_bytes: int = Field(default=1024**3, ge=0)
    partial_file_max_age: Period = timedelta(hours=1)
    # Off only to start on a store whose most recent files are all lost, with no backup.
    verify_root: bool = True
    retention: RetentionSettings = RetentionSettings()


class DatabaseSettings(_Section):
    url: str = "sqlite:///var/lumbar-sentinel.db"
    echo: bool = False

    @field_validator("url")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        # The messages never quote the URL: it may hold a password.
        match = _DATABASE_URL.fullmatch(value)
        backend, _, driver = (match.group("name") if match else "").partition("+")
        if backend not in _DATABASE_DRIVERS:
            raise ValueError("database.url must be a sqlite:// or postgresql:// URL")
        port = match.group("port") if match else None
        if port and not (port.isdigit() and 1 <= int(port) <= 65535):
            raise ValueError(f"the port must be a number 1-65535, got {port!r}")
        drivers = _DATABASE_DRIVERS[backend]
        if (driver or None) not in drivers:
            known = ", ".join(f"{backend}+{name}" for name in drivers if name)
            raise ValueError(f"unknown driver {driver!r} for {backend} (known: {known})")
        if importlib.util.find_spec(drivers[driver or None]) is None:
            raise ValueError(f"the driver {drivers[driver or None]} for {backend} is not installed")
        return value


class StudySettings(_Section):
    quiet_period: Period = timedelta(seconds=20)
    completion_poll_interval: Period = timedelta(seconds=2)
    # An open association that stored into a study holds its completion at most this
    # long after its last instance into it (a row left open by a node that never returned).
    association_hold: Period = timedelta(hours=1)


class QueueSettings(_Section):
    workers: int = Field(default=1, ge=0, le=64)
    lease: Period = timedelta(seconds=120)
    heartbeat: Period = timedelta(seconds=20)
    poll_interval: Period = timedelta(seconds=1)
    max_attempts: int = Field(default=5, ge=1)
    backoff_base: Period = timedelta(seconds=10)
    backoff_max: Period = timedelta(minutes=10)
    backoff_jitter: float = Field(default=0.2, ge=0.0, le=1.0)
    # On SIGTERM running jobs get this long to finish, then are released.
    shutdown_grace: Duration = timedelta(seconds=30)

    @model_validator(mode="after")
    def _heartbeat_shorter_than_lease(self) -> QueueSettings:
        if self.heartbeat >= self.lease:
            raise ValueError("queue.heartbeat must be shorter than queue.lease")
        if self.backoff_max < self.backoff_base:
            raise ValueError("queue.backoff_max must be at least queue.backoff_base")
        return self


class MetricsSettings(_Section):
    # The HTTP endpoint of `serve` and `worker`: /metrics (Prometheus) and /healthz.
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=9112, ge=0, le=65535)  # 0: any free port (tests)
    # /healthz answers 503 once a due job has waited this long for a worker.
    queue_stuck_after: Period = timedelta(minutes=30)


ResultKindName = Literal["sr", "seg", "key_image"]
ALL_RESULT_KINDS: tuple[ResultKindName, ...] = ("sr", "seg", "key_image")
# Deliveries back to the sender are named RETURN_PREFIX + calling AE title; the ":" keeps
# them apart from configured destinations, whose names cannot contain one.
RETURN_PREFIX = "return:"
DestinationName = Annotated[str, Field(min_length=1, max_length=48, pattern=r"^[A-Za-z0-9_.-]+$")]


class DestinationTls(_Section):
    """DICOM TLS towards one destination: its certificate checked against ``ca_file``."""

    enabled: bool = False
    # None: the system's trust store.
    ca_file: SettingPath | None = None
    # Our client certificate, for destinations that require one.
    cert_file: SettingPath | None = None
    key_file: SettingPath | None = None
    check_hostname: bool = True

    @model_validator(mode="after")
    def _pair(self) -> DestinationTls:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("tls.cert_file and tls.key_file must be given together")
        return self


def _unique_kinds(value: tuple[str, ...]) -> tuple[str, ...]:
    if not value:
        raise ValueError("objects must name at least one of sr, seg, key_image")
    if len(set(value)) != len(value):
        raise ValueError("objects lists a kind twice")
    return value


class Destination(_Section):
    """A DICOM peer (PACS, viewer) the result objects are sent to with C-STORE."""

    name: DestinationName
    ae_title: AETitle
    host: str = Field(min_length=1)
    port: Port
    tls: DestinationTls = DestinationTls()
    objects: tuple[ResultKindName, ...] = ALL_RESULT_KINDS
    enabled: bool = True

    _kinds = field_validator("objects")(_unique_kinds)


class ReturnRoute(_Section):
    """Where a calling AE title listens: an association does not tell its SCP port."""

    ae_title: AETitle  # the calling AE title the study came from
    host: str = Field(min_length=1)
    port: Port
    # The called AE title to use; default the same title.
    called_ae_title: AETitle | None = None
    tls: DestinationTls = DestinationTls()


class ReturnToSender(_Section):
    """The destination "back to the AE that sent the study", one route per calling AE title."""

    enabled: bool = False
    objects: tuple[ResultKindName, ...] = ALL_RESULT_KINDS
    routes: tuple[ReturnRoute, ...] = ()

    _kinds = field_validator("objects")(_unique_kinds)

    @model_validator(mode="after")
    def _unique_routes(self) -> ReturnToSender:
        titles = [route.ae_title.strip() for route in self.routes]
        if len(set(titles)) != len(titles):
            raise ValueError("return_to_sender.routes lists a calling AE title twice")
        return self


class DeliveryRetry(_Section):
    """Attempts of one delivery, and the backoff between them."""

    max_attempts: int = Field(default=8, ge=1, le=1000)
    backoff_base: Period = timedelta(seconds=30)
    backoff_max: Period = timedelta(minutes=30)
    backoff_jitter: float = Field(default=0.2, ge=0.0, le=1.0)
    give_up_after: Period = timedelta(hours=24)

    @model_validator(mode="after")
    def _ordered(self) -> DeliveryRetry:
        if self.backoff_max < self.backoff_base:
            raise ValueError("delivery.retry: backoff_base must be at most backoff_max")
        return self


class CircuitBreakerSettings(_Section):
    """After ``failure_threshold`` connection failures in a row a destination is left alone for
    ``open_for``; then one C-ECHO probe decides whether sending resumes."""

    failure_threshold: int = Field(default=5, ge=1)
    open_for: Period = timedelta(minutes=2)


class DeliverySettings(_Section):
    # Our calling AE title towards destinations; None: dicom.ae_title.
    calling_ae_title: AETitle | None = None
    connect_timeout: Period = timedelta(seconds=15)
    dimse_timeout: Period = timedelta(seconds=60)
    destinations: tuple[Destination, ...] = ()
    return_to_sender: ReturnToSender = ReturnToSender()
    retry: DeliveryRetry = DeliveryRetry()
    breaker: CircuitBreakerSettings = CircuitBreakerSettings()

    @model_validator(mode="after")
    def _unique_names(self) -> DeliverySettings:
        names = [destination.name for destination in self.destinations]
        if len(set(names)) != len(names):
            raise ValueError("delivery.destinations: two destinations share a name")
        return self


class LoggingSettings(_Section):
    level: str = Field(default="INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=_ENV_PREFIX, env_nested_delimiter="__", extra="forbid", frozen=True
    )

    dicom: DicomSettings = DicomSettings()
    tls: TlsSettings = TlsSettings()
    storage: StorageSettings = StorageSettings()
    database: DatabaseSettings = DatabaseSettings()
    study: StudySettings = StudySettings()
    queue: QueueSettings = QueueSettings()
    metrics: MetricsSettings = MetricsSettings()
    delivery: DeliverySettings = DeliverySettings()
    logging: LoggingSettings = LoggingSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment overrides the file, which is passed as init values.
        return (env_settings, init_settings)


def load_settings(path: Path | None = None, **overrides: Any) -> Settings:
    """Read the TOML file, apply environment overrides, validate.

    Raises :class:`ConfigError` with every invalid setting named.
    """
    config_path = path or DEFAULT_CONFIG
    try:
        data: dict[str, Any] = tomllib.loads(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"configuration file not found: {config_path}") from exc
    except OSError as exc:  # a folder, no permission to read
        raise ConfigError(f"cannot read configuration file {config_path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{config_path}: not a UTF-8 text file (byte {exc.start})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{config_path}: not valid TOML: {exc}") from exc
    for section, values in overrides.items():
        data.setdefault(section, {}).update(values)
    # pydantic-settings ignores them: a misspelt override would silently do nothing. Only the
    # nested form is one (LSENT_TEST_PG_ADMIN_URL and the like belong to the tests).
    unknown = sorted(name for name in os.environ if name.upper().startswith(_ENV_PREFIX) and "__" in name
                     and name[len(_ENV_PREFIX):].split("__")[0].lower() not in Settings.model_fields)
    single = sorted(name for name in os.environ if name.upper().startswith(_ENV_PREFIX) and "__" not in name
                    and any(name[len(_ENV_PREFIX):].lower().startswith(f"{section}_")
                            for section in Settings.model_fields))
    if single:  # LSENT_DATABASE_URL for LSENT_DATABASE__URL: as silent as a misspelt section
        raise ConfigError(f"environment variable(s) {', '.join(single)} need two underscores after the "
                          f"section, e.g. {_ENV_PREFIX}DATABASE__URL")
    if unknown:
        raise ConfigError(f"unknown setting section in environment variable(s) {', '.join(unknown)}; "
                          f"sections: {', '.join(Settings.model_fields)}")
    try:
        return Settings(**data)
    except ValidationError as exc:
        problems = "; ".join(_problem(err["loc"], err["msg"]) for err in exc.errors())
        raise ConfigError(f"{config_path}: invalid configuration: {problems}") from exc
    except SettingsError as exc:  # an environment value pydantic-settings could not parse (JSON)
        raise ConfigError(f"invalid environment override: {_unparsable(exc)}") from exc


def _unparsable(exc: SettingsError) -> str:
    """Which environment variable holds no valid JSON: pydantic-settings names only its section."""
    section = re.search(r'field "([^"]+)"', str(exc))
    prefix = f"{_ENV_PREFIX}{section.group(1).upper()}" if section else _ENV_PREFIX
    candidates: list[tuple[str, str]] = []
    for name, value in sorted(os.environ.items()):
        if not name.upper().startswith(prefix):
            continue
        try:
            json.loads(value)
        except ValueError:
            candidates.append((name, value))
    # A list or table written as JSON, mistyped, is the likely one; a plain text value
    # of a scalar setting does not parse as JSON either.
    likely = [name for name, value in candidates if value.lstrip()[:1] in ("[", "{")] \
        or [name for name, _ in candidates]
    detail = f" ({exc.__cause__})" if isinstance(exc.__cause__, json.JSONDecodeError) else ""
    if not likely:
        return str(exc)
    return f"{', '.join(likely)}: not valid JSON{detail}; a list or table setting takes a JSON value"


def _problem(loc: tuple[int | str, ...], message: str) -> str:
    """One invalid setting, named; and the environment variable that set it, if one did."""
    name = ".".join(str(p) for p in loc)
    variable = "LSENT_" + "__".join(str(p) for p in loc).upper()
    source = f" (set by {variable})" if variable in os.environ else ""
    return f"{name}{source}: {message}"
