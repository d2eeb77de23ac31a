"""Referral handlers: one unit of work per event, correct in any order of arrival
(a consent may come before its intake)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg

from schemas.events import (
    CONSENT_EXPIRED,
    CONSENT_GRANTED,
    CONSENT_WITHDRAWN,
    DIRECTORY_UPDATED,
    INTAKE_RECORDED,
    REFERRAL_CREATED,
    REFERRAL_REQUESTED,
    ConsentChangedV1,
    ConsentGrantedV1,
    DirectoryUpdatedV1,
    IntakeRecordedV1,
    ReferralCreatedV1,
    ReferralRequestedV1,
)
from schemas.vocab import ReferralStatus
from services.directory import Directory
from services.referral import domain, store
from services.runtime import outbox
from services.runtime.app import Runtime
from services.runtime.consumer import Handler
from services.runtime.events import Event, new_event

SOURCE = "/relais/referral"
REFERRAL_IDS = uuid.UUID("6f1d3c1e-5b0a-4c39-9c55-5e0a0f5f7a01")


def handler(_runtime: Runtime) -> Handler:
    async def handle(conn: asyncpg.Connection, event: Event) -> None:
        if event.type == INTAKE_RECORDED:
            await on_intake(conn, IntakeRecordedV1.model_validate(event.data))
        elif event.type == CONSENT_GRANTED:
            await on_consent(conn, ConsentGrantedV1.model_validate(event.data))
        elif event.type in (CONSENT_WITHDRAWN, CONSENT_EXPIRED):
            change = ConsentChangedV1.model_validate(event.data)
            await store.narrow_consent(conn, change.consent_id, change.person_id,
                                       list(change.purposes), change.recipients, change.status)
        elif event.type == DIRECTORY_UPDATED:
            update = DirectoryUpdatedV1.model_validate(event.data)
            await store.upsert_partners(conn, Directory.model_validate(update.directory))

    return handle


async def on_intake(conn: asyncpg.Connection, intake: IntakeRecordedV1) -> None:
    routing = domain.route(
        domain.IntakeFacts(intake.needs, intake.flags, intake.age_bracket, intake.commune),
        await store.partners(conn),
    )
    referral_id = uuid.uuid5(REFERRAL_IDS, str(intake.intake_id))
    created = await store.insert_referral(
        conn, referral_id, intake.person_id, intake.intake_id, intake.org, routing.target,
        routing.purpose, ReferralStatus.awaiting_consent, routing.explanation,
    )
    if not created:
        return
    await outbox.add(conn, store.SCHEMA, [new_event(
        REFERRAL_CREATED, SOURCE, str(intake.person_id),
        ReferralCreatedV1(
            referral_id=referral_id, person_id=intake.person_id, intake_id=intake.intake_id,
            sender_org=intake.org, target=routing.target, purpose=routing.purpose,
            status=ReferralStatus.awaiting_consent, explanation=routing.explanation,
        ),
    )])
    await open_gate(conn, intake.person_id)


async def on_consent(conn: asyncpg.Connection, consent: ConsentGrantedV1) -> None:
    await store.upsert_consent(conn, consent.person_id, domain.ConsentScope(
        consent.consent_id, frozenset(consent.purposes), frozenset(consent.recipients),
        consent.valid_until,
    ))
    await open_gate(conn, consent.person_id)


async def open_gate(conn: asyncpg.Connection, person_id: uuid.UUID) -> None:
    """Hand off every referral of the person waiting for a consent that now covers it."""
    waiting = await store.awaiting_consent(conn, person_id)
    if not waiting:
        return
    consents = await store.consents_of(conn, person_id)
    now = datetime.now(UTC)
    events = []
    for referral in waiting:
        consent_id = domain.covering_consent(referral["target"], referral["purpose"], consents,
                                             now)
        if consent_id is None:
            continue
        await store.mark_requested(conn, referral["id"], consent_id)
        events.append(new_event(REFERRAL_REQUESTED, SOURCE, str(person_id),
                                requested(referral, consent_id)))
    if events:
        await outbox.add(conn, store.SCHEMA, events)


def requested(referral: Any, consent_id: uuid.UUID) -> ReferralRequestedV1:
    return ReferralRequestedV1(
        referral_id=referral["id"], person_id=referral["person_id"],
        intake_id=referral["intake_id"], sender_org=referral["sender_org"],
        target=referral["target"], purpose=referral["purpose"], consent_id=consent_id,
    )
