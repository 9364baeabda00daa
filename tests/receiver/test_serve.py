"""`serve` start-up and shutdown, and `echo` failures, as an operator sees them."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from node.db.models import AssociationResult
from tests.helpers.node import CLI, make_node
from tests.helpers.rows import read_rows
from tests.helpers.senders import associate


def test_sigterm_aborts_idle_associations_after_the_grace_period(tmp_path: Path) -> None:
    node = make_node(tmp_path, f"sqlite:///{tmp_path / 'node.db'}", grace=0.5)
    node.start()
    assoc = associate(node)
    assert assoc.is_established
    assert node.terminate() == 0

    assert not assoc.is_established
    log = node.log_text()
    assert "SIGTERM received: stopping" in log
    assert "aborting association with 127.0.0.1" in log
    assert log.rstrip().endswith("node.app: stopped")
    with node.engine() as engine:
        [row] = read_rows(engine).associations
    assert row.result == AssociationResult.ABORTED
    assert row.ended_at is not None
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", node.port)) != 0


def test_serve_reports_a_port_in_use(tmp_path: Path) -> None:
    node = make_node(tmp_path, f"sqlite:///{tmp_path / 'node.db'}")
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", node.port))
        holder.listen()
        result = subprocess.run([str(CLI), "--config", str(node.config), "serve"], cwd=tmp_path,
                                capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{node.port}" in result.stderr


def test_config_and_log_level_are_accepted_after_the_sub_command(tmp_path: Path) -> None:
    node = make_node(tmp_path, f"sqlite:///{tmp_path / 'node.db'}")
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", node.port))
        holder.listen()
        result = subprocess.run([str(CLI), "serve", "--config", str(node.config), "--log-level", "WARNING"],
                                cwd=tmp_path, capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 1, result.stderr
    assert f"cannot listen on 127.0.0.1:{node.port}" in result.stderr  # the port of --config
    assert " INFO " not in result.stderr


def test_echo_to_a_closed_port_fails_clearly(tmp_path: Path) -> None:
    node = make_node(tmp_path, f"sqlite:///{tmp_path / 'node.db'}")
    result = subprocess.run(
        [str(CLI), "--config", str(node.config), "echo", "127.0.0.1", str(node.port), "--timeout", "5"],
        capture_output=True, text=True, check=False, timeout=60,
    )
    assert result.returncode == 1
    assert f"could not associate with LSENTTEST at 127.0.0.1:{node.port}" in result.stderr


def test_echo_to_a_host_that_cannot_be_resolved_fails_clearly(tmp_path: Path) -> None:
    node = make_node(tmp_path, f"sqlite:///{tmp_path / 'node.db'}")
    result = subprocess.run(
        [str(CLI), "--config", str(node.config), "echo", "pacs.invalid", "104", "--timeout", "5"],
        capture_output=True, text=True, check=False, timeout=60,
    )
    assert result.returncode == 1
    assert "cannot resolve host 'pacs.invalid'" in result.stderr and "Traceback" not in result.stderr


def test_a_receiver_only_node_does_not_import_the_analysis(tmp_path: Path) -> None:
    # a fresh interpreter: the test process itself has PyTorch loaded by other tests
    code = (
        "import sys\n"
        "from node.app import Node\n"
        "from node.db.engine import create_db_engine\n"
        "from node.settings import load_settings\n"
        f"s = load_settings(None, queue={{'workers': int(sys.argv[1])}},\n"
        f"                  database={{'url': 'sqlite:///{tmp_path / 'node.db'}'}},\n"
        f"                  storage={{'root': '{tmp_path / 'storage'}'}})\n"
        "Node(s, create_db_engine(s.database.url))\n"
        "print('onnxruntime' in sys.modules, 'torch' in sys.modules)\n"
    )
    # the inference runtime only with workers; PyTorch never (it is for training only)
    for workers, loaded in (("0", "False False"), ("1", "True False")):
        out = subprocess.run([sys.executable, "-c", code, workers], capture_output=True, text=True,
                             check=True)
        assert out.stdout.strip() == loaded, out.stderr
