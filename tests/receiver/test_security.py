"""Who may associate: the calling-AE allowlist, address binding and the association limit."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pynetdicom.association import Association

from node.db.models import Association as AssociationRow
from node.db.models import AssociationResult
from tests.helpers.node import CLI, NodeProcess, running_node
from tests.helpers.rows import read_rows
from tests.helpers.senders import associate, echoscu
from tests.queue.helpers import wait_until

CALLERS = [
    {"ae_title": "GOODAE", "addresses": ["127.0.0.1/32", "::1/128"]},
    {"ae_title": "FARAWAY", "addresses": ["10.99.0.0/16"]},
    {"ae_title": "ANYWHERE"},
]


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    folder = tmp_path_factory.mktemp("security")
    sections = {"dicom": {"allowed_callers": CALLERS, "max_associations": 2}}
    with running_node(folder, f"sqlite:///{folder / 'node.db'}", sections) as node:
        yield node


def _rejection(assoc: Association) -> tuple[int, int, int]:
    primitive = assoc.acceptor.primitive
    assert primitive is not None
    return int(primitive.result or 0), int(primitive.result_source or 0), int(primitive.diagnostic or 0)


def _last_association(node: NodeProcess, calling: str) -> AssociationRow:
    with node.engine() as engine:
        return [a for a in read_rows(engine).associations if a.calling_ae == calling][-1]


@pytest.mark.parametrize("calling", ["GOODAE", "ANYWHERE"])
def test_allowed_callers_are_accepted(node: NodeProcess, calling: str) -> None:
    assoc = associate(node, calling=calling)
    assert assoc.is_established
    assert assoc.send_c_echo().Status == 0x0000
    assoc.release()


def test_an_unknown_calling_ae_is_rejected_logged_and_recorded(node: NodeProcess) -> None:
    assoc = associate(node, calling="STRANGER")
    assert assoc.is_rejected
    assert _rejection(assoc) == (0x01, 0x01, 0x03)  # permanent, service user, calling AE not recognised
    assert echoscu(node, calling="STRANGER").returncode != 0

    row = _last_association(node, "STRANGER")
    assert row.result == AssociationResult.REJECTED
    assert "not in dicom.allowed_callers" in (row.reason or "")
    assert row.ended_at is not None
    assert "rejecting association from 127.0.0.1" in node.log_text()


def test_a_known_title_from_another_address_is_rejected(node: NodeProcess) -> None:
    assoc = associate(node, calling="FARAWAY")
    assert assoc.is_rejected
    assert _rejection(assoc) == (0x01, 0x01, 0x03)
    row = _last_association(node, "FARAWAY")
    assert row.result == AssociationResult.REJECTED
    assert "not allowed from address 127.0.0.1" in (row.reason or "")


def test_the_echo_command_reports_a_rejection(node: NodeProcess) -> None:
    result = subprocess.run(
        [str(CLI), "--config", str(node.config), "echo", "127.0.0.1", str(node.port), "--aet", "STRANGER"],
        capture_output=True, text=True, check=False, timeout=60,
    )
    assert result.returncode == 1
    assert "rejected permanently: calling AE title not recognised" in result.stderr


def test_associations_over_the_limit_are_rejected_and_recorded(node: NodeProcess) -> None:
    held: list[Association] = []
    try:
        # Threads of associations released by earlier tests can linger for a moment.
        deadline = time.monotonic() + 20
        while len(held) < 2 and time.monotonic() < deadline:
            assoc = associate(node, calling="GOODAE")
            if assoc.is_established:
                held.append(assoc)
            else:
                time.sleep(0.2)
        assert len(held) == 2

        extra = associate(node, calling="ANYWHERE")
        assert extra.is_rejected
        assert _rejection(extra) == (0x02, 0x03, 0x02)  # transient, presentation, local limit exceeded
        assert all(a.send_c_echo().Status == 0x0000 for a in held)
    finally:
        for assoc in held:
            assoc.release()
    # the node records the rejection after it has answered: under load the row lands a moment later
    deadline = time.monotonic() + 10
    row = _last_association(node, "ANYWHERE")
    while row.result != AssociationResult.REJECTED and time.monotonic() < deadline:
        time.sleep(0.2)
        row = _last_association(node, "ANYWHERE")
    assert row.result == AssociationResult.REJECTED
    assert "too many concurrent associations" in (row.reason or "")


def test_every_accepted_association_was_closed(node: NodeProcess) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with node.engine() as engine:
            rows = read_rows(engine).associations
        if all(a.ended_at is not None for a in rows):
            break
        time.sleep(0.1)
    assert {a.result for a in rows} <= {AssociationResult.RELEASED, AssociationResult.REJECTED}
    assert all(a.ended_at is not None for a in rows)


def _echoscu_without_called_title(node: NodeProcess) -> subprocess.CompletedProcess[str]:
    # DCMTK's default called AE title is ANY-SCP
    return subprocess.run(["echoscu", "-aet", "ECHOSCU", "127.0.0.1", str(node.port)],
                          capture_output=True, text=True, check=False, timeout=60)


def test_a_wrong_called_ae_title_is_rejected_and_recorded(database_url: str, tmp_path: Path) -> None:
    with running_node(tmp_path, database_url) as other:
        result = _echoscu_without_called_title(other)
        assert result.returncode != 0
        assert "Called AE Title Not Recognized" in result.stdout + result.stderr
        assoc = associate(other, calling="WRONGCALL", called="ANY-SCP")
        assert assoc.is_rejected
        assert _rejection(assoc) == (0x01, 0x01, 0x07)  # permanent, service user, called AE not recognised
        assert echoscu(other).returncode == 0  # -aec LSENTTEST

        def recorded() -> list[AssociationRow]:
            with other.engine() as engine:
                return [a for a in read_rows(engine).associations if a.result == AssociationResult.REJECTED]

        wait_until(lambda: len(recorded()) == 2, "both rejections to be recorded")
        rows = recorded()
        assert sorted((a.calling_ae, a.called_ae) for a in rows) == [("ECHOSCU", "ANY-SCP"),
                                                                     ("WRONGCALL", "ANY-SCP")]
        assert all(a.reason == "called AE title not recognised: 'ANY-SCP' is not 'LSENTTEST'" for a in rows)
        assert "rejected association from 127.0.0.1" in other.log_text()


def test_the_called_ae_title_check_can_be_turned_off(tmp_path: Path) -> None:
    sections = {"dicom": {"require_called_ae_title": False}}
    with running_node(tmp_path, f"sqlite:///{tmp_path / 'node.db'}", sections) as other:
        assert _echoscu_without_called_title(other).returncode == 0
