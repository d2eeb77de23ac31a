"""Consent handlers: every read of personal data, wherever it happened, goes into the
trail; the directory's names of organisations are kept for the person's page (and the list of
the organisations a consent may name is read again); and the worker that signs checkpoints."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg

from schemas.events import (
    CONSENT_WITHDRAWN,
    DIRECTORY_UPDATED,
    PERSON_RECTIFIED,
    PERSON_RESTRICTED,
    PERSON_RESTRICTION_LIFTED,
    PERSONAL_DATA_READ,
    REFERRAL_DOSSIER_READ,
    PersonRestrictedV1,
    PersonRestrictionLiftedV1,
)
from services.consent import domain, lifecycle, recipients, store, trail_store
from services.runtime.app import Runtime
from services.runtime.consumer import Handler
from services.runtime.events import Event


async def restrict(conn: asyncpg.Connection, asked: PersonRestrictedV1,
                   data: dict[str, object]) -> None:
    """A restriction or objection: on the trail, every live consent withdrawn whole (so the
    referrals stop and their recipients are told, as for any withdrawal), none recorded until
    it is lifted."""
    await store.set_restricted(conn, asked.person_id, asked.at)
    await trail_store.append(conn, [("person.restricted", asked.person_id, data)])
    for row in await store.active_consents_of(conn, asked.person_id):
        change = domain.withdraw(row["purposes"], row["recipients"], [], [])
        await lifecycle.apply_change(conn, row, "withdrawn", CONSENT_WITHDRAWN, change,
                                     asked.org, "person", asked.channel)


def handler(runtime: Runtime) -> Handler:
    async def handle(conn: asyncpg.Connection, event: Event) -> None:
        if event.type in (PERSONAL_DATA_READ, REFERRAL_DOSSIER_READ):
            await trail_store.append(conn, [("personal_data.read",
                                             uuid.UUID(event.data["person_id"]), event.data)])
        elif event.type == PERSON_RECTIFIED:
            await trail_store.append(conn, [("personal_data.rectified",
                                             uuid.UUID(event.data["person_id"]), event.data)])
        elif event.type == PERSON_RESTRICTED:
            await restrict(conn, PersonRestrictedV1.model_validate(event.data), event.data)
        elif event.type == PERSON_RESTRICTION_LIFTED:
            lifted = PersonRestrictionLiftedV1.model_validate(event.data)
            await store.set_restricted(conn, lifted.person_id, None)
            await trail_store.append(conn, [("person.restriction_lifted", lifted.person_id,
                                             event.data)])
        elif event.type == DIRECTORY_UPDATED:  # the names the person's page shows
            await store.keep_names(conn, {o["id"]: o["name"] for o in
                                          event.data["directory"].get("organisations", [])})
            if recipients.KNOWN in runtime.app:
                runtime.app[recipients.KNOWN].forget()

    return handle


async def expirer(runtime: Runtime) -> None:
    """Consents past their date expire on their own (and say so)."""
    while True:
        if await lifecycle.expire_due(runtime.pool) == 0:
            await asyncio.sleep(runtime.settings.expiry_interval)


async def checkpointer(runtime: Runtime) -> None:
    master = runtime.keyring()
    await trail_store.signing_key(runtime.pool, master)
    while True:
        await trail_store.checkpoint(runtime.pool, master)
        await asyncio.sleep(runtime.settings.checkpoint_interval)
