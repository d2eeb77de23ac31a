"""What happens to a consent after it is granted: withdrawal and expiry (no HTTP here)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg

from schemas.api import ConsentOut
from schemas.events import CONSENT_EXPIRED, ConsentChangedV1
from services.consent import domain, store, trail_store
from services.runtime import outbox
from services.runtime.events import new_event

SOURCE = "/relais/consent"


async def apply_change(conn: asyncpg.Connection, row: Any, kind: str, event_type: str,
                       change: domain.Withdrawal, org: str, requested_by: str | None = None,
                       channel: str | None = None) -> ConsentOut:
    """A withdrawal or an expiry: the new scope, its history row, its event and its trail
    entry, in the caller's transaction."""
    updated = await store.set_scope(conn, row["id"], change.purposes, change.recipients,
                                    change.status)
    await store.add_change(conn, row["id"], kind, change.removed_purposes,
                           change.removed_recipients, org, requested_by, channel)
    data = ConsentChangedV1(
        consent_id=row["id"], person_id=row["person_id"], org=org,
        removed_purposes=change.removed_purposes, removed_recipients=change.removed_recipients,
        purposes=change.purposes, recipients=change.recipients, status=change.status,
        requested_by=requested_by, channel=channel, at=datetime.now(UTC))
    await outbox.add(conn, store.SCHEMA, [new_event(event_type, SOURCE, str(row["person_id"]),
                                                    data)])
    await trail_store.append(conn, [(f"consent.{kind}", row["person_id"],
                                     data.model_dump(mode="json"))])
    return domain.consent_out(updated)


async def expire_due(pool: asyncpg.Pool, limit: int = 100) -> int:
    async with pool.acquire() as conn, conn.transaction():
        rows = await store.lock_expired(conn, limit)
        for row in rows:
            change = domain.Withdrawal(row["purposes"], row["recipients"], [], [], "expired")
            await apply_change(conn, row, "expired", CONSENT_EXPIRED, change, row["org"])
    return len(rows)
