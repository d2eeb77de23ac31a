"""Intake handlers: keep the consents in view, to know who may read a person's data."""

from __future__ import annotations

import asyncpg

from schemas.events import CONSENT_GRANTED, ConsentGrantedV1
from services.intake import store
from services.runtime.app import Runtime
from services.runtime.consumer import Handler
from services.runtime.events import Event


def handler(_runtime: Runtime) -> Handler:
    async def handle(conn: asyncpg.Connection, event: Event) -> None:
        if event.type == CONSENT_GRANTED:
            consent = ConsentGrantedV1.model_validate(event.data)
            await store.upsert_consent(conn, consent.model_dump())

    return handle
