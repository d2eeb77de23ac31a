"""Webhooks reach only the addresses they were allowed to reach: a redirect is never
followed (it is a failed attempt, with its reason), and the address checked against the
private-network rules is the very address connected to, so a name that answers a public
address when checked and a private one when connected (DNS rebinding) gets nowhere."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from deploy.kafka.broker import free_port
from services.notify import domain, egress, handlers
from services.runtime.app import RUNTIME
from services.runtime.settings import Settings
from tests.conftest import Mailbox, wait_until
from tests.e2e.conftest import Tokens
from tests.integration.conftest import Client

ML = "mission-locale"
ALL = "notification:read notification:write directory:write"
REBINDING = "rebind.test"
STAND_IN = "127.0.0.2"
"""Stands for a public address: an allowed one where nothing listens (the tests must not
send anything out of the machine). The receivers listen on 127.0.0.1, which is private and
not allowed in the rebinding tests."""


@pytest.fixture
def webhook_networks() -> list[str]:
    return [f"{STAND_IN}/32"]


@pytest.fixture
def settings(database: str, tmp_path: Path, smtp_server: Mailbox,
             webhook_networks: list[str]) -> Settings:
    return Settings.model_validate({
        "data_dir": tmp_path, "database_url": database, "smtp_port": smtp_server.port,
        "poll_interval": 0.5, "consumer_backoff": 0.05, "webhook_timeout": 5.0,
        "webhook_allowed_networks": webhook_networks})


@dataclass
class Receiver:
    """A real HTTP server on 127.0.0.1: records each request, answers from `answer`."""

    port: int = field(default_factory=free_port)
    received: list[tuple[str, str, bytes]] = field(default_factory=list)
    answer: Callable[[], web.StreamResponse] = lambda: web.Response(status=200)

    def url(self, host: str = "127.0.0.1", path: str = "/hooks") -> str:
        return f"http://{host}:{self.port}{path}"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.received.append((request.method, request.path, await request.read()))
        return self.answer()


async def serve(receiver: Receiver) -> web.AppRunner:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", receiver.port).start()
    return runner


@pytest.fixture
async def receivers() -> AsyncIterator[tuple[Receiver, Receiver]]:
    first, second = Receiver(), Receiver()
    runners = [await serve(first), await serve(second)]
    yield first, second
    for runner in runners:
        await runner.cleanup()


class ScriptedDNS:
    """A DNS server under the attacker's control for one name (the others resolve as
    usual): each lookup gets the next scripted answer, the last one forever after."""

    def __init__(self, loop: asyncio.AbstractEventLoop, name: str,
                 answers: list[list[str]]) -> None:
        self.real = loop.getaddrinfo
        self.name = name
        self.answers = answers
        self.asked: list[list[str]] = []

    async def getaddrinfo(self, host: Any, port: Any, *, family: int = 0, type: int = 0,
                          proto: int = 0, flags: int = 0) -> list[Any]:
        if host != self.name:
            return await self.real(host, port, family=family, type=type, proto=proto,
                                   flags=flags)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        self.asked.append(answer)
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "",
                 (address, int(port or 0))) for address in answer]


@pytest.fixture
async def dns(monkeypatch: pytest.MonkeyPatch) -> ScriptedDNS:
    loop = asyncio.get_running_loop()
    scripted = ScriptedDNS(loop, REBINDING, [[STAND_IN]])
    monkeypatch.setattr(loop, "getaddrinfo", scripted.getaddrinfo)
    return scripted


async def register(client: Client, tokens: Tokens, url: str) -> None:
    response = await client.post("/v1/webhooks/endpoints", json={"url": url},
                                 headers=tokens.headers(ML, ALL))
    assert response.status == 201, await response.text()


async def tell(client: Client, org: str = ML) -> None:
    """A new referral for `org`, as the notify service's consumer fans it out."""
    referral = uuid.uuid4()
    message = domain.Message(
        domain.Kind.new_referral, org, "Nouvelle orientation", "Une orientation.", referral,
        uuid.uuid4(), f"http://relais.test/v1/referrals/{referral}",
        {"kind": "new_referral", "referral_id": str(referral),
         "link": f"http://relais.test/v1/referrals/{referral}"}, "Une orientation.")
    async with client.app[RUNTIME].pool.acquire() as conn, conn.transaction():
        await handlers.fan_out(conn, uuid.uuid4().hex, "equipe-aller-vers", message)


async def deliveries(client: Client) -> list[Any]:
    rows: list[Any] = await client.app[RUNTIME].pool.fetch(
        "SELECT * FROM notify.deliveries ORDER BY attempt")
    return rows


async def until_deliveries(client: Client, count: int) -> list[Any]:
    async def enough() -> bool:
        return len(await deliveries(client)) >= count

    await wait_until(enough, 30, f"{count} delivery attempts")
    return await deliveries(client)


async def retry_now(client: Client) -> None:
    pool = client.app[RUNTIME].pool
    await pool.execute("UPDATE notify.notifications SET next_attempt_at = now()"
                       " WHERE channel = 'webhook' AND status = 'pending'")
    await pool.execute("SELECT pg_notify('relais_notify_pending', '')")


# --- redirects -------------------------------------------------------------------------------


@pytest.mark.parametrize("webhook_networks", [["127.0.0.0/8"]])
@pytest.mark.parametrize("status", [307, 302])
async def test_a_redirect_is_a_failed_attempt_never_followed(
    client: Client, tokens: Tokens, receivers: tuple[Receiver, Receiver], status: int
) -> None:
    endpoint, elsewhere = receivers  # both allowed (loopback is, here)
    endpoint.answer = lambda: web.Response(status=status, headers={
        "Location": elsewhere.url(path="/stolen")})
    await register(client, tokens, endpoint.url())
    await tell(client)
    [attempt] = await until_deliveries(client, 1)
    await asyncio.sleep(0.5)  # a followed redirect would have arrived by now
    assert len(endpoint.received) == 1
    assert elsewhere.received == [], "the redirect was followed"
    assert (attempt["status_code"], attempt["outcome"]) == (status, "retry")
    assert "redirect" in attempt["error"] and "not followed" in attempt["error"]
    notification = await client.app[RUNTIME].pool.fetchrow(
        "SELECT status, last_error FROM notify.notifications WHERE channel = 'webhook'")
    assert notification["status"] == "pending"
    assert notification["last_error"] == attempt["error"]


# --- DNS rebinding, through the running service ------------------------------------------------


async def test_dns_rebinding_never_reaches_a_private_address(
    client: Client, tokens: Tokens, receivers: tuple[Receiver, Receiver], dns: ScriptedDNS
) -> None:
    receiver, _ = receivers
    await register(client, tokens, receiver.url(REBINDING))  # resolves to the stand-in
    # the name answers the allowed address once more, then 127.0.0.1 (not allowed) forever
    dns.answers = [[STAND_IN], ["127.0.0.1"]]
    dns.asked.clear()
    await tell(client)
    [first] = await until_deliveries(client, 1)
    assert receiver.received == [], "a webhook reached 127.0.0.1 through DNS rebinding"
    assert STAND_IN in first["error"], "the first attempt connected where it was checked"
    await retry_now(client)
    _, second = await until_deliveries(client, 2)
    await asyncio.sleep(0.3)
    assert receiver.received == [], "a webhook reached 127.0.0.1 through DNS rebinding"
    assert dns.asked == [[STAND_IN], ["127.0.0.1"]], "one lookup per attempt, no other"
    assert second["error"] == f"{REBINDING} resolves to a private address (127.0.0.1)"
    assert second["status_code"] is None


# --- the delivery session's resolver and sockets, directly ------------------------------------


@dataclass
class Listener:
    """A raw TCP server on 127.0.0.1 that counts the connections it accepts."""

    server: asyncio.Server
    accepted: list[Any] = field(default_factory=list)

    @property
    def port(self) -> int:
        port: int = self.server.sockets[0].getsockname()[1]
        return port


@pytest.fixture
async def listener() -> AsyncIterator[Listener]:
    accepted: list[Any] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer.get_extra_info("peername"))
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    yield Listener(server, accepted)
    server.close()
    await server.wait_closed()


async def refused_by(session: aiohttp.ClientSession, url: str) -> OSError:
    with pytest.raises(aiohttp.ClientConnectorError) as caught:
        async with session.post(url, data=b"{}"):
            pass
    return caught.value.os_error


async def test_every_resolved_address_is_checked(dns: ScriptedDNS) -> None:
    resolver = egress.GuardedResolver([])
    dns.answers = [["93.184.215.14", "127.0.0.1"]]  # one private answer among public ones
    with pytest.raises(egress.RefusedAddress, match=r"private address \(127\.0\.0\.1\)"):
        await resolver.resolve(REBINDING, 443)
    dns.answers = [["93.184.215.14"]]
    [answer] = await resolver.resolve(REBINDING, 443)
    assert (answer["host"], answer["port"], answer["hostname"]) == (
        "93.184.215.14", 443, REBINDING)
    with pytest.raises(egress.RefusedAddress):
        await egress.GuardedResolver([]).resolve("127.0.0.1", 80)
    assert await egress.GuardedResolver(["127.0.0.0/8"]).resolve("127.0.0.1", 80)


async def test_the_session_connects_to_the_address_it_checked_once_per_request(
    dns: ScriptedDNS, listener: Listener
) -> None:
    dns.answers = [[STAND_IN], ["127.0.0.1"]]
    async with egress.webhook_session([f"{STAND_IN}/32"], timeout=5.0) as session:
        url = f"http://{REBINDING}:{listener.port}/hooks"
        first = await refused_by(session, url)  # the stand-in: nothing listens there
        assert not isinstance(first, egress.RefusedAddress)
        second = await refused_by(session, url)  # 127.0.0.1: refused before connecting
        assert isinstance(second, egress.RefusedAddress)
    assert dns.asked == [[STAND_IN], ["127.0.0.1"]], "resolved once per request, no cache"
    assert listener.accepted == [], "a connection reached the private address"


async def test_a_private_ip_literal_is_refused_at_the_socket(listener: Listener) -> None:
    async with egress.webhook_session([], timeout=5.0) as session:
        error = await refused_by(session, f"http://127.0.0.1:{listener.port}/hooks")
        assert isinstance(error, egress.RefusedAddress)
        assert "127.0.0.1" in str(error)
    assert listener.accepted == []
    async with egress.webhook_session(["127.0.0.0/8"], timeout=5.0) as session, \
            session.post(f"http://127.0.0.1:{listener.port}/hooks", data=b"{}") as response:
        assert response.status == 200  # allowed networks are reachable
    assert len(listener.accepted) == 1
