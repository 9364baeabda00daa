"""Retry policy as data: how long a failed job waits before its next attempt."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta

from node.settings import QueueSettings


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff ``base * 2^(attempt-1)``, capped at ``max``, +/- ``jitter``.

    The cap bounds the final delay, jitter included, so an operator can rely
    on ``backoff_max`` as the longest wait between two attempts.
    """

    base: timedelta
    max: timedelta
    jitter: float
    max_attempts: int

    def __post_init__(self) -> None:
        if self.base <= timedelta(0):
            raise ValueError(f"base must be positive, got {self.base}")
        if self.max < self.base:
            raise ValueError(f"max ({self.max}) must be at least base ({self.base})")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError(f"jitter must be within [0, 1], got {self.jitter}")
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")

    @classmethod
    def from_settings(cls, settings: QueueSettings) -> RetryPolicy:
        return cls(
            base=settings.backoff_base,
            max=settings.backoff_max,
            jitter=settings.backoff_jitter,
            max_attempts=settings.max_attempts,
        )

    def delay(self, attempt: int, rng: random.Random) -> timedelta:
        """The wait after failed attempt number ``attempt`` (1 for the first)."""
        if attempt < 1:
            raise ValueError(f"attempt must be at least 1, got {attempt}")
        base_s = self.base.total_seconds()
        max_s = self.max.total_seconds()
        # Capping the exponent first keeps 2**n finite for absurd attempt counts.
        exponent = min(attempt - 1, 62)
        raw = min(base_s * 2.0**exponent, max_s)
        jittered = raw * (1.0 + rng.uniform(-self.jitter, self.jitter))
        return timedelta(seconds=min(max(jittered, 0.0), max_s))
