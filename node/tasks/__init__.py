"""Job handlers, by job kind; ``build_handlers`` is what ``serve`` and ``worker`` run."""

from __future__ import annotations

from node.pipeline.model import shipped_model
from node.queue.completion import ANALYZE_STUDY
from node.queue.worker import JobHandler
from node.settings import Settings
from node.tasks.analyze_study import AnalyzeStudy


def build_handlers(settings: Settings) -> dict[str, JobHandler]:
    """The handler of every real job kind, with its dependencies from ``settings``."""
    return {ANALYZE_STUDY: AnalyzeStudy(settings.storage.root, settings.storage.results, shipped_model)}


__all__ = ["build_handlers"]
