"""The intake service: contacts recorded at permanences, signals from the network, and the
identity vault."""

from __future__ import annotations

import asyncio

from aiohttp import web

from services import directory as reference
from services.intake import (
    api,
    calendar_api,
    directory_api,
    erasure,
    export,
    handlers,
    offline_pages,
    pages,
    relay_pages,
    rights,
    store,
    vault,
)
from services.intake.directory import publish
from services.runtime.app import ConsumerSpec, Runtime, ServiceSpec
from services.runtime.failures import CannotStart
from services.runtime.pruning import Prune
from services.runtime.sealing import SealedColumn


async def load_master_key(runtime: Runtime) -> None:
    runtime.app[api.MASTER_KEY] = runtime.keyring()


async def first_directory(runtime: Runtime) -> None:
    """On the very first start, the directory file (the demo territory by default)."""
    async with runtime.pool.acquire() as conn, conn.transaction():
        await conn.execute("LOCK TABLE intake.directory IN EXCLUSIVE MODE")
        if await store.directory(conn) is None:
            await publish(conn, reference.load(runtime.settings.directory_file))


async def erasures_made_again(runtime: Runtime) -> None:
    """Before serving: the erasures of the ledger that the database does not show (a backup
    from before them restored) made again."""
    ledger = runtime.app[api.LEDGER] = erasure.Ledger(runtime.settings.erasure_ledger_path)
    try:
        await erasure.replay(runtime.pool, ledger)
    except OSError as unusable:
        raise CannotStart(f"the erasure ledger {ledger.path} cannot be read or written "
                          f"({unusable.strerror or unusable}): set RELAIS_ERASURE_LEDGER to a "
                          "file on storage every intake process shares") from unusable


async def erase_past_retention(runtime: Runtime) -> None:
    """Every RELAIS_RETENTION_INTERVAL (a day), erase the people past their retention period
    (services/intake/retention.py)."""
    while True:
        await erasure.apply_retention(runtime.pool, runtime.app[api.LEDGER],
                                      await retention_months(runtime), runtime.clock())
        await asyncio.sleep(runtime.settings.retention_interval)


async def retention_months(runtime: Runtime) -> dict[str, int]:
    directory = await runtime.app[api.DIRECTORY].get(runtime.pool)
    return {o.id: o.retention_months for o in directory.organisations}


async def start(runtime: Runtime) -> None:
    await load_master_key(runtime)
    await first_directory(runtime)
    await erasures_made_again(runtime)


def routes(app: web.Application) -> None:
    api.routes(app)
    directory_api.routes(app)
    export.routes(app)
    rights.routes(app)
    calendar_api.routes(app)
    pages.routes(app)
    relay_pages.routes(app)
    offline_pages.routes(app)


SPEC = ServiceSpec(
    name="intake", package="services.intake", produces=("relais.intake",), routes=routes,
    consumers=(ConsumerSpec("intake", ("relais.consent", "relais.referral"), handlers.handler),),
    workers=(erase_past_retention,),
    prunes=(Prune("access_log", "at", "retention_access_log_days"),),
    sealed=(SealedColumn("people", "person_id", "wrapped_key", vault.CONTEXT),
            SealedColumn("signals", "id", "hint", api.HINT_CONTEXT)),
    on_start=start,
)
