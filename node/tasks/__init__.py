"""Job handlers, by job kind; ``build_handlers`` is what ``serve`` and ``worker`` run."""

from __future__ import annotations

from node.delivery import DELIVER_RESULTS, Sender
from node.delivery.handler import DeliverResults, job_failed
from node.pipeline.model import shipped_model
from node.queue.completion import ANALYZE_STUDY
from node.queue.worker import FailureHook, JobHandler
from node.settings import Settings
from node.tasks.analysis_failed import analysis_failed
from node.tasks.analyze_study import AnalyzeStudy


def build_handlers(settings: Settings) -> dict[str, JobHandler]:
    """The handler of every real job kind, with its dependencies from ``settings``."""
    return {
        ANALYZE_STUDY: AnalyzeStudy(settings.storage.root, settings.storage.results, shipped_model,
                                    settings.delivery),
        DELIVER_RESULTS: deliver_results_handler(settings),
    }


def build_failure_hooks() -> dict[str, FailureHook]:
    """What keeps a job kind's own records true when the queue fails or retries its job."""
    return {ANALYZE_STUDY: analysis_failed, DELIVER_RESULTS: job_failed}


def deliver_results_handler(settings: Settings) -> DeliverResults:
    delivery = settings.delivery
    sender = Sender(delivery.calling_ae_title or settings.dicom.ae_title, delivery.connect_timeout,
                    delivery.dimse_timeout)
    return DeliverResults(delivery, settings.storage.results, sender)


__all__ = ["build_failure_hooks", "build_handlers", "deliver_results_handler"]
