"""A per-client token bucket: each API client gets `rate` requests a second on average, with
bursts up to `burst`. Over it: 429 with Retry-After. Per process (behind several processes, a
client gets their sum). A request that does the work of several (a batch) costs several."""

from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from aiohttp import web

from services.runtime.http import client_address
from services.runtime.problem import Problem

MAX_KEYS = 100_000


@dataclass
class _Bucket:
    tokens: float
    at: float


@dataclass
class RateLimiter:
    rate: float
    burst: int
    max_keys: int = MAX_KEYS
    """Buckets kept at most (keys may come from callers: client ids, addresses)."""
    trusted_proxies: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network] = ()
    """Reverse proxies whose X-Forwarded-For names the caller (for `charge_address`)."""
    _buckets: dict[str, _Bucket] = field(default_factory=dict)

    def wait_for(self, client: str, now: float | None = None, cost: float = 1.0) -> float:
        """0 when `cost` requests may go now (and are counted); else the seconds to wait
        (infinite when `cost` is over the burst)."""
        now = time.monotonic() if now is None else now
        bucket = self._bucket(client, now)
        if bucket.tokens >= cost:
            bucket.tokens -= cost
            return 0.0
        return math.inf if cost > self.burst else (cost - bucket.tokens) / self.rate

    def wait_time(self, client: str, now: float | None = None) -> float:
        """The seconds before one request may go, counting nothing."""
        bucket = self._buckets.get(client)
        if bucket is None:
            return 0.0
        now = time.monotonic() if now is None else now
        tokens = min(float(self.burst), bucket.tokens + (now - bucket.at) * self.rate)
        return 0.0 if tokens >= 1 else (1 - tokens) / self.rate

    def _bucket(self, client: str, now: float) -> _Bucket:
        bucket = self._buckets.get(client)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._forget_full(now)
            bucket = self._buckets[client] = _Bucket(float(self.burst), now)
        bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.at) * self.rate)
        bucket.at = now
        return bucket

    def _forget_full(self, now: float) -> None:
        """A full bucket is the same as none; if all are in use, the oldest go."""
        refill = self.burst / self.rate
        self._buckets = {k: b for k, b in self._buckets.items() if now - b.at < refill}
        while len(self._buckets) >= self.max_keys:
            del self._buckets[next(iter(self._buckets))]

    @staticmethod
    def retry_after(wait: float) -> str:
        return str(max(1, math.ceil(wait)))


LIMITER = web.AppKey("rate_limiter", RateLimiter)


def charge(request: web.Request, client: str, cost: int = 1) -> None:
    """Count `cost` requests for this client, or refuse with 429 (with Retry-After when
    waiting would help)."""
    if cost <= 0:
        return
    limiter = request.app[LIMITER]
    wait = limiter.wait_for(client, cost=cost)
    if not wait:
        return
    if math.isinf(wait):
        raise Problem(429, "Too many requests", f"This counts as {cost} requests, over the "
                      f"burst of {limiter.burst} a client may send at once: send fewer.")
    raise Problem(429, "Too many requests",
                  f"Over {limiter.rate:g} requests a second for this client"
                  + (f" ({cost} counted for this one)." if cost > 1 else "."),
                  headers={"Retry-After": RateLimiter.retry_after(wait)})


def charge_address(request: web.Request) -> None:
    """Count one request for the caller's address (behind a trusted proxy, the client's) on
    this operation, or refuse with 429: the limit of the operations that take no token. One
    bucket per operation, so that a flood of one public read does not hold back the health
    probes or the services' reading of the keys and revocations."""
    limiter = request.app[LIMITER]
    operation = request.match_info.route.resource.canonical if request.match_info.route \
        .resource is not None else request.path
    charge(request, f"address:{operation}:"
                    + client_address(request, limiter.trusted_proxies))
