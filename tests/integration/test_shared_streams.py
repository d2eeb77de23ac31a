"""The live inbox's caps per deployment (issue #13, point 4): the streams a client and its
organisation hold are counted across every instance (`notify.open_streams`), a stream closed
at one instance frees its place at the other, and the streams of an instance that died stop
counting once it has not said they are open for STALE seconds."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import pytest
from aiohttp import ClientSession, ClientTimeout, TCPConnector

from services.auth.api import KEYS
from services.notify import live
from services.runtime.app import RUNTIME
from services.runtime.settings import Settings
from tests.conftest import wait_until
from tests.e2e.conftest import Tokens
from tests.integration.conftest import Client, running
from tests.security.test_sse import ML, Streams, assert_too_many


@pytest.fixture
async def two(settings: Settings) -> AsyncIterator[tuple[Streams, Streams, Client]]:
    """Two instances on one database, two streams per client at most, over real HTTP."""
    capped = settings.model_copy(update={"sse_max_per_client": 2})
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(running(capped))
        b = await stack.enter_async_context(running(capped))
        tokens = Tokens(await a.app[KEYS].signing(), capped)
        http = await stack.enter_async_context(ClientSession(
            timeout=ClientTimeout(total=60), connector=TCPConnector(limit=0)))
        streams_a = Streams(http, f"http://127.0.0.1:{a.port}", tokens)
        streams_b = Streams(http, f"http://127.0.0.1:{b.port}", tokens)
        yield streams_a, streams_b, a
        for response in streams_a.opened + streams_b.opened:
            response.close()


async def test_a_client_s_streams_are_capped_across_instances(
    two: tuple[Streams, Streams, Client],
) -> None:
    a, b, client = two
    assert (await a.open(ML, "ml-si")).status == 200
    assert (await b.open(ML, "ml-si")).status == 200
    await assert_too_many(await a.open(ML, "ml-si"), "client")
    await assert_too_many(await b.open(ML, "ml-si"), "client")
    assert (await b.open(ML, "ml-si-2")).status == 200, "another client has its own places"

    b.opened[0].close()  # the client ends its stream at instance b: its place is free again
    pool = client.app[RUNTIME].pool

    async def freed() -> bool:
        held: int = await pool.fetchval("SELECT count(*) FROM notify.open_streams"
                                        " WHERE client_id = 'ml-si'")
        return held == 1

    await wait_until(freed, 5.0, "instance b to forget the stream its client closed")
    assert (await a.open(ML, "ml-si")).status == 200


async def test_the_streams_of_an_instance_that_died_stop_counting(
    two: tuple[Streams, Streams, Client],
) -> None:
    a, _, client = two
    pool = client.app[RUNTIME].pool
    for seen in ("now()", f"now() - interval '{live.STALE + 5} seconds'"):
        await pool.execute(
            "INSERT INTO notify.open_streams (id, org, client_id, page, seen)"
            f" VALUES ($1, $2, 'ml-si', false, {seen})", uuid.uuid4(), ML)
    # one said open a moment ago by a live instance counts; one silent for STALE s does not
    assert (await a.open(ML, "ml-si")).status == 200
    await assert_too_many(await a.open(ML, "ml-si"), "client")


async def test_a_person_s_open_tabs_never_take_the_integration_s_places(
    settings: Settings,
) -> None:
    async with running(settings) as client:
        pool, hub = client.app[RUNTIME].pool, live.InboxHub()
        tabs = [await hub.open(pool, ML, f"session:{n}", 5, 3, page=True) for n in range(3)]
        with pytest.raises(live.TooManyStreams):
            await hub.open(pool, ML, "session:9", 5, 3, page=True)
        api = [await hub.open(pool, ML, "ml-si", 5, 3) for _ in range(3)]  # its own places
        with pytest.raises(live.TooManyStreams):
            await hub.open(pool, ML, "ml-si-2", 5, 3)
        assert (await hub.open(pool, "france-travail", "session:1", 5, 3, page=True)).org \
            == "france-travail"
        await hub.close(pool, tabs[0])
        assert (await hub.open(pool, ML, "session:9", 5, 3, page=True)).page
        hub.wake(ML)
        assert all(s.wake.is_set() for s in [*tabs[1:], *api]), "one wake for both kinds"
        held = await pool.fetchval("SELECT count(*) FROM notify.open_streams")
        assert held == 7, "3 tabs (one closed, one opened), 3 API streams, 1 elsewhere: " \
            "a stream refused left nothing behind"
