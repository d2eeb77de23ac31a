"""The notify service: counsellors told at once, nothing sent twice."""

from __future__ import annotations

from aiohttp import web

from services import directory
from services.notify import api, handlers, live, settings_pages, store
from services.runtime.app import ConsumerSpec, Runtime, ServiceSpec
from services.runtime.pruning import Prune


async def load_recipients(runtime: Runtime) -> None:
    """Bootstrap only: once there are recipients, the directory_updated events keep them."""
    if not await store.has_recipients(runtime.pool):
        await store.upsert_recipients(runtime.pool,
                                      directory.load(runtime.settings.directory_file))


def routes(app: web.Application) -> None:
    app[handlers.UNRECORDED] = {}
    api.routes(app)
    settings_pages.routes(app)


SPEC = ServiceSpec(
    name="notify",
    package="services.notify",
    produces=("relais.notification",),
    routes=routes,
    consumers=(ConsumerSpec("notify", ("relais.referral", "relais.intake"), handlers.handler),),
    workers=(handlers.email_sender, handlers.webhook_sender),
    per_instance=(live.listener, live.counted),
    prunes=(Prune("deliveries", "at", "retention_notifications_days"),
            Prune("notifications", "created_at", "retention_notifications_days",
                  keep="t.status = 'pending' OR EXISTS (SELECT 1 FROM notify.deliveries d "
                       "WHERE d.notification_id = t.id)")),
    on_start=load_recipients,
)
