"""Health and Prometheus metrics of a node process (``metrics`` settings; names in docs/operations.md)."""

from node.metrics.collector import DELIVERY_SCHEMA, DatabaseCollector, DeliverySchema
from node.metrics.health import HealthCheck
from node.metrics.jobs import JobMetrics
from node.metrics.receiving import ReceiverMetrics
from node.metrics.server import Telemetry

__all__ = [
    "DELIVERY_SCHEMA",
    "DatabaseCollector",
    "DeliverySchema",
    "HealthCheck",
    "JobMetrics",
    "ReceiverMetrics",
    "Telemetry",
]
