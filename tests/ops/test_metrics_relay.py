"""The extra receiver processes' counts in the main process's /metrics (node.metrics.relay)."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from node.metrics.receiving import ReceiverMetrics
from node.metrics.relay import MetricsRelay, RelayedMetrics
from node.storage import RecordOutcome
from tests.helpers.dicom import StudyUIDs, mr_instance
from tests.helpers.node import free_port, make_node, receiver_process_pids
from tests.helpers.senders import association
from tests.ops.scrape import samples, value
from tests.queue.helpers import wait_until


def _count(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def test_relayed_events_are_counted_and_a_closed_pipe_aborts_what_it_left_open() -> None:
    registry = CollectorRegistry()
    relay = MetricsRelay(ReceiverMetrics(registry))
    relay.start()
    try:
        pipe = relay.connection()
        child = RelayedMetrics(pipe)
        for _ in range(3):
            child.association_accepted()
        child.association_rejected()
        child.instance_received(RecordOutcome.STORED)
        child.instance_received(RecordOutcome.DUPLICATE)
        child.instance_rejected(0xA700)
        child.association_ended("released")
        wait_until(lambda: _count(registry, "lsent_associations_ended_total", result="released") == 1,
                   "the events applied", timeout=10.0)
        assert _count(registry, "lsent_associations_open") == 2
        assert _count(registry, "lsent_associations_total", result="accepted") == 3
        assert _count(registry, "lsent_associations_total", result="rejected") == 1
        assert _count(registry, "lsent_instances_received_total", outcome="stored") == 1
        assert _count(registry, "lsent_instances_received_total", outcome="duplicate") == 1
        assert _count(registry, "lsent_instances_rejected_total", status="0xA700") == 1
        pipe.close()  # the process is gone with two associations open
        wait_until(lambda: _count(registry, "lsent_associations_open") == 0, "the open ones aborted",
                   timeout=10.0)
        assert _count(registry, "lsent_associations_ended_total", result="aborted") == 2
    finally:
        relay.stop()


def test_the_endpoint_counts_every_receiver_process(tmp_path: Path) -> None:
    port = free_port()
    sections: dict[str, dict[str, Any]] = {"dicom": {"receiver_processes": 2},
                                           "metrics": {"enabled": True, "port": port}}
    node = make_node(tmp_path, f"sqlite:///{tmp_path / 'node.db'}", sections)
    node.start()
    try:
        [child] = receiver_process_pids(node)
        uids = StudyUIDs.new()
        with association(node) as first, association(node) as second:  # one in each process
            for number, assoc in enumerate((first, second), start=1):
                assert assoc.send_c_store(mr_instance(uids.study, uids.series[0], number)).Status == 0
            wait_until(lambda: value(samples(port), "lsent_instances_received_total", outcome="stored") == 2,
                       "both instances counted", timeout=10.0)
            assert value(samples(port), "lsent_associations_open") == 2
        wait_until(lambda: value(samples(port), "lsent_associations_ended_total", result="released") == 2,
                   "both releases counted", timeout=10.0)

        with association(node), association(node) as in_child:
            assert in_child.send_c_echo().Status == 0
            os.kill(child, signal.SIGKILL)
            wait_until(lambda: value(samples(port), "lsent_associations_ended_total", result="aborted") == 1,
                       "the killed process's association counted as aborted", timeout=20.0)
        scraped = samples(port)
        assert value(scraped, "lsent_associations_open") == 0
        assert value(scraped, "lsent_associations_total", result="accepted") == 4
    finally:
        assert node.terminate() == 0
