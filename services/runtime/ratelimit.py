"""Rate limits: a token bucket per key (an API client, an address, an account), `rate`
requests a second on average with bursts up to `burst`. Over it: 429 with Retry-After. A request
that does the work of several (a batch) costs several.

The buckets are per deployment (`SharedLimiter`): kept in PostgreSQL (`relais_limits.buckets`,
one row per key, GCRA), so that a client spreading its calls over several instances of the
services gets the same limit as against one. An instance takes tokens a few at a time (one at
first, twice as many each time it spent all it took, at most `lease`) and spends them in
memory (a client's parallel calls wait for one request to the database, then share what it
brought); what it has not spent within HOLD seconds is dropped. Over any stretch of time a client
is let through its rate, plus its burst, plus at most what each instance holds for it (a lease:
a tenth of the rate for the API); spread over instances it may be refused a few tokens early.
Keys are hashed before they reach the database (bounded, and no address or email kept).
When the database does not answer within ANSWER_WITHIN seconds, each instance counts alone
(`RateLimiter`, in memory: the limit is then per process) until it answers again."""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncpg
from aiohttp import web

from services.runtime import db
from services.runtime.http import client_address
from services.runtime.logging import get_logger
from services.runtime.problem import Problem

log = get_logger("relais.ratelimit")

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


HOLD = 1.0
"""Seconds an instance keeps tokens it took from a shared bucket before dropping them."""
ANSWER_WITHIN = 0.5
"""Seconds the database has to answer for a bucket before the instance counts alone."""
RETRY_ALONE = 5.0
"""Seconds an instance counts alone before asking the database again."""
TAKE = "SELECT granted, wait FROM relais_limits.take($1, $2, $3, $4, $5)"
PEEK = ("SELECT greatest(0, tat - extract(epoch FROM clock_timestamp()) + (1 - $2::float8)"
        " / $3::float8) "
        "FROM relais_limits.buckets WHERE key = $1")
FORGET_FULL = ("DELETE FROM relais_limits.buckets WHERE key = ANY(ARRAY(SELECT key FROM "
               "relais_limits.buckets WHERE tat < extract(epoch FROM clock_timestamp()) "
               "LIMIT 1000)) AND tat < extract(epoch FROM clock_timestamp())")
"""Full buckets, a thousand at a time; a bucket taken from meanwhile is no longer full (the
second condition, checked again once its row is free) and stays."""


@dataclass
class Buckets:
    """Where the shared buckets are: the services' database, once its pool is open (until
    then, and when it does not answer, each limiter counts in memory)."""

    pool: asyncpg.Pool | None = None


BUCKETS = web.AppKey("rate_buckets", Buckets)


def buckets(app: web.Application) -> Buckets:
    """The application's buckets (made by the first one to ask, before the app starts)."""
    if BUCKETS not in app:
        app[BUCKETS] = Buckets()
    return app[BUCKETS]


@dataclass
class _Held:
    tokens: int
    at: float
    size: int
    refill: asyncio.Lock = field(default_factory=asyncio.Lock)
    """Held while tokens are asked of the database for this key: one request at a time."""


class _Alone(Exception):
    """The database gave no answer for a bucket: count in memory."""


@dataclass
class SharedLimiter:
    """A rate limit per deployment: `family` names the limit (keys of different limits never
    meet), the tokens are in `buckets`."""

    family: str
    rate: float
    burst: int
    buckets: Buckets
    lease: int = 1
    """Tokens taken at most at once from the database (1: every request asks it)."""
    trusted_proxies: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network] = ()
    """Reverse proxies whose X-Forwarded-For names the caller (for `charge_address`)."""
    _held: dict[str, _Held] = field(default_factory=dict)
    _alone: RateLimiter | None = None
    _alone_since: float = 0.0

    @classmethod
    def per_minute(cls, family: str, count: int, buckets: Buckets) -> SharedLimiter:
        return cls(family, count / 60, count, buckets)

    async def take(self, key: str, cost: int = 1) -> float:
        """0 when `cost` requests may go now (and are counted); else the seconds to wait
        (infinite when `cost` is over the burst)."""
        if cost > self.burst:
            return math.inf
        held = self._held.get(key)
        if held is None:
            if len(self._held) >= MAX_KEYS:
                now = time.monotonic()
                self._held = {k: h for k, h in self._held.items()
                              if now - h.at < HOLD or h.refill.locked()}
            held = self._held[key] = _Held(0, 0.0, 0)
        if self._spend(held, cost):
            return 0.0
        async with held.refill:  # one request to the database per key; the others wait
            if self._spend(held, cost):  # for it, then spend what it brought
                return 0.0
            now = time.monotonic()
            fresh = now - held.at < HOLD
            # All it took spent in time: take twice as many; else (or first) one at a time.
            size = min(held.size * 2, self.lease) if fresh and held.size else 1
            have = held.tokens if fresh else 0
            held.tokens = 0  # claimed: nobody spends them while the database answers
            try:
                row = await self._fetch(TAKE, key, cost - have,
                                        max(cost - have, size), self.rate, self.burst)
            except _Alone:
                held.tokens = have
                return self._counting_alone().wait_for(key, cost=cost)
            assert row is not None
            granted: int = row["granted"] or 0
            if not granted:
                held.tokens = have
                return max(float(row["wait"] or 0.0), 1e-3)
            held.tokens, held.at, held.size = have + granted - cost, now, size
            return 0.0

    @staticmethod
    def _spend(held: _Held, cost: int) -> bool:
        if held.tokens >= cost and time.monotonic() - held.at < HOLD:
            held.tokens -= cost
            return True
        return False

    async def wait(self, key: str) -> float:
        """The seconds before one request may go, counting nothing."""
        held = self._held.get(key)
        if held is not None and held.tokens and time.monotonic() - held.at < HOLD:
            return 0.0
        try:
            row = await self._fetch(PEEK, key, self.burst, self.rate)
        except _Alone:
            return self._counting_alone().wait_time(key)
        return 0.0 if row is None else float(row[0])

    async def _fetch(self, query: str, key: str, *args: object) -> asyncpg.Record | None:
        """The database's answer for `key`'s bucket; `_Alone` when it has none in time (away,
        slow: it is then asked again only RETRY_ALONE seconds later)."""
        pool = self.buckets.pool
        if pool is None:
            raise _Alone
        if self._alone is not None:
            if time.monotonic() - self._alone_since < RETRY_ALONE:
                raise _Alone
            self._alone_since = time.monotonic()  # this request looks; the others count on
        digest = hashlib.sha256(key.encode()).hexdigest()[:32]  # bounded, and no address
        try:  # or email kept in the database
            async with asyncio.timeout(ANSWER_WITHIN):
                row = await pool.fetchrow(query, f"{self.family}:{digest}", *args)
        except (TimeoutError, asyncpg.PostgresError, OSError, asyncpg.InterfaceError) as exc:
            if not isinstance(exc, TimeoutError) and not db.unavailable(exc):
                raise
            if self._alone is None:
                log.warning("rate_limit_alone", family=self.family, reason=type(exc).__name__)
            self._counting_alone()
            self._alone_since = time.monotonic()
            raise _Alone from exc
        if self._alone is not None:
            log.info("rate_limit_shared", family=self.family)
            self._alone = None
        return row

    def _counting_alone(self) -> RateLimiter:
        if self._alone is None:
            self._alone = RateLimiter(self.rate, self.burst)
        return self._alone


async def forget_full(pool: asyncpg.Pool) -> int:
    """Delete the buckets that are full again (a full bucket is the same as none): how many."""
    deleted = 0
    while True:
        count = int((await pool.execute(FORGET_FULL)).rsplit(" ", 1)[1])
        deleted += count
        if count < 1000:
            return deleted


LIMITER = web.AppKey("rate_limiter", SharedLimiter)


async def charge(request: web.Request, client: str, cost: int = 1) -> None:
    """Count `cost` requests for this client, or refuse with 429 (with Retry-After when
    waiting would help)."""
    if cost <= 0:
        return
    limiter = request.app[LIMITER]
    wait = await limiter.take(client, cost=cost)
    if not wait:
        return
    if math.isinf(wait):
        raise Problem(429, "Too many requests", f"This counts as {cost} requests, over the "
                      f"burst of {limiter.burst} a client may send at once: send fewer.")
    raise Problem(429, "Too many requests",
                  f"Over {limiter.rate:g} requests a second for this client"
                  + (f" ({cost} counted for this one)." if cost > 1 else "."),
                  headers={"Retry-After": RateLimiter.retry_after(wait)})


async def charge_address(request: web.Request) -> None:
    """Count one request for the caller's address (behind a trusted proxy, the client's) on
    this operation, or refuse with 429: the limit of the operations that take no token. One
    bucket per operation, so that a flood of one public read does not hold back the health
    probes or the services' reading of the keys and revocations."""
    limiter = request.app[LIMITER]
    operation = request.match_info.route.resource.canonical if request.match_info.route \
        .resource is not None else request.path
    await charge(request, f"address:{operation}:"
                    + client_address(request, limiter.trusted_proxies))
