from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from node.cli import main
from node.settings import DEFAULT_CONFIG, ConfigError, load_settings


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
