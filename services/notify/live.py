"""The live inbox's plumbing: one PostgreSQL LISTEN connection per process, whatever the
number of open streams, fanned out to the streams of the organisation each notification is
for; and the streams a client and an organisation may hold open at once, counted across every
instance (`notify.open_streams`: each instance says every ALIVE_EVERY seconds that its streams
are open; those of an instance that died stop counting after STALE seconds)."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field

import asyncpg
from aiohttp import web

from services.notify import domain, store
from services.runtime import db
from services.runtime.app import Runtime
from services.runtime.logging import get_logger

log = get_logger("relais.notify.live")
RECONNECT = 1.0
"""Seconds before listening again after the connection was lost or refused."""
ALIVE_EVERY = 10.0
"""Seconds between an instance's sayings that its streams are still open."""
STALE = 30.0
"""Seconds after which a stream no instance said was open stops counting."""


class TooManyStreams(Exception):
    """One stream more than a client or its organisation may hold (the reason)."""


@dataclass(eq=False)
class Stream:
    id: uuid.UUID
    org: str
    client_id: str
    page: bool = False
    """A console page's live list (counted apart from the API's streams: a person's open tabs
    never take the places of the organisation's integration)."""
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when the stream has something to read, or should end (the hub stops)."""


class InboxHub:
    """The open streams of this process, and the one listener that wakes them."""

    def __init__(self) -> None:
        self.streams: dict[str, set[Stream]] = {}
        self.stopping = False

    async def open(self, pool: asyncpg.Pool, org: str, client_id: str, max_per_client: int,
                   max_per_org: int, page: bool = False) -> Stream:
        """A stream held open until `close`; TooManyStreams beyond the caps, counted across
        the instances (the organisation's apart for pages and for the API)."""
        stream = Stream(uuid.uuid4(), org, client_id, page)
        refused = await store.open_stream(
            pool, stream.id, org, client_id, page, STALE,
            lambda client, alike: domain.stream_refused(client, alike, max_per_client,
                                                        max_per_org))
        if refused:
            raise TooManyStreams(refused)
        self.streams.setdefault(org, set()).add(stream)
        return stream

    async def close(self, pool: asyncpg.Pool, stream: Stream) -> None:
        group = self.streams.get(stream.org, set())
        if stream not in group:
            return
        group.discard(stream)
        if not group:
            del self.streams[stream.org]
        try:
            await store.close_stream(pool, stream.id)
        except Exception as exc:  # not seen again, it stops counting after STALE seconds
            if not db.unavailable(exc):
                raise
            log.warning("inbox_stream_close_unrecorded", error=repr(exc))

    async def keep_counted(self, pool: asyncpg.Pool) -> None:
        """Forever: say every ALIVE_EVERY seconds that this instance's streams are open."""
        while True:
            await asyncio.sleep(ALIVE_EVERY)
            await store.streams_seen(pool, [(s.id, s.org, s.client_id, s.page)
                                            for group in self.streams.values()
                                            for s in group], STALE)

    def wake(self, org: str | None = None) -> None:
        """Wake the streams of an organisation (of every one when None)."""
        groups = self.streams.values() if org is None else [self.streams.get(org, set())]
        for group in groups:
            for stream in group:
                stream.wake.set()

    async def stop(self, _app: web.Application | None = None) -> None:
        """End every stream (when the service stops: they would hold its stop up)."""
        self.stopping = True
        self.wake()

    def _notified(self, _conn: object, _pid: int, _channel: str, org: str) -> None:
        self.wake(org)

    async def listen(self, dsn: str) -> None:
        """Forever: LISTEN on one connection, opened again when it is lost. Each time it is
        (re)opened every stream looks again, for what was written while none listened."""
        while True:
            try:
                conn = await db.connect(dsn)
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("inbox_listener_unavailable", error=repr(exc), retry_in=RECONNECT)
                await asyncio.sleep(RECONNECT)
                continue
            lost = asyncio.Event()
            try:
                conn.add_termination_listener(lambda _conn, lost=lost: lost.set())
                await conn.add_listener(store.INBOX_CHANNEL, self._notified)
                self.wake()
                await lost.wait()
                log.warning("inbox_listener_lost", retry_in=RECONNECT)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("inbox_listener_lost", error=repr(exc), retry_in=RECONNECT)
            finally:
                if not conn.is_closed():
                    await conn.close(timeout=5)
            self.wake()
            await asyncio.sleep(RECONNECT)


HUB = web.AppKey("notify_inbox_hub", InboxHub)


def install(app: web.Application) -> None:
    """The app's hub; its streams end when the app shuts down."""
    app[HUB] = InboxHub()
    app.on_shutdown.append(app[HUB].stop)


async def listener(runtime: Runtime) -> None:
    """The notify service's worker that keeps the hub listening."""
    await runtime.app[HUB].listen(runtime.dsn)


async def counted(runtime: Runtime) -> None:
    """The notify service's worker that keeps this instance's streams counted."""
    await runtime.app[HUB].keep_counted(runtime.pool)
