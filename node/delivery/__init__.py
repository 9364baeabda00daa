"""Sending result objects to PACS and viewers: outbox, sender, circuit breaker, job handler."""

from node.delivery.outbox import (
    DELIVER_RESULTS,
    current_result_id,
    last_reported_objects,
    publish_results,
    record_findings,
    requeue,
    sender_ae,
)
from node.delivery.routes import Route, resolve, routes_for
from node.delivery.sender import Sender

__all__ = [
    "DELIVER_RESULTS",
    "Route",
    "Sender",
    "current_result_id",
    "last_reported_objects",
    "publish_results",
    "record_findings",
    "requeue",
    "resolve",
    "routes_for",
    "sender_ae",
]
