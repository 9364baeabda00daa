"""Reading a node's HTTP endpoint in tests: GET over real HTTP, the Prometheus text parsed."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def get(port: int, path: str) -> tuple[int, str, str]:
    """Status, content type and body of ``GET http://127.0.0.1:port/path`` (error statuses too)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read().decode()


def health(port: int) -> tuple[int, dict[str, Any]]:
    status, content_type, body = get(port, "/healthz")
    assert content_type == "application/json"
    return status, json.loads(body)


def samples(port: int) -> Samples:
    status, content_type, body = get(port, "/metrics")
    assert status == 200 and content_type.startswith("text/plain"), (status, content_type)
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


def value(scraped: Samples, name: str, **labels: str) -> float | None:
    """One sample's value, or None when absent."""
    return scraped.get((name, frozenset(labels.items())))
