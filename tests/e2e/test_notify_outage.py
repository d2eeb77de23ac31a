"""Issue #17, point 1, with a real SMTP server and a real PostgreSQL of the test's own: the
database stops just as the SMTP server accepts an email, before the sender can record it.
The sender, still alive, records it once the database is back and does not send it again
(before, the row stayed pending and the email went out twice with the same Message-ID)."""

from __future__ import annotations

import asyncio
from email.message import Message
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from services.auth.api import KEYS
from services.cli import SERVICE_NAMES, service_specs
from services.runtime.app import RUNTIME, create_app
from services.runtime.settings import Settings
from tests.conftest import Mailbox, OwnPostgres, create_database, wait_until
from tests.e2e.conftest import Tokens
from tests.e2e.test_notify import ALL, COUNSELLOR, ML, TEAM_BOX, hand_off, per_recipient


async def test_an_email_accepted_as_the_database_stops_is_recorded_not_sent_again(
        own_postgres: OwnPostgres, smtp_server: Mailbox, tmp_path: Path) -> None:
    url = await create_database(own_postgres.url())
    settings = Settings.model_validate({
        "data_dir": tmp_path, "database_url": url, "smtp_port": smtp_server.port,
        "poll_interval": 0.5, "consumer_backoff": 0.05})
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()

    async def stop_the_database(message: Message) -> None:
        """The first notification: the database stops before the server says 250."""
        if message["Message-ID"] is not None and not stopped.is_set():
            await asyncio.to_thread(own_postgres.stop)
            loop.call_soon_threadsafe(stopped.set)

    app = create_app(settings, url, service_specs(SERVICE_NAMES))
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        tokens = Tokens(await client.app[KEYS].signing(), settings)
        response = await client.put(f"/v1/recipients/{ML}", json={
            "email": TEAM_BOX, "counsellors": [COUNSELLOR], "channels": ["email", "inbox"]},
            headers=tokens.headers("coordination", ALL))
        assert response.status == 200, await response.text()
        smtp_server.before_accepting = stop_the_database
        await hand_off(client, tokens, 1)
        await asyncio.wait_for(stopped.wait(), 30)
        await asyncio.sleep(1.0)  # the sender meets the closed connection
        await asyncio.to_thread(own_postgres.start)
        pool = client.app[RUNTIME].pool

        async def both_delivered() -> bool:
            try:
                return bool(await pool.fetchval(
                    "SELECT count(*) FROM notify.notifications WHERE channel = 'email'"
                    " AND status = 'delivered'") == 2)
            except Exception:  # the pool's connections died with the server
                return False

        await wait_until(both_delivered, 60, "both emails recorded as delivered")
        await asyncio.sleep(3 * settings.poll_interval)  # time for a second sending
        counts = per_recipient(smtp_server)
        assert dict(counts) and set(counts.values()) == {1}, counts
        assert {rcpt for rcpt, _ in counts} == {TEAM_BOX, COUNSELLOR}
        sent = await pool.fetch("SELECT id, message_id FROM notify.notifications"
                                " WHERE channel = 'email'")
        assert {r["message_id"] for r in sent} == {m for _, m in counts}
