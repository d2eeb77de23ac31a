"""The directory as the intake service keeps it: stored, published, and cached for the checks
on each intake (a few seconds stale at most when changed by another process)."""

from __future__ import annotations

import time

import asyncpg

from schemas.events import DIRECTORY_UPDATED, DirectoryUpdatedV1
from services import directory as reference
from services.intake import store
from services.runtime import outbox
from services.runtime.events import new_event

SOURCE = "/relais/intake"
SUBJECT = "directory"
FRESH_FOR = 5.0


async def publish(conn: asyncpg.Connection, document: reference.Directory) -> int:
    """Store a new version and its event, in the caller's transaction."""
    data = document.model_dump(mode="json")
    version = await store.save_directory(conn, data)
    await outbox.add(conn, store.SCHEMA, [new_event(
        DIRECTORY_UPDATED, SOURCE, SUBJECT, DirectoryUpdatedV1(version=version, directory=data))])
    return version


class CachedDirectory:
    def __init__(self) -> None:
        self._value: reference.Directory | None = None
        self._at = -FRESH_FOR

    async def get(self, db: asyncpg.Pool | asyncpg.Connection) -> reference.Directory:
        if self._value is None or time.monotonic() - self._at > FRESH_FOR:
            row = await store.directory(db)
            self._value = (reference.Directory.model_validate(row["document"]) if row
                           else reference.Directory(organisations=[]))
            self._at = time.monotonic()
        return self._value

    def forget(self) -> None:
        self._value = None
