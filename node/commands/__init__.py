"""Sub-commands of `lumbar-sentinel`, one module each."""

from __future__ import annotations

from node.commands import db

MODULES: list[object] = [db]
