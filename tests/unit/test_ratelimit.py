from __future__ import annotations

from services.runtime.ratelimit import RateLimiter


def test_a_client_gets_its_burst_then_its_rate() -> None:
    limiter = RateLimiter(rate=10, burst=3)
    assert [limiter.wait_for("a", now=0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.wait_for("a", now=0.0) == 0.1
    assert limiter.wait_for("b", now=0.0) == 0.0, "clients are counted apart"
    assert limiter.wait_for("a", now=0.1) == 0.0
    assert RateLimiter.retry_after(0.1) == "1"
