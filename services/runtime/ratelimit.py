"""A per-client token bucket: each API client gets `rate` requests a second on average, with
bursts up to `burst`. Over it: 429 with Retry-After. Per process (behind several processes, a
client gets their sum)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class _Bucket:
    tokens: float
    at: float


@dataclass
class RateLimiter:
    rate: float
    burst: int
    _buckets: dict[str, _Bucket] = field(default_factory=dict)

    def wait_for(self, client: str, now: float | None = None) -> float:
        """0 when the request may go now (and is counted); else the seconds to wait."""
        now = time.monotonic() if now is None else now
        bucket = self._buckets.get(client)
        if bucket is None:
            bucket = self._buckets[client] = _Bucket(float(self.burst), now)
        bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.at) * self.rate)
        bucket.at = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0.0
        return (1 - bucket.tokens) / self.rate

    @staticmethod
    def retry_after(wait: float) -> str:
        return str(max(1, math.ceil(wait)))


LIMITER = web.AppKey("rate_limiter", RateLimiter)
