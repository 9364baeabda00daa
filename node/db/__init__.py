"""The node's database: models, engine, migrations."""

from node.db.engine import create_db_engine, session_factory
from node.db.migrate import upgrade

__all__ = ["create_db_engine", "session_factory", "upgrade"]
