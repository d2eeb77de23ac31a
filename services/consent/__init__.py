"""The consent service: explicit, granular, revocable consent."""

from __future__ import annotations

from services.consent import api, handlers
from services.runtime.app import ConsumerSpec, ServiceSpec

SPEC = ServiceSpec(
    name="consent", package="services.consent", produces=("relais.consent",),
    routes=api.routes,
    consumers=(ConsumerSpec("consent", ("relais.intake",), handlers.handler),),
    workers=(handlers.checkpointer, handlers.expirer),
)
