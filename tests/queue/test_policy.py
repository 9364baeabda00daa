"""Backoff delays: exponential, capped, jittered within bounds."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.queue.policy import RetryPolicy
from node.settings import QueueSettings

policies = st.builds(
    lambda base, factor, jitter, attempts: RetryPolicy(
        base=timedelta(seconds=base), max=timedelta(seconds=base * factor), jitter=jitter,
        max_attempts=attempts,
    ),
    st.floats(min_value=0.01, max_value=600),
    st.floats(min_value=1, max_value=1000),
    st.floats(min_value=0, max_value=1),
    st.integers(min_value=1, max_value=20),
)


@given(policies, st.integers(min_value=1, max_value=10_000), st.integers())
def test_delay_is_within_jitter_of_the_capped_exponential(
    policy: RetryPolicy, attempt: int, seed: int
) -> None:
    delay = policy.delay(attempt, random.Random(seed)).total_seconds()
    nominal = min(policy.base.total_seconds() * 2.0 ** min(attempt - 1, 62), policy.max.total_seconds())
    assert 0 <= delay <= policy.max.total_seconds() + 1e-6
    assert delay >= nominal * (1 - policy.jitter) - 1e-6


@given(policies, st.integers(min_value=1, max_value=100))
def test_without_jitter_delays_never_shrink(policy: RetryPolicy, attempt: int) -> None:
    steady = RetryPolicy(base=policy.base, max=policy.max, jitter=0.0, max_attempts=policy.max_attempts)
    rng = random.Random(0)
    assert steady.delay(attempt, rng) <= steady.delay(attempt + 1, rng)


def test_same_seed_same_delays() -> None:
    policy = RetryPolicy.from_settings(QueueSettings())
    first = [policy.delay(n, random.Random(7)) for n in range(1, 6)]
    assert first == [policy.delay(n, random.Random(7)) for n in range(1, 6)]


def test_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="max"):
        RetryPolicy(base=timedelta(seconds=10), max=timedelta(seconds=1), jitter=0.1, max_attempts=3)
    with pytest.raises(ValueError, match="attempt"):
        RetryPolicy.from_settings(QueueSettings()).delay(0, random.Random())
