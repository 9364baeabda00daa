"""Several receiver processes (`dicom.receiver_processes`): spread, supervised, stopped with the node."""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Iterator
from contextlib import ExitStack
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event as EventType
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.db.models import AssociationResult
from node.receiver.associations import NODE_RESTARTED
from node.receiver.handoff import LoadBoard
from node.receiver.processes import ReceiverProcesses
from node.settings import ConfigError, Settings, load_settings
from node.tls import client_context
from tests.helpers.dicom import StudyUIDs, mr_instance
from tests.helpers.node import NodeProcess, make_node, receiver_process_pids, stored_files
from tests.helpers.rows import read_rows
from tests.helpers.senders import association
from tests.helpers.tls import Pki, make_pki
from tests.queue.helpers import wait_until

_SPAWN = multiprocessing.get_context("spawn")


def _board(slots: int) -> LoadBoard:
    return LoadBoard(_SPAWN.Array("i", slots))


@given(st.integers(2, 6), st.lists(st.tuples(st.booleans(), st.integers(0, 5)), max_size=40))
def test_the_least_busy_slot_takes_the_next_connection(slots: int, steps: list[tuple[bool, int]]) -> None:
    board = _board(slots)
    for take, slot in steps:
        if take:
            before = board.counts()
            chosen = board.take_least_busy()
            assert before[chosen] == min(before)
            assert chosen == before.index(min(before))  # the lowest slot on a tie: the listening one first
            assert board.counts()[chosen] == before[chosen] + 1
        else:
            board.release(slot % slots)
        assert all(count >= 0 for count in board.counts())


def test_a_slot_whose_process_is_gone_is_never_the_least_busy() -> None:
    board = _board(3)
    for _ in range(4):
        board.take(0)
    board.block(1)
    assert [board.take_least_busy() for _ in range(3)] == [2, 2, 2]
    board.reset(1)  # started again
    assert board.take_least_busy() == 1


def test_a_board_needs_a_slot_per_process() -> None:
    with pytest.raises(ValueError, match="counts must have a slot per receiver process"):
        _board(1)


def test_receiver_processes_must_be_at_least_one() -> None:
    with pytest.raises(ConfigError, match=r"dicom\.receiver_processes: Input should be greater"):
        load_settings(None, dicom={"receiver_processes": 0})


def _ready_then_exit(settings: Settings, name: str, log_level: str, ready: EventType, pipe: Connection,
                     counts: Any, slot: int, metrics: Connection | None) -> None:
    ready.set()


def test_a_process_that_keeps_ending_is_restarted_ever_later() -> None:
    now = [0.0]
    deaths: list[str] = []
    processes = ReceiverProcesses(load_settings(None), 1, name="test", main=_ready_then_exit,
                                  on_death=deaths.append, clock=lambda: now[0])
    processes.start()
    restarts: list[float] = []
    try:
        for tick in range(41):  # 20 s of the fake clock, by 0.5 s
            now[0] = tick * 0.5
            wait_until(lambda: processes.running() == 0, "the process ended", timeout=30.0)
            if processes.restart_dead():
                restarts.append(now[0])
        # each ended within a second of its start: the delay doubles (1, 2, 4, 8 s after the death is seen)
        assert restarts == [1.0, 3.5, 8.0, 16.5]
        assert len(deaths) == 5 and len(set(deaths)) == 5
        now[0] = 33.0  # the fifth death was seen at 17.0: 16 s later
        assert processes.restart_dead() == 1
        wait_until(lambda: processes.running() == 0, "the process ended", timeout=30.0)
        now[0] = 70.0  # that one "ran" 37 s before its death was seen: started again at once
        assert processes.restart_dead() == 1
        assert len(deaths) == 6
    finally:
        processes.signal_stop()
        processes.join(5.0)


def _node(tmp_path: Path, database_url: str, **dicom: object) -> NodeProcess:
    return make_node(tmp_path, database_url, {"dicom": {"receiver_processes": 2, **dicom}})


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by its parent) is gone for our purpose
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return state != "Z"


def _store_concurrently(node: NodeProcess, count: int) -> list[str]:
    """``count`` associations open at once, one instance each; the SOP Instance UIDs."""
    uids = StudyUIDs.new()
    instances = [mr_instance(uids.study, uids.series[0], n) for n in range(1, count + 1)]
    with ExitStack() as stack:
        assocs = [stack.enter_context(association(node)) for _ in instances]
        for assoc, instance in zip(assocs, instances, strict=True):
            assert assoc.send_c_store(instance).Status == 0x0000
    return [str(i.SOPInstanceUID) for i in instances]


def test_concurrent_associations_are_spread_over_the_processes(database_url: str, tmp_path: Path) -> None:
    node = _node(tmp_path, database_url)
    node.start()
    try:
        first = _store_concurrently(node, 2)
        # once those are released, their processes count them off: the next pair is spread again
        second = _store_concurrently(node, 2)
    finally:
        assert node.terminate() == 0

    with node.engine() as engine:
        rows = read_rows(engine)
    assert sorted(i.sop_instance_uid for i in rows.instances) == sorted(first + second)
    assert len(stored_files(node.storage_root)) == 4
    by_id = {a.id: a for a in rows.associations}
    assert len(by_id) == 4
    assert all(a.result == AssociationResult.RELEASED and a.instances_received == 1 for a in by_id.values())
    ordered = [by_id[i] for i in sorted(by_id)]
    for pair in (ordered[:2], ordered[2:]):
        assert len({a.node_id for a in pair}) == 2, [a.node_id for a in pair]
    assert len({a.node_listener for a in ordered}) == 1


def test_a_dead_receiver_process_is_replaced_and_its_association_closed(tmp_path: Path) -> None:
    node = _node(tmp_path, f"sqlite:///{tmp_path / 'node.db'}")
    node.start()
    try:
        [child] = receiver_process_pids(node)
        with association(node), association(node) as there:
            assert there.send_c_echo().Status == 0x0000  # its row is written before any answer
            os.kill(child, signal.SIGKILL)
            wait_until(lambda: "starting it again" in node.log_text(), "the dead process restarted",
                       timeout=20.0)
            wait_until(lambda: not there.is_established, "its association ended", timeout=20.0)
        wait_until(lambda: len(receiver_process_pids(node)) == 2, "a second process started", timeout=20.0)
        assert _store_concurrently(node, 2)  # both processes serve again
    finally:
        assert node.terminate() == 0

    with node.engine() as engine:
        associations = sorted(read_rows(engine).associations, key=lambda a: a.id)
    killed = associations[1]
    assert killed.result == AssociationResult.ABORTED
    assert killed.reason == NODE_RESTARTED
    assert associations[0].result == AssociationResult.RELEASED
    assert len({a.node_id for a in associations[2:]}) == 2
    assert killed.node_id not in {a.node_id for a in associations[2:]}  # its replacement has a new name
    assert not any(_alive(pid) for pid in receiver_process_pids(node))


def test_receiver_processes_end_with_a_killed_node(tmp_path: Path) -> None:
    node = _node(tmp_path, f"sqlite:///{tmp_path / 'node.db'}")
    node.start()
    [child] = receiver_process_pids(node)
    assert _alive(child)
    node.kill()
    # the port must not outlive the node
    wait_until(lambda: not _alive(child), "the receiver process ended", timeout=20.0)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def tls_node(pki: Pki, tmp_path: Path) -> Iterator[NodeProcess]:
    node = make_node(tmp_path, f"sqlite:///{tmp_path / 'node.db'}", {
        "dicom": {"receiver_processes": 2},
        "tls": {"enabled": True, "cert_file": str(pki.server_cert), "key_file": str(pki.server_key),
                "ca_file": str(pki.ca_cert), "require_client_cert": True}})
    node.start()
    yield node
    node.terminate()


def test_tls_is_negotiated_by_the_process_that_serves(tls_node: NodeProcess, pki: Pki) -> None:
    context = client_context(pki.ca_cert, pki.client_cert, pki.client_key)
    uids = StudyUIDs.new()
    with association(tls_node, ssl_context=context) as one, association(tls_node, ssl_context=context) as two:
        for n, assoc in enumerate((one, two), start=1):
            assert assoc.send_c_store(mr_instance(uids.study, uids.series[0], n)).Status == 0x0000
    with tls_node.engine() as engine:
        associations = read_rows(engine).associations
    assert len({a.node_id for a in associations}) == 2
    assert all(a.tls and a.instances_received == 1 for a in associations)
