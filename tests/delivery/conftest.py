"""Fixtures of the delivery and admin-command tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from node.db.engine import session_factory
from tests.delivery.helpers import Storescp


@pytest.fixture
def storescp(tmp_path: Path) -> Iterator[Storescp]:
    destination = Storescp(tmp_path / "received")
    yield destination
    destination.stop()


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return session_factory(engine)
