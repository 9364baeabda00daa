"""The delivery tests' fixtures (a storescp destination, sessions) serve the admin-command tests too."""

from tests.delivery.conftest import sessions, storescp

__all__ = ["sessions", "storescp"]
