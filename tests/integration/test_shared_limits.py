"""Rate limits per deployment (issue #13, point 4): two instances of Relais on one database
share every bucket, so a client that spreads its calls over them gets the limit it gets from
one; an instance takes tokens a few at a time, not one database call per request; and while
the database does not answer, each instance counts alone rather than refusing or failing."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import asyncpg
import pytest
import structlog

from deploy.kafka.broker import free_port
from services.auth.api import KEYS, THROTTLE
from services.runtime import ratelimit
from services.runtime.ratelimit import BUCKETS, LIMITER
from services.runtime.settings import Settings
from tests.e2e.conftest import Tokens
from tests.integration.conftest import Client, running
from tests.integration.test_oauth import get_token, new_client


def limited(settings: Settings, per_second: float, burst: int) -> Settings:
    return settings.model_copy(update={"rate_limit_per_second": per_second,
                                       "rate_limit_burst": burst})


@pytest.fixture
async def two(settings: Settings) -> AsyncIterator[tuple[Client, Client, Tokens]]:
    """Two instances on one database, a client's burst of 4 that refills once a minute."""
    strict = limited(settings, 1 / 60, 4)
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(running(strict))
        b = await stack.enter_async_context(running(strict))
        yield a, b, Tokens(await a.app[KEYS].signing(), strict)


async def test_a_client_spreading_its_calls_over_two_instances_gets_one_limit(
    two: tuple[Client, Client, Tokens],
) -> None:
    a, b, tokens = two
    headers = tokens.headers("ccas", "intake:read")
    statuses = [(await instance.get(f"/v1/intakes/{uuid.uuid4()}", headers=headers)).status
                for instance in (a, b, a, b, a, b)]
    assert statuses == [404, 404, 404, 404, 429, 429], "4 in all, not 4 at each instance"
    refused = await a.get(f"/v1/intakes/{uuid.uuid4()}", headers=headers)
    assert refused.content_type == "application/problem+json"
    assert int(refused.headers["Retry-After"]) >= 10, "the bucket refills once a minute"
    other = {"Authorization": "Bearer " + tokens.issuer.issue("mission-locale", "intake:read",
                                                             client_id="another")}
    assert (await b.get(f"/v1/intakes/{uuid.uuid4()}", headers=other)).status == 404, \
        "another client has its own bucket"


async def test_failed_logins_spread_over_two_instances_are_counted_together(
    two: tuple[Client, Client, Tokens],
) -> None:
    a, b, _ = two
    for instance in (a, b):  # no refill during the test: the count alone decides (the
        throttle = instance.app[THROTTLE]  # scrypt checks take seconds on a loaded machine)
        throttle.by_client.rate = throttle.by_address.rate = 1 / 86_400
    client_id, secret = await new_client(a, "ccas", "intake:read")
    statuses = [(await get_token(instance, client_id, "guess")).status
                for instance in (a, b) * 5]
    assert statuses == [401] * 10
    for instance in (a, b):
        throttled = await get_token(instance, client_id, secret)
        assert throttled.status == 429, "ten failures a minute for one client id, in all"


async def test_an_instance_takes_tokens_a_few_at_a_time(settings: Settings,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ratelimit, "HOLD", 60.0)  # however slow this machine is today
    async with running(limited(settings, 1000, 1000)) as client:
        limiter = client.app[LIMITER]
        assert limiter.lease == 100
        calls, granted = 0, 0
        fetch = limiter._fetch

        async def counted(*args: object) -> asyncpg.Record | None:
            nonlocal calls, granted
            calls += 1
            row = await fetch(*args)
            granted += row["granted"] if row is not None else 0
            return row

        limiter._fetch = counted
        headers = Tokens(await client.app[KEYS].signing(), settings).headers("ccas",
                                                                             "intake:read")
        for _ in range(300):
            assert (await client.get(f"/v1/intakes/{uuid.uuid4()}",
                                     headers=headers)).status == 404
    # One call per token at first, then twice as many each time all were spent (at most 100):
    # 1, 2, 4, ..., 64, then 100s: 10 calls for 300 requests, not 300.
    assert calls <= 12, calls
    assert 300 <= granted <= 300 + 100, "every request counted, at most one lease ahead"


async def test_concurrent_calls_of_one_client_get_its_whole_burst_and_no_more(
        settings: Settings) -> None:
    """A client's calls in parallel share what the instance took (one request to the
    database at a time per client): all of its burst, nothing beyond it."""
    async with running(settings) as client:
        limiter = ratelimit.SharedLimiter("test", 100, 500, client.app[BUCKETS], lease=10)

        async def calls(n: int) -> list[float]:
            return [await limiter.take("ccas") for _ in range(n)]

        waits = [w for ws in await asyncio.gather(*(calls(20) for _ in range(25))) for w in ws]
        assert waits.count(0.0) == 500, "each of the burst's 500 tokens let through"

        tight = ratelimit.SharedLimiter("tight", 1 / 3600, 8, client.app[BUCKETS], lease=8)
        assert [await tight.take("ccas") for _ in range(3)] == [0.0] * 3  # 5 left
        batch, *singles = await asyncio.gather(tight.take("ccas", 5),
                                               *(tight.take("ccas") for _ in range(5)))
        admitted = (5 if batch == 0 else 0) + sum(1 for w in singles if w == 0)
        assert admitted == 5, "the 5 tokens left, once: not the batch's and the singles' too"


async def test_while_the_database_does_not_answer_an_instance_counts_alone(
    settings: Settings,
) -> None:
    strict = limited(settings, 1 / 60, 3)
    async with running(strict) as client:
        headers = Tokens(await client.app[KEYS].signing(), strict).headers("ccas",
                                                                           "intake:read")
        buckets = client.app[BUCKETS]
        shared = buckets.pool
        # a database server that has gone away: nothing listens where the pool connects
        gone = await asyncpg.create_pool(f"postgresql://relais@127.0.0.1:{free_port()}/gone",
                                         min_size=0, max_size=1)
        assert gone is not None
        buckets.pool = gone
        try:
            with structlog.testing.capture_logs() as logs:
                statuses = [(await client.get("/healthz")).status for _ in range(4)]
        finally:
            buckets.pool = shared
            await gone.close()
        assert statuses == [200, 200, 200, 429], "counted in memory, not refused or failed"
        assert [e for e in logs if e["event"] == "rate_limit_alone"], logs
        assert (await client.get(f"/v1/intakes/{uuid.uuid4()}", headers=headers)).status \
            == 404
