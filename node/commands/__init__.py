"""Sub-commands of `lumbar-sentinel`, one module each."""

from __future__ import annotations

from node.commands import (
    analyze,
    db,
    demo,
    echo,
    health,
    reanalyze,
    resend,
    results,
    retention,
    serve,
    studies,
    study,
    worker,
)
from phantom import cli as phantom

MODULES: list[object] = [
    serve, worker, echo, db, analyze, phantom, demo, studies, study, results, reanalyze, resend, retention,
    health,
]
