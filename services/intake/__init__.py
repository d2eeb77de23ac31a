"""The intake service: contacts recorded at permanences and signals from the network."""

from __future__ import annotations

from services.intake import api
from services.runtime.app import ServiceSpec

SPEC = ServiceSpec(name="intake", package="services.intake", produces=("relais.intake",),
                   routes=api.routes)
