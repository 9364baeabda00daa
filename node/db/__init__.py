"""The node's database: models (``models``, ``audit``), the engine (``engine``), migrations (``migrate``).

Nothing is imported here: a command imports the module it uses, so `db current`
does not pay for the ORM or Alembic, nor `studies` for Alembic.
"""
