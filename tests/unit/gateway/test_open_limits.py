"""The open API's token buckets and read counting, on a controlled clock."""

from __future__ import annotations

from gateway.opendata.limits import RateLimiter


def test_a_bucket_refuses_past_its_limit_and_refills_at_its_rate() -> None:
    now = [0.0]
    limiter = RateLimiter(clock=lambda: now[0])
    assert [limiter.take("k", 2) for _ in range(3)] == [0.0, 0.0, 30.0]
    now[0] = 29.0
    assert limiter.take("k", 2) == 1.0  # half a minute per token at 2 a minute
    now[0] = 31.0
    assert limiter.take("k", 2) == 0.0
    assert limiter.take("other", 2) == 0.0  # buckets are per caller


def test_retry_after_is_at_least_one_second() -> None:
    limiter = RateLimiter(clock=lambda: 0.0)
    limiter.take("k", 6000)
    for _ in range(5999):
        limiter.take("k", 6000)
    assert limiter.take("k", 6000) == 1.0
