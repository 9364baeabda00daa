"""A daemon thread that runs one step every interval until stopped (the completion monitor, retention)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import timedelta

log = logging.getLogger(__name__)


class Periodic:
    """Runs ``step`` every ``interval`` in a thread named ``name``.

    Only the ``expected`` errors are caught, logged and retried at the next
    interval; anything else is a bug and ends the thread with its traceback.
    """

    def __init__(self, name: str, step: Callable[[], object], interval: timedelta,
                 expected: tuple[type[Exception], ...]) -> None:
        if interval <= timedelta(0):
            raise ValueError(f"interval must be positive, got {interval}")
        self._name = name
        self._step = step
        self._interval = interval.total_seconds()
        self._expected = expected
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError(f"{self._name}: start() called twice")
        self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def died(self) -> bool:
        """Its thread ended without being stopped (an unexpected error: see the log)."""
        return self._thread is not None and not self._thread.is_alive() and not self._stopping.is_set()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self._step()
            except self._expected:
                log.exception("%s failed; next try in %.1f s", self._name, self._interval)
            self._stopping.wait(self._interval)
