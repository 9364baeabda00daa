"""Sub-commands of `lumbar-sentinel`, one module each."""

from __future__ import annotations

from node.commands import db, echo, serve, worker

MODULES: list[object] = [db, worker, serve, echo]
