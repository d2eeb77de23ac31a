"""The live inbox (Server-Sent Events) cannot exhaust the database: one PostgreSQL listener
per process fans out to every open stream, and the streams a client or an organisation may
hold at once are capped (429 beyond). A stream the client closes is a normal end; sequence
numbers out of range are a 400, not a 500."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse, ClientSession, ClientTimeout, TCPConnector, web
from aiohttp.test_utils import TestClient, TestServer

from services.auth.api import KEYS
from services.cli import SERVICE_NAMES, service_specs
from services.notify import api, store
from services.runtime import problem
from services.runtime.app import RUNTIME, create_app
from services.runtime.settings import Settings
from tests.conftest import Mailbox, wait_until
from tests.e2e.conftest import Tokens
from tests.e2e.test_notify import read_events
from tests.integration.conftest import Client
from tests.security.test_webhooks import tell

ML = "mission-locale"
ORGS = (ML, "france-travail", "cap-emploi")
ALL = "notification:read notification:write"
PER_ORG = 8  # the per-client cap keeps its default, 5


@pytest.fixture
def settings(database: str, tmp_path: Path, smtp_server: Mailbox) -> Settings:
    return Settings.model_validate({
        "data_dir": tmp_path, "database_url": database, "smtp_port": smtp_server.port,
        "poll_interval": 0.5, "consumer_backoff": 0.05, "sse_max_per_org": PER_ORG})


class ServedAsInProduction(TestServer):
    """As `relais up` serves (services/cli.py): a handler is not cancelled when its client
    goes away (aiohttp's test server cancels it)."""

    async def _make_runner(self, **kwargs: Any) -> web.BaseRunner:
        return await super()._make_runner(**kwargs | {"handler_cancellation": False})


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[Client]:
    assert settings.database_url
    app = create_app(settings, settings.database_url, service_specs(SERVICE_NAMES))
    async with TestClient(ServedAsInProduction(app, host="127.0.0.1")) as served:
        yield served


def auth(tokens: Tokens, org: str, client_id: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens.issuer.issue(org, ALL, client_id=client_id)}"}


@dataclass
class Streams:
    """Streams opened over real HTTP, each by an organisation's client."""

    http: ClientSession
    base: str
    tokens: Tokens
    opened: list[ClientResponse] = field(default_factory=list)

    async def open(self, org: str, client_id: str, **headers: str) -> ClientResponse:
        response = await self.http.get(f"{self.base}/v1/inbox/stream",
                                       headers=auth(self.tokens, org, client_id) | headers)
        if response.status == 200:
            self.opened.append(response)
            first = await asyncio.wait_for(response.content.readline(), 10)
            assert first == b"retry: 3000\n"
        else:
            await response.read()
        return response


@pytest.fixture
async def streams(client: Client, tokens: Tokens) -> AsyncIterator[Streams]:
    async with ClientSession(timeout=ClientTimeout(total=120),
                             connector=TCPConnector(limit=0)) as http:
        opened = Streams(http, f"http://127.0.0.1:{client.port}", tokens)
        yield opened
        for response in opened.opened:
            response.close()


async def listeners(client: Client) -> int:
    """The database connections that wait for the inbox's notifications (their last
    statement a LISTEN on its channel): not the pool's, which grows and shrinks with whatever
    else the services do meanwhile, nor the consumers' and relays', which show a LISTEN only
    for a moment after they start."""
    count: int = await client.app[RUNTIME].pool.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND query ILIKE 'LISTEN %' AND strpos(query, $1) > 0", store.INBOX_CHANNEL)
    return count


async def assert_too_many(response: ClientResponse, reason: str) -> None:
    assert response.status == 429, f"a stream over the cap was opened ({reason})"
    assert response.content_type == "application/problem+json"
    assert int(response.headers["Retry-After"]) > 0
    body = await response.json()
    assert body["status"] == 429 and reason in body["detail"]


async def test_streams_over_the_client_cap_get_429_and_the_rest_still_answers(
    client: Client, tokens: Tokens, streams: Streams
) -> None:
    for _ in range(5):
        assert (await streams.open(ML, "crm")).status == 200
    extra = await asyncio.gather(*(streams.open(ML, "crm") for _ in range(20)))
    for response in extra:
        await assert_too_many(response, "client")
    inbox = await client.get("/v1/inbox", headers=auth(tokens, ML, "crm"))
    assert inbox.status == 200, await inbox.text()
    # another client of the organisation, and a client of another, have their own places
    assert (await streams.open(ML, "tablette")).status == 200
    assert (await streams.open("france-travail", "crm")).status == 200


async def test_streams_over_the_organisation_cap_get_429(
    client: Client, tokens: Tokens, streams: Streams
) -> None:
    for client_id in ["crm"] * 5 + ["tablette"] * (PER_ORG - 5):
        assert (await streams.open(ML, client_id)).status == 200
    await assert_too_many(await streams.open(ML, "tablette"), "organisation")
    await assert_too_many(await streams.open(ML, "another"), "organisation")
    assert (await streams.open("france-travail", "tablette")).status == 200


async def test_one_database_listener_fans_out_to_every_stream(
    client: Client, tokens: Tokens, streams: Streams
) -> None:
    plan = [(org, client_id) for org in ORGS
            for client_id in ["crm"] * 5 + ["tablette"] * (PER_ORG - 5)]
    first = await streams.open(*plan[0])
    await asyncio.sleep(0.3)
    before = await listeners(client)
    assert before >= 1, "the hub's listener, at least, is listening"
    for org, client_id in plan[1:]:
        assert (await streams.open(org, client_id)).status == 200
    after = await listeners(client)
    assert after == before, f"{after - before} more listeners for {len(plan) - 1} streams"

    ml = [first, *streams.opened[1:PER_ORG]]
    await tell(client, ML)
    events = [(await read_events(stream, 1))[0] for stream in ml]
    assert {(e["event"], e["id"]) for e in events} == {("new_referral", events[0]["id"])}
    elsewhere = streams.opened[PER_ORG]  # france-travail's
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(read_events(elsewhere, 1), 1.0)

    # a place freed, and a stream resumed after the last event it saw gets the next only
    ml[0].close()
    await wait_until(lambda: _reopened(streams, events[0]["id"]), 10, "the place freed")
    resumed = streams.opened[-1]
    await tell(client, ML)
    [next_one] = await read_events(resumed, 1)
    assert int(next_one["id"]) > int(events[0]["id"])
    assert [e["id"] for e in await read_events(ml[1], 1)] == [next_one["id"]]


async def _reopened(streams: Streams, last_event_id: str) -> bool:
    response = await streams.open(ML, "crm", **{"Last-Event-ID": last_event_id})
    return response.status == 200


async def test_an_event_still_arrives_after_the_listener_lost_its_connection(
    client: Client, streams: Streams
) -> None:
    stream = await streams.open(ML, "crm")
    pool = client.app[RUNTIME].pool

    async def listening() -> int:
        count: int = await pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND query LIKE 'LISTEN \"relais_notify_inbox\"%'")
        return count

    await wait_until(listening, 10, "a listener")
    killed = await pool.fetchval(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
        " WHERE datname = current_database() AND query LIKE 'LISTEN \"relais_notify_inbox\"%'")
    assert killed >= 1
    await tell(client, ML)  # while no one listens, or just after
    [event] = await asyncio.wait_for(read_events(stream, 1), 5)  # not at the 15 s heartbeat
    assert event["event"] == "new_referral"
    await wait_until(listening, 10, "the listener back")
    await tell(client, ML)
    assert len(await asyncio.wait_for(read_events(stream, 1), 5)) == 1


class Recorder:
    """A logger that records each call's level and event, then logs it as usual."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.records: list[tuple[str, str]] = []

    def __getattr__(self, level: str) -> Any:
        def record(event: str, *args: Any, **values: Any) -> Any:
            self.records.append((level, event))
            return getattr(self.real, level)(event, *args, **values)

        return record


async def test_a_stream_closed_by_its_client_is_a_normal_end(
    client: Client, streams: Streams, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture
) -> None:
    errors = Recorder(problem.log)
    monkeypatch.setattr(problem, "log", errors)
    ended = Recorder(getattr(api, "log", None))
    monkeypatch.setattr(api, "log", ended, raising=False)
    opened = [await streams.open(ML, "crm") for _ in range(5)]
    for response in opened:
        response.close()
    await tell(client, ML)  # a stream that has not noticed yet writes now

    def done() -> bool:
        return len(ended.records) >= 5 or any(e == "unhandled_error" for _, e in errors.records)

    await wait_until(done, 20, "the server to see the five streams closed")
    await asyncio.sleep(0.5)
    assert [e for _, e in errors.records] == [], "a closed stream was logged as an error"
    assert ended.records == [("debug", "inbox_stream_closed")] * 5, "logged once, at debug"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    for _ in range(5):  # and their places are free again
        assert (await streams.open(ML, "crm")).status == 200


async def test_open_streams_end_when_the_service_stops(settings: Settings) -> None:
    assert settings.database_url
    app = create_app(settings, settings.database_url, service_specs(SERVICE_NAMES))
    served = TestClient(ServedAsInProduction(app, host="127.0.0.1"))
    await served.start_server()
    tokens = Tokens(await app[KEYS].signing(), settings)
    async with ClientSession(timeout=ClientTimeout(total=120)) as http:
        stream = await Streams(http, f"http://127.0.0.1:{served.port}", tokens).open(ML, "crm")
        assert stream.status == 200
        loop = asyncio.get_running_loop()
        started = loop.time()
        await served.close()
        # ~120 s before the fix (the stream's heartbeat loop held the stop up); well under
        # 30 s on a loaded machine now (the services' own stop is bounded at 10 s)
        assert loop.time() - started < 30, "an open stream held the service's stop up"
        rest = await asyncio.wait_for(stream.content.read(), 5)  # to the end of the stream
        assert rest == b"\n", "the stream ended, with nothing after its opening"


async def test_sequence_numbers_out_of_range_are_a_400(client: Client, tokens: Tokens) -> None:
    headers = auth(tokens, ML, "crm")
    for bad in ("99999999999999999999999", "9223372036854775808", "-1", "1e3", "٣", "abc"):
        inbox = await client.get("/v1/inbox", params={"after": bad}, headers=headers)
        assert inbox.status == 400, (bad, inbox.status, await inbox.text())
        assert inbox.content_type == "application/problem+json"
        stream = await client.get("/v1/inbox/stream", headers=headers | {"Last-Event-ID": bad})
        assert stream.status == 400, (bad, stream.status, await stream.text())
        assert stream.content_type == "application/problem+json"
        assert "after" in (await inbox.json())["detail"]
    top = await client.get("/v1/inbox", params={"after": str(2**63 - 1)}, headers=headers)
    assert top.status == 200 and (await top.json())["items"] == []


async def test_a_revoked_client_s_open_stream_ends(client: Client, streams: Streams) -> None:
    """Revocation reaches a stream already open, not only new requests (its token is
    checked again at every wake and heartbeat)."""
    stream = await streams.open(ML, "crm-revoque")
    await client.app[RUNTIME].pool.execute(
        "INSERT INTO auth.clients (client_id, secret_hash, org, name, scopes, revoked_at)"
        " VALUES ('crm-revoque', 'x', $1, 'crm', '{}', now())", ML)
    await tell(client, ML)  # wakes the stream
    await asyncio.wait_for(stream.content.read(), 30)  # it ends (before: it never did)
    assert stream.content.at_eof()
