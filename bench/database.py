"""The PostgreSQL server a benchmark runs on: DATABASE_URL's, or an embedded one of its own."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from services.runtime.embedded import EmbeddedPostgres, ensure_database


@contextmanager
def server(work: Path) -> Iterator[str]:
    """The admin URL of the server, stopped afterwards if this started it."""
    admin_url = os.environ.get("DATABASE_URL")
    if admin_url is not None:
        yield admin_url
        return
    embedded = EmbeddedPostgres(work / "postgres")
    try:
        yield asyncio.run(embedded.start())
    finally:
        embedded.stop()


async def new_database(admin_url: str, name: str) -> str:
    """Create the database `name` on the server and return its URL."""
    await ensure_database(admin_url, name)
    return urlunsplit(urlsplit(admin_url)._replace(path=f"/{name}"))
