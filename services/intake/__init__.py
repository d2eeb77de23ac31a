"""The intake service: contacts recorded at permanences, signals from the network, and the
identity vault."""

from __future__ import annotations

import base64
import os

from services import directory as reference
from services.intake import api, handlers, store, vault
from services.intake.directory import publish
from services.runtime.app import ConsumerSpec, Runtime, ServiceSpec
from services.runtime.logging import get_logger

log = get_logger("relais.intake")


async def load_master_key(runtime: Runtime) -> None:
    """RELAIS_MASTER_KEY, or a key made once in the data directory (back it up: without it,
    the sealed identities cannot be read)."""
    settings = runtime.settings
    if settings.master_key:
        runtime.app[api.MASTER_KEY] = vault.load_master_key(settings.master_key)
        return
    path = settings.data_dir / "keys" / "master.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(base64.b64encode(vault.new_person_key()).decode())
        log.warning("master_key_created", path=str(path),
                    advice="set RELAIS_MASTER_KEY in production and keep a copy safe")
    runtime.app[api.MASTER_KEY] = vault.load_master_key(path.read_text().strip())


async def first_directory(runtime: Runtime) -> None:
    """On the very first start, the directory file (the demo territory by default)."""
    async with runtime.pool.acquire() as conn, conn.transaction():
        await conn.execute("LOCK TABLE intake.directory IN EXCLUSIVE MODE")
        if await store.directory(conn) is None:
            await publish(conn, reference.load(runtime.settings.directory_file))


async def start(runtime: Runtime) -> None:
    await load_master_key(runtime)
    await first_directory(runtime)


SPEC = ServiceSpec(
    name="intake", package="services.intake", produces=("relais.intake",), routes=api.routes,
    consumers=(ConsumerSpec("intake", ("relais.consent",), handlers.handler),),
    on_start=start,
)
