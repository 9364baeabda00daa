"""The node's one validated settings model.

Loaded once in ``main()`` from ``config/node.toml`` (or ``--config``), then
overridden by environment variables ``LSENT_<SECTION>__<FIELD>``, e.g.
``LSENT_DATABASE__URL=postgresql+psycopg://.../lsent``. Every default lives
here; the TOML file documents them.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "config" / "node.toml"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def _duration(value: object) -> object:
    """Seconds as a number or "20", "20s", "500ms", "5m", "2h"; else ISO 8601 for pydantic."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=value)
    if isinstance(value, str) and (match := _DURATION.match(value)):
        return timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])
    return value


Duration = Annotated[timedelta, BeforeValidator(_duration)]
AETitle = Annotated[str, Field(min_length=1, max_length=16, pattern=r"^[\x20-\x5b\x5d-\x7e]*[^ ]$")]
Port = Annotated[int, Field(ge=1, le=65535)]


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
    host: str = "0.0.0.0"
    port: Port = 11112
    max_associations: int = Field(default=10, ge=1, le=1000)
    max_instance_bytes: int = Field(default=2 * 1024**3, ge=1024)
    acse_timeout: Duration = timedelta(seconds=30)
    dimse_timeout: Duration = timedelta(seconds=60)
    network_timeout: Duration = timedelta(seconds=60)
    # On SIGTERM open associations get this long to finish, then are aborted.
    shutdown_grace: Duration = timedelta(seconds=10)
    # An empty list accepts any caller; hospitals list their PACS here.
    allowed_callers: tuple[AllowedCaller, ...] = ()


class TlsSettings(_Section):
    enabled: bool = False
    cert_file: Path | None = None
    key_file: Path | None = None
    ca_file: Path | None = None
    require_client_cert: bool = False

    @model_validator(mode="after")
    def _files_when_enabled(self) -> TlsSettings:
        if self.enabled and (self.cert_file is None or self.key_file is None):
            raise ValueError("tls.enabled needs tls.cert_file and tls.key_file")
        if self.require_client_cert and self.ca_file is None:
            raise ValueError("tls.require_client_cert needs tls.ca_file")
        return self


class StorageSettings(_Section):
    root: Path = Path("var/storage")
    results: Path = Path("var/results")
    min_free_bytes: int = Field(default=1024**3, ge=0)
    partial_file_max_age: Duration = timedelta(hours=1)


class DatabaseSettings(_Section):
    url: str = "sqlite:///var/lumbar-sentinel.db"
    echo: bool = False

    @field_validator("url")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        if not value.startswith(("sqlite://", "postgresql")):
            raise ValueError("database.url must be a sqlite:// or postgresql:// URL")
        return value


class StudySettings(_Section):
    quiet_period: Duration = timedelta(seconds=20)
    completion_poll_interval: Duration = timedelta(seconds=2)


class QueueSettings(_Section):
    workers: int = Field(default=1, ge=0, le=64)
    lease: Duration = timedelta(seconds=120)
    heartbeat: Duration = timedelta(seconds=20)
    poll_interval: Duration = timedelta(seconds=1)
    max_attempts: int = Field(default=5, ge=1)
    backoff_base: Duration = timedelta(seconds=10)
    backoff_max: Duration = timedelta(minutes=10)
    backoff_jitter: float = Field(default=0.2, ge=0.0, le=1.0)
    # On SIGTERM running jobs get this long to finish, then are released.
    shutdown_grace: Duration = timedelta(seconds=30)

    @model_validator(mode="after")
    def _heartbeat_shorter_than_lease(self) -> QueueSettings:
        if self.heartbeat >= self.lease:
            raise ValueError("queue.heartbeat must be shorter than queue.lease")
        return self


class LoggingSettings(_Section):
    level: str = Field(default="INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="LSENT_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    dicom: DicomSettings = DicomSettings()
    tls: TlsSettings = TlsSettings()
    storage: StorageSettings = StorageSettings()
    database: DatabaseSettings = DatabaseSettings()
    study: StudySettings = StudySettings()
    queue: QueueSettings = QueueSettings()
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
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{config_path}: not valid TOML: {exc}") from exc
    for section, values in overrides.items():
        data.setdefault(section, {}).update(values)
    try:
        return Settings(**data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors())
        raise ConfigError(f"{config_path}: invalid configuration: {problems}") from exc
