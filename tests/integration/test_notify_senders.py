"""Several senders of one channel side by side (`RELAIS_EMAIL_SENDERS`): when one fails and
the others are cancelled in the middle of a send, the send that started keeps its
connection until it ends (`finish`), and the pool never lends that connection to anyone
else meanwhile (seen once in CI: a page answered 500, "another operation is in progress",
while a cancelled sender was still recording its email on the same connection)."""

from __future__ import annotations

import asyncio
import uuid
from types import SimpleNamespace
from typing import cast

import asyncpg
import pytest
from aiohttp import web

from services.notify import handlers, store
from services.runtime import db
from services.runtime.app import Runtime


async def pids_lent(pool: asyncpg.Pool) -> set[int]:
    """The server pids of every connection the pool lends within a second each."""
    held: list[asyncpg.Connection] = []
    try:
        while True:
            try:
                held.append(await pool.acquire(timeout=1))
            except TimeoutError:
                break
        return {conn.get_server_pid() for conn in held}
    finally:
        for conn in held:
            await pool.release(conn)


async def test_a_sender_cancelled_mid_send_keeps_its_connection_until_its_send_ends(
        database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(handlers, "FINISH_TIMEOUT", 0.2)  # gives up waiting, not the send
    pool = await db.create_pool(database, 2)
    app = web.Application()
    app[handlers.UNRECORDED] = {}
    runtime = cast(Runtime, SimpleNamespace(app=app, dsn=database, pool=pool,
                                            settings=SimpleNamespace(poll_interval=0.5)))
    sending, answered, recorded = asyncio.Event(), asyncio.Event(), asyncio.Event()
    slow_pid: list[int] = []

    async def slow(conn: asyncpg.Connection, _pending: handlers.Unrecorded) -> bool:
        slow_pid.append(conn.get_server_pid())
        sending.set()
        await answered.wait()  # the SMTP server's 250, after the other sender failed
        assert await conn.fetchval("SELECT 1") == 1  # its recording, on its connection
        recorded.set()
        return False

    async def broken(_conn: asyncpg.Connection, _pending: handlers.Unrecorded) -> bool:
        await sending.wait()
        raise RuntimeError("the database went away for this sender")

    try:
        with pytest.raises(ExceptionGroup) as failed:
            await handlers.deliver_forever(runtime, "email", [slow, broken])
        assert failed.group_contains(RuntimeError)
        assert not recorded.is_set()  # the slow send is still going on
        lent = await pids_lent(pool)
        assert lent and slow_pid[0] not in lent
        answered.set()
        await asyncio.wait_for(recorded.wait(), 5)
        for _ in range(50):  # given back once its transaction ends
            if slow_pid[0] in await pids_lent(pool):
                break
        else:
            pytest.fail("the sender's connection never came back to the pool")
    finally:
        answered.set()
        await pool.close()


async def test_a_row_whose_lock_went_with_a_dying_connection_is_not_sent_twice(
        database: str) -> None:
    """When the database goes away, a sender's row lock goes with its connection at once; a
    sender whose connection lives a moment longer can then lock the row the first one is
    sending. `Unrecorded.claim` makes it leave it (seen in CI: an email sent twice as the
    database stopped)."""
    conn = await db.connect(database)
    for schema, package in (("notify", "services.runtime"), ("notify", "services.notify")):
        await db.migrate(conn, schema, package)
    await conn.execute(
        "INSERT INTO notify.notifications (id, event_id, referral_id, person_id, recipient_org,"
        " channel, address, subject, body) VALUES ($1, 'e1', $2, $2, 'mission-locale', 'email',"
        " 'accueil@mission-locale.example.org', 'Orientation', 'Bonjour')",
        uuid.uuid4(), uuid.uuid4())
    pending = handlers.Unrecorded()
    first, second = pending.one_delivery(), pending.one_delivery()
    sending, other = await db.connect(database), await db.connect(database)
    try:
        skip = second.skip()  # read before the first sender's lock, as a sender may
        await sending.execute("BEGIN")
        row = await store.lock_next_due(sending, "email", first.skip())
        assert row is not None and first.claim(row["id"])
        async with other.transaction():  # while the first holds it: locked, skipped
            assert await store.lock_next_due(other, "email", skip) is None
        # (with a timeout, it returns once the backend is gone, its locks with it)
        assert await conn.fetchval("SELECT pg_terminate_backend($1, 10000)",
                                   sending.get_server_pid())
        async with other.transaction():  # its lock gone with its connection
            again = await store.lock_next_due(other, "email", skip)
            assert again is not None and again["id"] == row["id"]
            assert not second.claim(again["id"])  # the first sender is still sending it
            assert await store.lock_next_due(other, "email", second.skip()) is None
        first.done()  # its delivery over, not accepted: it may be sent again
        assert second.claim(row["id"])
        second.done()
        async def record(_conn: asyncpg.Connection) -> None:
            return None

        pending.one_delivery().accepted(row["id"], record)
        assert not pending.one_delivery().claim(row["id"])  # accepted, awaiting its recording
    finally:
        sending.terminate()
        await other.close()
        await conn.close()
