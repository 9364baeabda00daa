"""`lumbar-sentinel worker` refuses a database it would have to migrate."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.cli import main
from node.db.engine import create_db_engine
from node.db.migrate import current_revision


def test_worker_refuses_an_unmigrated_database(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "empty.db").touch()  # there, but never migrated: a missing one is not created
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    config = tmp_path / "node.toml"
    config.write_text(f'[database]\nurl = "{url}"\n', encoding="utf-8")
    assert main(["--config", str(config), "worker"]) == 2
    assert "db upgrade" in caplog.text
    engine = create_db_engine(url)
    try:
        assert current_revision(engine) is None  # workers never migrate
    finally:
        engine.dispose()
