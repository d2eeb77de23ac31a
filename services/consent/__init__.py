"""The consent service: explicit, granular, revocable consent."""

from __future__ import annotations

from services.consent import api
from services.runtime.app import ServiceSpec

SPEC = ServiceSpec(name="consent", package="services.consent", produces=("relais.consent",),
                   routes=api.routes)
