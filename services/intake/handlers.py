"""Intake handlers: keep the consents in view, to know who may read a person's data."""

from __future__ import annotations

import asyncpg

from schemas.events import (
    CONSENT_EXPIRED,
    CONSENT_GRANTED,
    CONSENT_WITHDRAWN,
    ConsentChangedV1,
    ConsentGrantedV1,
)
from services.intake import store
from services.runtime.app import Runtime
from services.runtime.consumer import Handler
from services.runtime.events import Event


def handler(_runtime: Runtime) -> Handler:
    async def handle(conn: asyncpg.Connection, event: Event) -> None:
        if event.type == CONSENT_GRANTED:
            consent = ConsentGrantedV1.model_validate(event.data)
            await store.upsert_consent(conn, consent.model_dump())
        elif event.type in (CONSENT_WITHDRAWN, CONSENT_EXPIRED):
            change = ConsentChangedV1.model_validate(event.data)
            await store.narrow_consent(conn, change.consent_id, change.person_id,
                                       list(change.purposes), change.recipients, change.status)

    return handle
