from __future__ import annotations

import importlib.util
import re
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from node.cli import main
from node.settings import _DATABASE_DRIVERS, DEFAULT_CONFIG, ConfigError, load_settings


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_default_file_is_valid_and_documents_defaults() -> None:
    settings = load_settings(DEFAULT_CONFIG)
    assert settings.dicom.port == 11112
    assert settings.database.url.startswith("sqlite:///")
    assert settings.study.quiet_period == timedelta(seconds=20)
    assert settings.queue.lease > settings.queue.heartbeat


def test_environment_overrides_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, '[dicom]\nport = 4000\nae_title = "FROMFILE"\n')
    monkeypatch.setenv("LSENT_DICOM__PORT", "4100")
    monkeypatch.setenv("LSENT_STUDY__QUIET_PERIOD", "5")
    settings = load_settings(path)
    assert settings.dicom.port == 4100
    assert settings.dicom.ae_title == "FROMFILE"
    assert settings.study.quiet_period == timedelta(seconds=5)


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('[dicom]\nae_title = "THIS_TITLE_IS_TOO_LONG"\n', "dicom.ae_title"),
        ("[dicom]\nport = 70000\n", "dicom.port"),
        ("[queue]\nlease = 10\nheartbeat = 30\n", "queue"),
        ('[database]\nurl = "mysql://x"\n', "database.url"),
        ("[tls]\nenabled = true\n", "tls"),
        ('[study]\nquiet_period = "soon"\n', "study.quiet_period"),
        ("[dicom]\nunknown_setting = 1\n", "dicom.unknown_setting"),
        ('[[dicom.allowed_callers]]\nae_title = "PACS"\naddresses = ["not-an-ip"]\n', "allowed_callers"),
        # a TOML number is a duration too, and must make sense as one
        ("[study]\nquiet_period = -30\n", "study.quiet_period: Value error, must be positive"),
        ("[study]\nquiet_period = 0\n", "study.quiet_period: Value error, must be positive"),
        ("[queue]\nlease = -5\nheartbeat = -10\n", "queue.lease: Value error, must be positive"),
        ("[queue]\npoll_interval = 0\n", "queue.poll_interval"),
        ("[queue]\nbackoff_base = 60\nbackoff_max = 10\n", "queue.backoff_max must be at least"),
        ("[storage.retention]\ndelete_after = true\n", "storage.retention.delete_after: Value error, must be "
                                                       "a duration, not true or false"),
        ("[storage.retention]\ndelete_after = -1\n", "storage.retention.delete_after: Value error, must not"),
        ("[study]\nquiet_period = 1e20\n", "study.quiet_period: Value error, must be a duration of at most"),
    ],
)
def test_invalid_settings_are_named(tmp_path: Path, text: str, named: str) -> None:
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        load_settings(write(tmp_path, text))


def test_bad_toml_and_missing_file_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(write(tmp_path, "[dicom\n"))
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "absent.toml")


def test_cli_reports_invalid_configuration(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "[dicom]\nport = 0\n")
    assert main(["--config", str(path), "db", "current"]) == 2
    assert "dicom.port" in capsys.readouterr().err


def test_an_invalid_environment_override_is_named_as_its_source(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LSENT_QUEUE__WORKERS", "several")
    with pytest.raises(ConfigError, match=r"queue\.workers \(set by LSENT_QUEUE__WORKERS\)"):
        load_settings(write(tmp_path, "[queue]\nworkers = 2\n"))
    with pytest.raises(ConfigError) as raised:  # one the file set is not blamed on the environment
        load_settings(write(tmp_path, "[dicom]\nport = 0\n"))
    assert "dicom.port: " in str(raised.value) and "dicom.port (set by" not in str(raised.value)


def test_zero_is_a_duration_where_it_means_at_once(tmp_path: Path) -> None:
    text = "[dicom]\nshutdown_grace = 0\n[storage.retention]\ndelete_after = 0\n"
    settings = load_settings(write(tmp_path, text))
    assert settings.dicom.shutdown_grace == settings.storage.retention.delete_after == timedelta(0)


def test_a_misspelt_or_malformed_environment_override_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "")
    monkeypatch.setenv("LSENT_TEST_PG_ADMIN_URL", "postgresql://elsewhere")  # not a setting: left alone
    load_settings(path)
    monkeypatch.setenv("LSENT_QEUE__WORKERS", "3")
    with pytest.raises(ConfigError, match=r"unknown setting section in environment .* LSENT_QEUE__WORK"):
        load_settings(path)
    monkeypatch.delenv("LSENT_QEUE__WORKERS")
    monkeypatch.setenv("LSENT_DATABASE_URL", "sqlite:///elsewhere.db")
    with pytest.raises(ConfigError, match="LSENT_DATABASE_URL need two underscores after the section"):
        load_settings(path)
    monkeypatch.delenv("LSENT_DATABASE_URL")
    monkeypatch.setenv("LSENT_DELIVERY__DESTINATIONS", "[{not json")
    with pytest.raises(ConfigError, match="invalid environment override"):
        load_settings(path)


def test_a_config_path_that_cannot_be_read_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match=f"cannot read configuration file {tmp_path}: Is a directory"):
        load_settings(tmp_path)
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes('[dicom]\nae_title = "GRÜN"\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1\.toml: not a UTF-8 text file"):
        load_settings(latin1)

    def refused(self: Path, encoding: str | None = None) -> str:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_text", refused)  # the tests may run as root, who reads anything
    with pytest.raises(ConfigError, match=r"cannot read configuration file .*: Permission denied"):
        load_settings(latin1)


@pytest.mark.parametrize(("value", "message"), [
    ("-5", "must be positive"), ("-5s", "must be positive"), ("-0.5m", "must be positive"),
    ("1e400", "must be a duration of at most 3650 days"), ("1e6d", "must be a duration of at most"),
])
def test_a_negative_or_huge_duration_is_said_so_from_the_environment_and_the_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str, message: str) -> None:
    expected = f"study.quiet_period (set by LSENT_STUDY__QUIET_PERIOD): Value error, {message}"
    monkeypatch.setenv("LSENT_STUDY__QUIET_PERIOD", value)
    with pytest.raises(ConfigError, match=re.escape(expected)):
        load_settings(write(tmp_path, ""))
    monkeypatch.delenv("LSENT_STUDY__QUIET_PERIOD")
    with pytest.raises(ConfigError, match=re.escape(f"study.quiet_period: Value error, {message}")):
        load_settings(write(tmp_path, f'[study]\nquiet_period = "{value}"\n'))


def test_a_duration_with_a_sign_or_an_exponent_is_still_a_duration(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, '[study]\nquiet_period = "+1.5e1s"\n'))
    assert settings.study.quiet_period == timedelta(seconds=15)


def test_an_environment_override_that_is_not_json_is_named(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LSENT_DICOM__AE_TITLE", "NODE")  # valid, and not JSON: not the one to blame
    monkeypatch.setenv("LSENT_DICOM__ALLOWED_CALLERS", "[{bad")
    with pytest.raises(ConfigError) as raised:
        load_settings(write(tmp_path, ""))
    said = str(raised.value)
    assert "LSENT_DICOM__ALLOWED_CALLERS: not valid JSON" in said and "LSENT_DICOM__AE_TITLE" not in said


@pytest.mark.parametrize("setting", ["storage.root", "storage.results", "tls.ca_file",
                                     "delivery.return_to_sender.routes"])
def test_an_empty_path_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setting: str) -> None:
    if setting == "delivery.return_to_sender.routes":  # a path setting in a list of tables
        text = ('[[delivery.return_to_sender.routes]]\nae_title = "PACS"\nhost = "pacs"\nport = 104\n'
                'tls = { ca_file = "" }\n')
        with pytest.raises(ConfigError, match=r"routes\.0\.tls\.ca_file: Value error, must be a path, not"):
            load_settings(write(tmp_path, text))
        return
    section, name = setting.split(".")
    with pytest.raises(ConfigError, match=re.escape(f"{setting}: Value error, must be a path, not empty")):
        load_settings(write(tmp_path, f'[{section}]\n{name} = ""\n'))
    monkeypatch.setenv(f"LSENT_{section.upper()}__{name.upper()}", "")
    with pytest.raises(ConfigError, match=re.escape(f"{setting} (set by LSENT_")):
        load_settings(write(tmp_path, ""))


@pytest.mark.parametrize(("url", "message"), [
    ("postgresqlfoo://x", "must be a sqlite:// or postgresql:// URL"),
    ("postgresql+psycopg://lsent:secret@127.0.0.1:54x2/db", "the port must be a number 1-65535, got '54x2'"),
    ("postgresql+psycopg://lsent:secret@127.0.0.1:99999/db", "the port must be a number 1-65535"),
    ("postgresql+mysqldb://lsent:secret@db/lsent", "unknown driver 'mysqldb' for postgresql"),
    ("sqlite+aiosqlite:///node.db", "unknown driver 'aiosqlite' for sqlite"),
    ("not a url", "must be a sqlite:// or postgresql:// URL"),
])
def test_a_database_url_sqlalchemy_cannot_use_is_a_settings_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str, message: str) -> None:
    monkeypatch.setenv("LSENT_DATABASE__URL", url)
    with pytest.raises(ConfigError) as raised:
        load_settings(write(tmp_path, ""))
    said = str(raised.value)
    assert "database.url (set by LSENT_DATABASE__URL)" in said and message in said
    assert "secret" not in said


def test_a_database_driver_that_is_not_installed_is_named(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *_: None)
    with pytest.raises(ConfigError, match="the driver psycopg for postgresql is not installed"):
        load_settings(write(tmp_path, '[database]\nurl = "postgresql://lsent@db/lsent"\n'))


@pytest.mark.parametrize("url", [
    "sqlite:///var/node.db", "sqlite:////abs/node.db", "sqlite://", "sqlite:///:memory:",
    "postgresql://lsent@db/lsent", "postgresql+psycopg://lsent:p%40ss:w@[::1]:5432/lsent?sslmode=require",
    "postgresql+psycopg://lsent@/lsent?host=/run/postgresql",
])
def test_the_database_urls_sqlalchemy_takes_are_accepted(tmp_path: Path, url: str) -> None:
    settings = load_settings(write(tmp_path, f'[database]\nurl = "{url}"\n'))
    make_url(settings.database.url).get_dialect()  # and SQLAlchemy parses them the same


@pytest.mark.parametrize(("backend", "driver"), [(b, d) for b, ds in _DATABASE_DRIVERS.items() for d in ds])
def test_the_known_drivers_are_sqlalchemys(backend: str, driver: str | None) -> None:
    # the settings check them without importing SQLAlchemy; its dialects must agree
    dialect = make_url(f"{backend}{'+' + driver if driver else ''}://").get_dialect()
    assert dialect.name == backend and not dialect.is_async
    # the default driver (None) needs the module of the driver SQLAlchemy picks
    assert _DATABASE_DRIVERS[backend][driver] == _DATABASE_DRIVERS[backend][dialect.driver]
