"""The node's database: models, engine, migrations."""

# The audit tables share the models' metadata; importing them here puts them in
# Base.metadata for Alembic and for every user of node.db.
import node.db.audit  # noqa: F401
from node.db.engine import create_db_engine, session_factory
from node.db.migrate import upgrade

__all__ = ["create_db_engine", "session_factory", "upgrade"]
