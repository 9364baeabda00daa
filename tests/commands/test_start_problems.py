"""What cannot work is said in one line naming the setting, with exit status 2, never as a traceback:
a database that cannot answer (admin commands, serve, worker, db), a TLS certificate or a storage
folder serve cannot use, an argument no command could use (echo, health, --since)."""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.uid import generate_uid

from node.cli import main
from node.db.engine import create_db_engine, session_factory
from node.db.migrate import upgrade
from node.db.models import StudyStatus, utcnow
from tests.helpers.node import CLI, free_port, write_config
from tests.queue.helpers import SAGITTAL, add_study, register_series, wait_until, write_series

COMMANDS = (["studies"], ["study", "1.2.3"], ["results"], ["reanalyze", "1.2.3"], ["resend", "--dead"],
            ["retention", "--dry-run"])


def _run(config: Path, capsys: pytest.CaptureFixture[str], command: list[str]) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["--config", str(config), *command])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    return code, captured.err


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_a_database_that_is_not_there_is_named_and_not_created(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]) -> None:
    database = tmp_path / "var" / "node.db"
    config = write_config(tmp_path / "node.toml", {"database": {"url": f"sqlite:///{database}"}})
    code, err = _run(config, capsys, command)
    assert code == 2
    assert f"no database at {database}" in err and "lumbar-sentinel serve" in err
    assert not database.exists()


def test_a_relative_database_path_that_is_not_there_names_the_working_folder(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    # the default configuration's var/lumbar-sentinel.db, asked for from another folder
    config = write_config(tmp_path / "node.toml", {"database": {"url": "sqlite:///var/node.db"}})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, err = _run(config, capsys, ["studies"])
    assert code == 2 and f"no database at var/node.db (in {elsewhere})" in err


def test_a_database_without_the_schema_or_with_an_older_one_says_what_to_run(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    database = tmp_path / "node.db"
    database.touch()
    config = write_config(tmp_path / "node.toml", {"database": {"url": f"sqlite:///{database}"}})
    code, err = _run(config, capsys, ["studies"])
    assert code == 2 and "holds no Lumbar Sentinel tables" in err and "db upgrade" in err

    engine = create_db_engine(f"sqlite:///{database}")
    try:
        upgrade(engine, "0002")
    finally:
        engine.dispose()
    code, err = _run(config, capsys, ["results"])
    assert code == 2 and "schema revision 0002" in err and "db upgrade" in err

    assert main(["--config", str(config), "db", "upgrade"]) == 0
    code, _ = _run(config, capsys, ["results", "--format", "json"])
    assert code == 0


def test_an_unreachable_database_is_named_without_its_password(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"postgresql+psycopg://lsent:secret@127.0.0.1:{free_port()}/nowhere"
    config = write_config(tmp_path / "node.toml", {"database": {"url": url}})
    code, err = _run(config, capsys, ["studies"])
    assert code == 2 and "cannot reach the database" in err
    assert "secret" not in err and "lsent:***@127.0.0.1" in err


@pytest.mark.parametrize("command", [["serve"], ["worker"], ["db", "current"]], ids=lambda c: c[0])
def test_the_node_and_its_workers_say_so_when_the_database_cannot_be_reached(
        tmp_path: Path, command: list[str]) -> None:
    url = f"postgresql+psycopg://lsent:secret@127.0.0.1:{free_port()}/nowhere"
    config = write_config(tmp_path / "node.toml", {"database": {"url": url},
                                                   "dicom": {"port": free_port()}})
    done = subprocess.run([str(CLI), "--config", str(config), *command], capture_output=True, text=True,
                          timeout=120, check=False, cwd=tmp_path)
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "cannot reach the database postgresql+psycopg://lsent:***@127.0.0.1" in output
    assert "Traceback" not in output and "secret" not in output


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_a_file_that_is_not_a_database_is_named(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]) -> None:
    database = tmp_path / "node.db"
    database.write_text("some text, not SQLite\n" * 10)
    (tmp_path / "storage").mkdir()  # retention looks at the storage folder first
    config = write_config(tmp_path / "node.toml", {"database": {"url": f"sqlite:///{database}"},
                                                   "storage": {"root": str(tmp_path / "storage")}})
    code, err = _run(config, capsys, command)
    assert code == 2 and f"cannot use the database sqlite:///{database}: file is not a database" in err


@pytest.mark.parametrize("command", [["serve"], ["worker"], ["db", "current"], ["db", "upgrade"]],
                         ids=lambda c: "-".join(c))
def test_the_node_and_its_workers_name_a_file_that_is_not_a_database(
        tmp_path: Path, command: list[str]) -> None:
    database = tmp_path / "node.db"
    database.write_text("some text, not SQLite\n" * 10)
    config = write_config(tmp_path / "node.toml", {"database": {"url": f"sqlite:///{database}"},
                                                   "dicom": {"port": free_port()}})
    done = subprocess.run([str(CLI), "--config", str(config), *command], capture_output=True, text=True,
                          timeout=120, check=False, cwd=tmp_path)
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert f"cannot use the database sqlite:///{database}: file is not a database" in output
    assert "Traceback" not in output


@pytest.mark.parametrize("command", [["db", "current"], ["worker"]], ids=lambda c: "-".join(c))
def test_db_current_and_the_worker_refuse_a_database_that_is_not_there_and_create_nothing(
        tmp_path: Path, command: list[str]) -> None:
    database = tmp_path / "var" / "node.db"
    config = write_config(tmp_path / "node.toml", {"database": {"url": f"sqlite:///{database}"}})
    done = subprocess.run([str(CLI), "--config", str(config), *command], capture_output=True, text=True,
                          timeout=120, check=False, cwd=tmp_path)
    assert done.returncode == 2 and f"no database at {database}" in done.stderr, done.stderr
    assert not database.parent.exists()
    # the command that creates one
    assert main(["--config", str(config), "db", "upgrade"]) == 0 and database.exists()


@pytest.mark.parametrize(("option", "value", "said"), [
    ("--aet", "ABCDEFGHIJKLMNOPQRS", "echo: --aet 'ABCDEFGHIJKLMNOPQRS': must be at most 16 characters"),
    ("--aet", "", "echo: --aet '': must not be empty"),
    ("--aet", "   ", "echo: --aet '   ': must not be empty or only spaces"),
    ("--aec", "ABCDEFGHIJKLMNOPQRS", "echo: --aec 'ABCDEFGHIJKLMNOPQRS': must be at most 16 characters"),
    ("--aec", "", "echo: --aec '': must not be empty"),
    ("--aec", "BACK\\SLASH", "must be printable ASCII without backslashes"),
    ("--timeout", "-1", "echo: --timeout must be a positive number of seconds, got -1.0"),
])
def test_echo_names_an_ae_title_or_timeout_it_cannot_use(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, value: str, said: str) -> None:
    config = write_config(tmp_path / "node.toml", {})
    code, err = _run(config, capsys, ["echo", "127.0.0.1", str(free_port()), f"{option}={value}"])
    assert code == 2 and said in err and len(err.strip().splitlines()) == 1, err


@pytest.fixture
def not_http() -> Iterator[int]:
    """A port whose listener answers with bytes that are not HTTP."""
    server = socket.create_server(("127.0.0.1", 0))

    def answer() -> None:
        while True:
            try:
                connection, _ = server.accept()
            except OSError:  # closed: the test is over
                return
            with connection:
                connection.recv(1024)
                connection.sendall(b"\x00\x01garbage\r\n")

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    server.close()
    thread.join(5)


def test_health_names_a_port_that_does_not_answer_http_and_a_bad_timeout(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], not_http: int) -> None:
    config = write_config(tmp_path / "node.toml", {"metrics": {"enabled": True, "port": not_http}})
    code, err = _run(config, capsys, ["health", "--timeout", "5"])
    assert code == 1 and "the answer is not HTTP (BadStatusLine)" in err and len(err.splitlines()) == 1, err
    for timeout in ("-1", "0", "nan"):
        code, err = _run(config, capsys, ["health", f"--timeout={timeout}"])
        assert code == 2 and "--timeout must be a positive number of seconds" in err, err


@pytest.mark.parametrize("command", [["studies", "--since", "99999999999d"],
                                     ["results", "--since", "9999999d"]], ids=lambda c: c[0])
def test_a_since_too_far_back_is_a_usage_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]) -> None:
    config = write_config(tmp_path / "node.toml", {})
    with pytest.raises(SystemExit) as exited:
        main(["--config", str(config), *command])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and "argument --since: too far back" in err and "Traceback" not in err


def _serve(tmp_path: Path, sections: dict[str, dict[str, object]]) -> tuple[int, str]:
    config = write_config(tmp_path / "node.toml", {
        "database": {"url": f"sqlite:///{tmp_path / 'node.db'}"},
        "dicom": {"port": free_port()}, "queue": {"workers": 0}, **sections})
    done = subprocess.run([str(CLI), "--config", str(config), "serve"], capture_output=True, text=True,
                          timeout=120, check=False, cwd=tmp_path)
    output = done.stdout + done.stderr
    assert "Traceback" not in output and "cannot listen" not in output, output
    return done.returncode, output


def test_serve_names_a_tls_file_it_cannot_use(tmp_path: Path) -> None:
    missing = tmp_path / "node.pem"
    code, output = _serve(tmp_path, {"tls": {"enabled": True, "cert_file": str(missing),
                                             "key_file": str(tmp_path / "node.key")}})
    assert code == 2 and f"tls.cert_file {missing}: no such file" in output
    assert _tables(tmp_path / "node.db") == []
    missing.write_text("not a certificate\n")
    (tmp_path / "node.key").write_text("not a key\n")
    code, output = _serve(tmp_path, {"tls": {"enabled": True, "cert_file": str(missing),
                                             "key_file": str(tmp_path / "node.key")}})
    assert code == 2 and "not a PEM certificate and its private key" in output


def test_serve_names_a_storage_folder_it_cannot_create(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    code, output = _serve(tmp_path, {"storage": {"root": str(tmp_path / "a-file" / "storage")}})
    assert code == 2 and "cannot start" in output and "storage.root" in output
    assert _tables(tmp_path / "node.db") == []  # nothing migrated by a node that could not start


def test_a_taken_metrics_port_is_not_reported_as_the_dicom_port(tmp_path: Path) -> None:
    # the node said "cannot listen on 0.0.0.0:<the DICOM port>" too, sending the administrator
    # to the wrong port
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        metrics_port = taken.getsockname()[1]
        code, output = _serve(tmp_path, {"metrics": {"enabled": True, "port": metrics_port}})
    assert code == 1 and f"cannot serve /metrics and /healthz on 127.0.0.1:{metrics_port}" in output


def test_serve_and_workers_refuse_a_results_folder_they_cannot_write(tmp_path: Path) -> None:
    # found before only when the first analysis failed to write its results, for good
    (tmp_path / "a-file").write_text("")
    results = tmp_path / "a-file"
    code, output = _serve(tmp_path, {"storage": {"results": str(results)}})
    assert code == 2 and "cannot start" in output and "storage.results" in output
    engine = create_db_engine(f"sqlite:///{tmp_path / 'node.db'}")
    upgrade(engine)
    engine.dispose()
    config = write_config(tmp_path / "node.toml", {"database": {"url": f"sqlite:///{tmp_path / 'node.db'}"},
                                                   "storage": {"root": str(tmp_path / "storage"),
                                                               "results": str(results)}})
    done = subprocess.run([str(CLI), "--config", str(config), "worker", "--no-monitor"], capture_output=True,
                          text=True, timeout=120, check=False, cwd=tmp_path)
    assert done.returncode == 2 and "storage.results" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_serve_and_workers_refuse_a_storage_root_holding_none_of_the_recorded_files(tmp_path: Path) -> None:
    # An unmounted volume's empty mount point: the node stored new studies there and took
    # the files of the old ones for lost.
    engine = create_db_engine(f"sqlite:///{tmp_path / 'node.db'}")
    upgrade(engine)
    with session_factory(engine).begin() as session:
        study_id = add_study(session, generate_uid(), utcnow(), StudyStatus.ANALYSED)
        series_uid, paths = write_series(tmp_path / "volume", "1.2.3", "T2", SAGITTAL)
        register_series(session, tmp_path / "volume", study_id, series_uid, paths)
    engine.dispose()
    empty = tmp_path / "mount-point"
    code, output = _serve(tmp_path, {"storage": {"root": str(empty)}})
    assert code == 2 and f"cannot start: storage.root {empty} is not this database's store" in output
    config = write_config(tmp_path / "node.toml", {"database": {"url": f"sqlite:///{tmp_path / 'node.db'}"},
                                                   "storage": {"root": str(empty)}})
    done = subprocess.run([str(CLI), "--config", str(config), "worker", "--no-monitor"], capture_output=True,
                          text=True, timeout=120, check=False, cwd=tmp_path)
    assert done.returncode == 2 and "is not this database's store" in done.stderr, done.stderr
    assert list(empty.iterdir()) == []


def _tables(database: Path) -> list[str]:
    if not database.exists():
        return []
    with sqlite3.connect(database) as connection:
        return [row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]


@pytest.mark.parametrize(("command", "said"), [
    (["--log-level", "verbose", "studies"], "argument --log-level: not one of DEBUG, INFO, WARNING, ERROR"),
    (["worker", "--grace", "-1"], "argument --grace: must be a number of seconds, not negative"),
    (["serve", "--grace", "-1"], "argument --grace: must be a number of seconds, not negative"),
])
def test_a_bad_log_level_or_grace_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   command: list[str], said: str) -> None:
    # tracebacks before (the log level's from logging, the worker's grace from run_workers)
    config = write_config(tmp_path / "node.toml", {"database": {"url": f"sqlite:///{tmp_path / 'db'}"}})
    with pytest.raises(SystemExit) as exited:
        main(["--config", str(config), *command])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and said in err and "Traceback" not in err


def test_a_log_level_in_lower_case_is_taken(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path / "node.toml", {"database": {"url": f"sqlite:///{tmp_path / 'db'}"}})
    assert main(["--config", str(config), "--log-level", "debug", "db", "upgrade"]) == 0


def test_echo_says_why_an_association_was_rejected(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    # it printed "(result 1, source 1, diagnostic 1)": three numbers to look up in PS3.8
    port = free_port()
    refusing = subprocess.Popen(["storescp", "--refuse", str(port)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: _listening(port), "storescp to listen")
        config = write_config(tmp_path / "node.toml", {})
        code, err = _run(config, capsys, ["echo", "127.0.0.1", str(port), "--aec", "PACS"])
    finally:
        refusing.terminate()
        refusing.wait(10)
    assert code != 0
    assert f"association with PACS at 127.0.0.1:{port} rejected permanently: no reason given" in err, err


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True
