"""The referral service: routing, the consent gate, the closed loop of statuses."""

from __future__ import annotations

from aiohttp import web

from services import directory
from services.referral import (
    api,
    commission_pages,
    coordination_pages,
    directory_pages,
    handlers,
    pages,
    routing,
    stats_pages,
    store,
)
from services.runtime.app import ConsumerSpec, Runtime, ServiceSpec


async def load_partners(runtime: Runtime) -> None:
    """Bootstrap only: once there are partners, the directory_updated events keep them."""
    routing.load_rules(runtime.settings.routing_rules_file)  # a bad rules file stops the start
    if not await store.has_partners(runtime.pool):
        await store.upsert_partners(runtime.pool, directory.load(runtime.settings.directory_file))


def routes(app: web.Application) -> None:
    api.routes(app)
    pages.routes(app)
    commission_pages.routes(app)
    coordination_pages.routes(app)
    directory_pages.routes(app)
    stats_pages.routes(app)


SPEC = ServiceSpec(
    name="referral",
    package="services.referral",
    produces=("relais.referral",),
    routes=routes,
    consumers=(ConsumerSpec("referral", ("relais.intake", "relais.consent"), handlers.handler),),
    workers=(handlers.chaser,),
    on_start=load_partners,
)
