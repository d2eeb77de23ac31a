"""Intake handlers: keep the consents in view, to know who may read a person's data, and the
person's last activity seen in the other services for retention: a consent granted, a
referral requested (a consent covers it) or moved by an organisation (not a referral routed at
the contact, which is the contact, nor Relais's own expiries and reminders)."""

from __future__ import annotations

import asyncpg

from schemas.events import (
    CONSENT_EXPIRED,
    CONSENT_GRANTED,
    CONSENT_WITHDRAWN,
    REFERRAL_REQUESTED,
    REFERRAL_STATUS_CHANGED,
    ConsentChangedV1,
    ConsentGrantedV1,
    ReferralEvent,
)
from services.intake import store
from services.runtime.app import Runtime
from services.runtime.consumer import Handler
from services.runtime.events import Event


def handler(_runtime: Runtime) -> Handler:
    async def handle(conn: asyncpg.Connection, event: Event) -> None:
        if event.type == CONSENT_GRANTED:
            consent = ConsentGrantedV1.model_validate(event.data)
            await store.upsert_consent(conn, consent.model_dump(), event.time)
        elif event.type in (CONSENT_WITHDRAWN, CONSENT_EXPIRED):
            change = ConsentChangedV1.model_validate(event.data)
            await store.narrow_consent(conn, change.consent_id, change.person_id,
                                       list(change.purposes), change.recipients, change.status)
        elif event.type in (REFERRAL_REQUESTED, REFERRAL_STATUS_CHANGED):
            referral = ReferralEvent.model_validate(event.data)
            if event.data.get("actor_org", "") != "relais":  # not Relais's own timers
                await store.touch_activity(conn, referral.person_id, event.time)

    return handle
