"""Issue #17, SMTP trouble, with a real SMTP server that is down, then comes back: an email
waiting through a long outage (its tries counted up to an hour's back-off) goes out within
`RELAIS_SMTP_DOWN_RETRY` of the server's return, once; the webhook of the same referral does
not wait for the email. And a server that accepts connections and never answers: each try
gives up after `RELAIS_SMTP_TIMEOUT`, the webhooks go on meanwhile, the email goes once the
server answers again."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer
from aiosmtpd.controller import Controller

from deploy.kafka.broker import free_port
from services.auth.api import KEYS
from services.cli import SERVICE_NAMES, service_specs
from services.runtime.app import RUNTIME, create_app
from services.runtime.settings import Settings
from tests.conftest import Mailbox, wait_until
from tests.e2e.conftest import Receiver, Tokens
from tests.e2e.test_notify import ALL, ML, TEAM_BOX, hand_off, per_recipient


async def test_an_email_waits_out_an_smtp_outage_and_goes_when_the_server_is_back(
        database: str, receiver: Receiver, tmp_path: Path) -> None:
    port = free_port()  # nothing listens there yet: the server is down
    settings = Settings.model_validate({
        "data_dir": tmp_path, "database_url": database, "smtp_port": port,
        "poll_interval": 0.5, "smtp_down_retry": 1.0,
        "webhook_allowed_networks": ["127.0.0.0/8"]})
    app = create_app(settings, database, service_specs(SERVICE_NAMES))
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        tokens = Tokens(await client.app[KEYS].signing(), settings)
        pool = client.app[RUNTIME].pool
        await client.put(f"/v1/recipients/{ML}", json={
            "email": TEAM_BOX, "counsellors": [], "channels": ["email", "inbox"]},
            headers=tokens.headers("coordination", ALL))
        endpoint = await client.post("/v1/webhooks/endpoints", json={"url": receiver.url},
                                     headers=tokens.headers(ML, ALL))
        assert endpoint.status == 201
        await hand_off(client, tokens, 1)
        await wait_until(lambda: len(receiver.received) == 1, 30,
                         "the webhook, though the SMTP server is down")

        async def tried(times: int) -> bool:
            return bool(await pool.fetchval(
                "SELECT attempts >= $1 AND last_error LIKE 'SMTP unreachable%'"
                " FROM notify.notifications WHERE channel = 'email'", times))

        await wait_until(lambda: tried(1), 30, "a first try, refused")
        # ten minutes of outage, as counted: a refused message would now wait an hour
        await pool.execute("UPDATE notify.notifications SET attempts = 12,"
                           " next_attempt_at = now() WHERE channel = 'email'")
        await wait_until(lambda: tried(13), 30, "a try after the long outage")

        mailbox = Mailbox(port=port)
        controller = Controller(mailbox, hostname="127.0.0.1", port=port)
        controller.start()  # the server is back
        try:
            await mailbox.wait_for(1, 15)
            await wait_until(lambda: pool.fetchval(
                "SELECT status = 'delivered' FROM notify.notifications WHERE channel = 'email'"),
                15, "the email recorded as delivered")
            counts = per_recipient(mailbox)
            assert list(counts.values()) == [1] and {r for r, _ in counts} == {TEAM_BOX}
        finally:
            controller.stop()


async def test_an_smtp_server_that_accepts_and_hangs_costs_a_timeout_not_the_sender(
        database: str, receiver: Receiver, tmp_path: Path) -> None:
    port = free_port()
    held: list[asyncio.BaseTransport] = []

    class Hung(asyncio.Protocol):  # accepts, then never says a word (not even 220)
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            held.append(transport)

    hung = await asyncio.get_running_loop().create_server(Hung, "127.0.0.1", port,
                                                           reuse_address=True)
    settings = Settings.model_validate({
        "data_dir": tmp_path, "database_url": database, "smtp_port": port,
        "smtp_timeout": 0.5, "poll_interval": 0.5, "smtp_down_retry": 0.5,
        "webhook_allowed_networks": ["127.0.0.0/8"]})
    app = create_app(settings, database, service_specs(SERVICE_NAMES))
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        tokens = Tokens(await client.app[KEYS].signing(), settings)
        pool = client.app[RUNTIME].pool
        await client.put(f"/v1/recipients/{ML}", json={
            "email": TEAM_BOX, "counsellors": [], "channels": ["email", "inbox"]},
            headers=tokens.headers("coordination", ALL))
        endpoint = await client.post("/v1/webhooks/endpoints", json={"url": receiver.url},
                                     headers=tokens.headers(ML, ALL))
        assert endpoint.status == 201
        started = time.monotonic()
        await hand_off(client, tokens, 2)
        await wait_until(lambda: len(receiver.received) == 2, 30,
                         "both webhooks, though the SMTP server hangs")

        async def tried(times: int) -> bool:
            return bool(await pool.fetchval(
                "SELECT bool_and(attempts >= $1 AND last_error LIKE 'SMTP unreachable%')"
                " FROM notify.notifications WHERE channel = 'email'", times))

        await wait_until(lambda: tried(2), 30, "each email tried twice, each try timed out")
        # four tries given up after 0.5 s each (they took 10 s each before the setting)
        assert time.monotonic() - started < 10
        assert len(held) >= 2, "the sender connected again after each timeout"

        hung.close()
        for transport in held:
            transport.close()
        mailbox = Mailbox(port=port)
        controller = Controller(mailbox, hostname="127.0.0.1", port=port)
        controller.start()  # the server answers again
        try:
            await mailbox.wait_for(2, 15)
            await wait_until(lambda: pool.fetchval(
                "SELECT bool_and(status = 'delivered') FROM notify.notifications"
                " WHERE channel = 'email'"), 15, "the emails recorded as delivered")
            assert sorted(per_recipient(mailbox).values()) == [1, 1]
        finally:
            controller.stop()
