"""The consent service: explicit, granular, revocable consent."""

from __future__ import annotations

import hashlib
from importlib import resources

from aiohttp import web

from services.consent import (
    api,
    handlers,
    outreach,
    pages,
    person_pages,
    receipt,
    store,
    trail,
    trail_store,
)
from services.runtime.app import ConsumerSpec, Runtime, ServiceSpec
from services.runtime.sealing import SealedColumn

DEMO_NOTICE = "2026-01"


async def first_notice(runtime: Runtime) -> None:
    """The demo notice, registered on the very first start."""
    text = resources.files(__package__).joinpath(f"notice-{DEMO_NOTICE}.txt").read_text("utf-8")
    async with runtime.pool.acquire() as conn:
        await store.insert_notice(conn, DEMO_NOTICE, "fr", text,
                                  hashlib.sha256(text.encode()).digest(), "relais")


async def start(runtime: Runtime) -> None:
    await first_notice(runtime)
    master = runtime.keyring()
    await trail_store.seal_keys_in_clear(runtime.pool, master)
    # The checkpoint key made (and published at /v1/audit/keys) before the first request, not
    # when the checkpointer, which waits for its lease, first runs.
    await trail_store.signing_key(runtime.pool, master)
    runtime.app[person_pages.KEYS] = receipt.keys(master)
    runtime.app[outreach.MASTER] = master


def routes(app: web.Application) -> None:
    api.routes(app)
    pages.routes(app)
    outreach.routes(app)
    person_pages.routes(app)


SPEC = ServiceSpec(
    name="consent", package="services.consent", produces=("relais.consent",),
    routes=routes,
    consumers=(ConsumerSpec("consent", ("relais.intake", "relais.referral"),
                            handlers.handler),),
    workers=(handlers.checkpointer, handlers.expirer),
    sealed=(SealedColumn("audit_keys", "kid", "sealed_key", trail.KEY_CONTEXT, "text"),),
    on_start=start,
)
