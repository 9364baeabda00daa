"""The job queue: leased jobs in the database, worker threads, and study completion."""

from node.queue.completion import ANALYZE_STUDY, CompletionMonitor
from node.queue.jobs import (
    ClaimedJob,
    JobCancelled,
    JobError,
    PermanentJobError,
    RetryAfter,
    claim,
    complete,
    enqueue,
    fail,
    heartbeat,
    release,
)
from node.queue.policy import RetryPolicy
from node.queue.worker import JobContext, JobHandler, WorkerPool, process_name

__all__ = [
    "ANALYZE_STUDY",
    "ClaimedJob",
    "CompletionMonitor",
    "JobCancelled",
    "JobContext",
    "JobError",
    "JobHandler",
    "PermanentJobError",
    "RetryAfter",
    "RetryPolicy",
    "WorkerPool",
    "claim",
    "complete",
    "enqueue",
    "fail",
    "heartbeat",
    "process_name",
    "release",
]
