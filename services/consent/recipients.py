"""The organisations a consent may name: those of the directory now.

They are asked of the intake service, which owns the directory (`GET /v1/directory`, as the
caller, through `peers`), and kept a few seconds; a name the list kept does not hold is
looked up again in a fresh read before it is refused, and the list is dropped as soon as
this process sees a `directory_updated` event.

Why not a copy kept from the `directory_updated` events alone (as `consent.organisations`
keeps the names the person's page shows): a copy made of events lags the directory (a partner
just added would be refused until its event arrives: at the very first start, every one of
them), and it is only as complete as the events this consumer saw (one that joined after
the directory was loaded, or a Kafka topic past its retention, never sees it; and
`consent.organisations` keeps the organisations that left, by design). The intake service is
asked on every consent anyway, who met the person (`api.may_record`): asking it the
directory too adds no new dependency, and the cache keeps that to one call every
`FRESH_FOR` seconds. So a partner added a moment ago is never refused, and one removed is
refused within `FRESH_FOR` seconds at most (at once in the process that sees the event)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

from aiohttp import web

from services.runtime import peers

FRESH_FOR = 5.0
"""Seconds the directory's list of organisations is used before it is read again (the
intake service's own checks use its directory as long)."""


class KnownOrganisations:
    """The ids of the directory's organisations, read from the intake service."""

    def __init__(self) -> None:
        self._ids: frozenset[str] = frozenset()
        self._read_at: float | None = None
        self._reading = asyncio.Lock()

    def forget(self) -> None:
        """The directory changed: read it again at the next question."""
        self._read_at = None

    async def unknown(self, request: web.Request, names: Iterable[str]) -> list[str]:
        """The names that are no organisation of the directory, in their order (asked as the
        caller of `request`; a `Problem` 503 when the intake service does not answer)."""
        wanted = list(dict.fromkeys(names))
        if self._fresh() and all(name in self._ids for name in wanted):
            return []
        await self._read(request, self._read_at)
        return [name for name in wanted if name not in self._ids]

    def _fresh(self) -> bool:
        return self._read_at is not None and time.monotonic() - self._read_at <= FRESH_FOR

    async def _read(self, request: web.Request, seen: float | None) -> None:
        """Read the directory again, unless another request did while this one waited (then
        its reading serves both)."""
        async with self._reading:
            if self._read_at != seen and self._fresh():
                return
            directory = await peers.directory(request)
            self._ids = frozenset(o.id for o in directory.organisations) if directory \
                else frozenset()
            self._read_at = time.monotonic()


KNOWN = web.AppKey("consent_known_organisations", KnownOrganisations)


def install(app: web.Application) -> None:
    """The app's list (once, whichever of the API and the pages asks first)."""
    if KNOWN not in app:
        app[KNOWN] = KnownOrganisations()
