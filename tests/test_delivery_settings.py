from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from node.settings import DEFAULT_CONFIG, ConfigError, load_settings


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(text, encoding="utf-8")
    return path


PACS = '[[delivery.destinations]]\nname = "pacs"\nae_title = "PACS"\nhost = "pacs.local"\nport = 104\n'


def test_defaults_send_nowhere_and_keep_images() -> None:
    settings = load_settings(DEFAULT_CONFIG)
    assert settings.delivery.destinations == ()
    assert not settings.delivery.return_to_sender.enabled
    assert settings.delivery.retry.max_attempts >= 1
    assert settings.delivery.breaker.open_for > timedelta(0)
    assert not settings.storage.retention.enabled
    assert settings.storage.retention.delete_after == timedelta(days=30)


def test_destinations_routes_and_policies_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = PACS + '[delivery.destinations.tls]\nenabled = true\nca_file = "ca.crt"\n' + (
        '[delivery.return_to_sender]\nenabled = true\nobjects = ["sr"]\n'
        '[[delivery.return_to_sender.routes]]\nae_title = "MR1"\nhost = "10.0.0.5"\nport = 4242\n'
        '[delivery.retry]\nbackoff_max = "1h"\n[storage.retention]\nenabled = true\ndelete_after = "7d"\n')
    monkeypatch.setenv("LSENT_DELIVERY__RETRY__MAX_ATTEMPTS", "3")
    settings = load_settings(write(tmp_path, text))
    (pacs,) = settings.delivery.destinations
    assert (pacs.name, pacs.port, pacs.tls.enabled) == ("pacs", 104, True)
    assert pacs.objects == ("sr", "seg", "key_image")
    (route,) = settings.delivery.return_to_sender.routes
    assert (route.ae_title, route.port, settings.delivery.return_to_sender.objects) == ("MR1", 4242, ("sr",))
    assert settings.delivery.retry.max_attempts == 3
    assert settings.delivery.retry.backoff_max == timedelta(hours=1)
    assert settings.storage.retention.delete_after == timedelta(days=7)


@pytest.mark.parametrize(
    ("text", "named"),
    [
        (PACS + PACS, "delivery"),
        (PACS + 'objects = ["sr", "pdf"]\n', "delivery.destinations.0.objects"),
        (PACS + "objects = []\n", "delivery.destinations.0.objects"),
        (PACS.replace('"pacs"', '"return:x"'), "delivery.destinations.0.name"),
        (PACS.replace('"PACS"', '"A_TITLE_FAR_TOO_LONG"'), "delivery.destinations.0.ae_title"),
        (PACS + '[delivery.destinations.tls]\ncert_file = "c.pem"\n', "delivery.destinations.0.tls"),
        ('[delivery.return_to_sender]\n[[delivery.return_to_sender.routes]]\nae_title = "A"\nhost = "h"\n'
         'port = 1\n[[delivery.return_to_sender.routes]]\nae_title = "A"\nhost = "h"\nport = 2\n',
         "delivery.return_to_sender"),
        ("[delivery.retry]\nbackoff_base = 60\nbackoff_max = 10\n", "delivery.retry"),
        ("[delivery.breaker]\nfailure_threshold = 0\n", "delivery.breaker.failure_threshold"),
        ('[storage.retention]\ninterval = 0\n', "storage.retention"),
    ],
)
def test_invalid_delivery_settings_are_named(tmp_path: Path, text: str, named: str) -> None:
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        load_settings(write(tmp_path, text))
