"""In-process counters of the DICOM receiver: instances and associations.

The main process counts what every receiving process served: the extra ones
relay their events to it (:mod:`node.metrics.relay`).
The receiver calls these methods; nothing here touches pynetdicom.
"""

from __future__ import annotations

from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge

from node.storage import RecordOutcome


class ReceptionEvents(Protocol):
    """What the receiver reports: :class:`ReceiverMetrics` counts it, ``RelayedMetrics`` forwards it."""

    def instance_received(self, outcome: RecordOutcome) -> None: ...

    def instance_rejected(self, status: int) -> None: ...

    def association_accepted(self) -> None: ...

    def association_rejected(self) -> None: ...

    def association_ended(self, result: str) -> None: ...


class ReceiverMetrics:
    """``lsent_instances_*`` and ``lsent_associations*``, registered in ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._received = Counter(
            "lsent_instances_received", "C-STORE requests answered success, by outcome "
            "(stored: new instance; duplicate: already stored, answered success)",
            ["outcome"], registry=registry)
        self._rejected = Counter(
            "lsent_instances_rejected", "C-STORE requests answered with a failure status, by status (hex)",
            ["status"], registry=registry)
        self._associations = Counter(
            "lsent_associations", "Association requests, by result (accepted, rejected)",
            ["result"], registry=registry)
        self._ended = Counter(
            "lsent_associations_ended", "Accepted associations that ended, by how (released, aborted)",
            ["result"], registry=registry)
        self._open = Gauge("lsent_associations_open", "Associations open now", registry=registry)
        # Series present from the start, so a dashboard's rate() sees the first increase.
        for outcome in RecordOutcome:
            self._received.labels(outcome.value)
        for result in ("accepted", "rejected"):
            self._associations.labels(result)
        for result in ("released", "aborted"):
            self._ended.labels(result)

    def instance_received(self, outcome: RecordOutcome) -> None:
        self._received.labels(outcome.value).inc()

    def instance_rejected(self, status: int) -> None:
        self._rejected.labels(f"0x{status:04X}").inc()

    def association_accepted(self) -> None:
        self._associations.labels("accepted").inc()
        self._open.inc()

    def association_rejected(self) -> None:
        self._associations.labels("rejected").inc()

    def association_ended(self, result: str) -> None:
        self._ended.labels(result).inc()
        self._open.dec()
