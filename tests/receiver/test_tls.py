"""DICOM TLS: server certificate, client-certificate verification, DCMTK and pynetdicom clients."""

from __future__ import annotations

import multiprocessing
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from pynetdicom import AE
from pynetdicom.association import Association

from node.receiver.handoff import DispatchingAE, Handoff, LoadBoard, releasing
from node.receiver.negotiation import VERIFICATION
from node.settings import TlsSettings
from node.tls import client_context, server_context
from tests.helpers.dicom import StudyUIDs, mr_instance, write_study
from tests.helpers.node import NodeProcess, running_node
from tests.helpers.rows import read_rows
from tests.helpers.senders import associate, echoscu, store, storescu
from tests.helpers.tls import Pki, make_pki
from tests.queue.helpers import wait_until

_HANDSHAKE_FAILED = "failed before its association"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _tls_sections(pki: Pki, *, require_client_cert: bool) -> dict[str, dict[str, object]]:
    return {"tls": {"enabled": True, "cert_file": str(pki.server_cert), "key_file": str(pki.server_key),
                    "ca_file": str(pki.ca_cert), "require_client_cert": require_client_cert}}


@pytest.fixture(scope="module")
def node(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    folder = tmp_path_factory.mktemp("tls")
    with running_node(folder, f"sqlite:///{folder / 'node.db'}",
                      _tls_sections(pki, require_client_cert=True)) as node:
        yield node


def _client(pki: Pki, *, with_cert: bool) -> ssl.SSLContext:
    if with_cert:
        return client_context(pki.ca_cert, pki.client_cert, pki.client_key)
    return client_context(pki.ca_cert)


def test_a_client_with_a_certificate_stores_over_tls(node: NodeProcess, pki: Pki) -> None:
    uids = StudyUIDs.new()
    dataset = mr_instance(uids.study, uids.series[0], 1)
    statuses = store(node, [dataset], ssl_context=_client(pki, with_cert=True))
    assert [s.Status for s in statuses] == [0x0000]
    with node.engine() as engine:
        rows = read_rows(engine)
    instance = next(i for i in rows.instances if i.sop_instance_uid == dataset.SOPInstanceUID)
    association = next(a for a in rows.associations if a.id == instance.association_id)
    assert association.tls is True


def test_a_client_without_a_certificate_is_refused(node: NodeProcess, pki: Pki) -> None:
    assoc = associate(node, ssl_context=_client(pki, with_cert=False))
    assert not assoc.is_established


def test_a_plain_tcp_client_is_refused(node: NodeProcess) -> None:
    assoc = associate(node)
    assert not assoc.is_established
    assert echoscu(node).returncode != 0


def test_dcmtk_clients_over_tls(node: NodeProcess, pki: Pki, tmp_path: Path) -> None:
    tls = ["+tls", str(pki.client_key), str(pki.client_cert), "+cf", str(pki.ca_cert)]
    result = echoscu(node, *tls)
    assert result.returncode == 0, result.stdout + result.stderr
    _, paths = write_study(tmp_path / "study", 3)
    result = storescu(node, paths, *tls)
    assert result.returncode == 0, result.stdout + result.stderr


def test_client_certificates_are_optional_unless_required(pki: Pki, tmp_path: Path) -> None:
    with running_node(tmp_path, f"sqlite:///{tmp_path / 'node.db'}",
                      _tls_sections(pki, require_client_cert=False)) as node:
        assoc = associate(node, ssl_context=_client(pki, with_cert=False))
        assert assoc.is_established
        assert assoc.send_c_echo().Status == 0x0000
        assoc.release()
        result = echoscu(node, "+tla", "+cf", str(pki.ca_cert))
        assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("receiver_processes", [1, 2])
def test_each_failed_handshake_is_logged(pki: Pki, tmp_path: Path, receiver_processes: int) -> None:
    sections: dict[str, dict[str, object]] = {**_tls_sections(pki, require_client_cert=True),
                                               "dicom": {"receiver_processes": receiver_processes}}
    with running_node(tmp_path, f"sqlite:///{tmp_path / 'node.db'}", sections) as node:
        assert not associate(node, ssl_context=_client(pki, with_cert=False)).is_established
        assert echoscu(node, "+tla", "+cf", str(pki.ca_cert)).returncode != 0
        assert echoscu(node).returncode != 0
        wait_until(lambda: node.log_text().count(_HANDSHAKE_FAILED) >= 3, "three failed handshakes logged",
                   timeout=10)
        assert node.log_text().count(_HANDSHAKE_FAILED) == 3
        assert "127.0.0.1" in next(line for line in node.log_text().splitlines() if _HANDSHAKE_FAILED in line)


@pytest.mark.parametrize("receiver_processes", [1, 2])
def test_a_silent_connection_does_not_hold_back_the_next_association(pki: Pki, tmp_path: Path,
                                                                     receiver_processes: int) -> None:
    # a connection that sent nothing (a half-open probe) held every later association back for as
    # long as its handshake was given, the handshake running where connections are accepted
    sections: dict[str, dict[str, object]] = {**_tls_sections(pki, require_client_cert=False),
                                               "dicom": {"receiver_processes": receiver_processes,
                                                         "acse_timeout": 60}}
    with running_node(tmp_path, f"sqlite:///{tmp_path / 'node.db'}", sections) as node:
        with socket.create_connection(("127.0.0.1", node.port)):
            echoed = echoscu(node, "+tla", "+cf", str(pki.ca_cert), "-to", "10")
            assert echoed.returncode == 0, echoed.stdout + echoed.stderr
            assert _HANDSHAKE_FAILED not in node.log_text()  # the silent one is still waited for
        wait_until(lambda: _HANDSHAKE_FAILED in node.log_text(), "the silent one's close to be logged",
                   timeout=10)


@contextmanager
def _listening_process_server(pki: Pki, max_associations: int = 10) -> Iterator[tuple[LoadBoard, int]]:
    """A TLS listening process's server with no other receiver process attached (every connection
    is served here): its load board and port."""
    board = LoadBoard(multiprocessing.get_context("spawn").Array("i", 2))
    ae = DispatchingAE(handoff=Handoff(board))
    ae.maximum_associations = max_associations
    ae.acse_timeout = 60
    ae.add_supported_context(VERIFICATION)
    tls = TlsSettings(enabled=True, cert_file=pki.server_cert, key_file=pki.server_key, ca_file=pki.ca_cert)
    server = ae.start_server(("127.0.0.1", 0), block=False, ssl_context=server_context(tls),
                             evt_handlers=[releasing(board, 0)])
    assert server is not None
    try:
        yield board, server.server_address[1]
    finally:
        server.shutdown()


def _echo_association(pki: Pki, port: int) -> Association:
    client = AE()
    client.add_requested_context(VERIFICATION)
    return client.associate("127.0.0.1", port, tls_args=(_client(pki, with_cert=True), "localhost"))


def test_a_failed_handshake_comes_off_the_load_board(pki: Pki) -> None:
    # the listening process counts each connection it serves; one that closes before its association
    # fires no EVT_CONN_CLOSE, so its count must come off where its handshake failed
    with _listening_process_server(pki) as (board, port):
        with socket.create_connection(("127.0.0.1", port)) as plain:
            plain.sendall(b"not a TLS record")
        wait_until(lambda: board.counts() == [0, 0], "the failed connection to come off", timeout=10)
        assoc = _echo_association(pki, port)
        assert assoc.is_established
        assert board.counts() == [1, 0]
        assoc.release()
        wait_until(lambda: board.counts() == [0, 0], "the association to come off", timeout=10)


def test_handshakes_under_way_are_bounded_by_the_association_limit(pki: Pki) -> None:
    # each handshake has a thread of its own: without a bound a flood of silent connections took
    # a thread each; one beyond max_associations is closed at once
    with _listening_process_server(pki, max_associations=1) as (board, port):
        with socket.create_connection(("127.0.0.1", port)):  # silent: its handshake waits
            wait_until(lambda: board.counts() == [1, 0], "the silent one to be served", timeout=10)
            with socket.create_connection(("127.0.0.1", port), timeout=10) as extra:
                assert extra.recv(1) == b""  # closed by the node, not left waiting
            wait_until(lambda: board.counts() == [1, 0], "the closed one to come off", timeout=10)
        wait_until(lambda: board.counts() == [0, 0], "the silent one to come off", timeout=10)
        assoc = _echo_association(pki, port)
        assert assoc.is_established  # the slot is free again
        assoc.release()
