"""docs/grafana-dashboard.json queries only metrics a real node's /metrics exposes.

The node runs with the delivery tables present (from the results issue's
migration, or created here as DELIVERY_SCHEMA names them before it), so the
delivery and circuit families are exposed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import inspect, text

from node.metrics import DELIVERY_SCHEMA
from tests.helpers.node import free_port, running_node
from tests.ops.deployment import REPO
from tests.ops.scrape import get
from tests.ops.test_delivery_metrics import _TABLES

DASHBOARD = REPO / "docs" / "grafana-dashboard.json"
_METRIC = re.compile(r"\b(lsent_[a-z0-9_]+)\b")
_SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum", "_created"),
             "summary": ("_count", "_sum", "_created")}


def _queries(node: Any) -> Iterator[str]:
    """Every PromQL string in the dashboard: panel targets and template variable queries."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("expr", "definition") and isinstance(value, str):
                yield value
            else:
                yield from _queries(value)
    elif isinstance(node, list):
        for item in node:
            yield from _queries(item)


def queried_metrics(dashboard: dict[str, Any]) -> set[str]:
    return {name for query in _queries(dashboard) for name in _METRIC.findall(query)}


def exposed_names(exposition: str) -> set[str]:
    """Every series name a PromQL query can use for this exposition (families with no sample too)."""
    names: set[str] = set()
    for family in text_string_to_metric_families(exposition):
        names.add(family.name)
        names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ()))
        names.update(sample.name for sample in family.samples)
    return names


def test_every_metric_the_dashboard_queries_is_exposed(tmp_path: Path) -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    wanted = queried_metrics(dashboard)
    assert len(wanted) >= 12
    port = free_port()
    with running_node(tmp_path, f"sqlite:///{tmp_path / 'node.db'}",
                      {"metrics": {"enabled": True, "port": port}}) as node:
        with node.engine() as engine, engine.begin() as conn:
            if not inspect(conn).has_table(DELIVERY_SCHEMA.deliveries):  # before the results migration
                for statement in _TABLES:
                    conn.execute(text(statement.format(s=DELIVERY_SCHEMA)))
        status, _, body = get(port, "/metrics")
    assert status == 200
    assert sorted(wanted - exposed_names(body)) == []


def test_the_check_sees_a_metric_that_does_not_exist() -> None:
    dashboard = {"panels": [{"targets": [{"expr": "rate(lsent_instances_received_total[5m])"},
                                         {"expr": "lsent_made_up_seconds_bucket"}]}]}
    exposition = ("# HELP lsent_instances_received C-STORE\n# TYPE lsent_instances_received counter\n"
                  'lsent_instances_received_total{outcome="stored"} 1.0\n')
    assert queried_metrics(dashboard) - exposed_names(exposition) == {"lsent_made_up_seconds_bucket"}
