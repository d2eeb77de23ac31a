"""The referral service's SQL."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg

from services.directory import Directory
from services.referral.domain import ConsentScope, Partner

SCHEMA = "referral"


async def upsert_partners(conn: asyncpg.Connection | asyncpg.Pool, directory: Directory) -> None:
    await conn.executemany(
        "INSERT INTO referral.partners (id, name, kind, needs, communes, min_age, max_age,"
        " answer_days) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO UPDATE SET"
        " name = EXCLUDED.name, kind = EXCLUDED.kind, needs = EXCLUDED.needs,"
        " communes = EXCLUDED.communes, min_age = EXCLUDED.min_age,"
        " max_age = EXCLUDED.max_age, answer_days = EXCLUDED.answer_days",
        [
            (o.id, o.name, o.kind, [str(n) for n in o.needs], o.communes, o.min_age, o.max_age,
             o.answer_days)
            for o in directory.organisations
        ],
    )


async def has_partners(pool: asyncpg.Pool) -> bool:
    return bool(await pool.fetchval("SELECT EXISTS (SELECT 1 FROM referral.partners)"))


async def partners(conn: asyncpg.Connection) -> list[Partner]:
    rows = await conn.fetch(
        "SELECT id, needs, communes, min_age, max_age FROM referral.partners"
    )
    return [
        Partner(r["id"], frozenset(r["needs"]), frozenset(r["communes"]), r["min_age"],
                r["max_age"])
        for r in rows
    ]


async def insert_referral(
    conn: asyncpg.Connection, referral_id: UUID, person_id: UUID, intake_id: UUID,
    sender_org: str, target: str, purpose: str, status: str, explanation: dict[str, Any],
) -> bool:
    """False when the intake already has its referral."""
    inserted = await conn.fetchval(
        "INSERT INTO referral.referrals (id, person_id, intake_id, sender_org, target, purpose,"
        " status, explanation) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        " ON CONFLICT (intake_id) DO NOTHING RETURNING true",
        referral_id, person_id, intake_id, sender_org, target, purpose, status, explanation,
    )
    if inserted:
        await add_history(conn, referral_id, status, "relais", explanation.get("rule"))
    return bool(inserted)


async def add_history(conn: asyncpg.Connection, referral_id: UUID, status: str, actor: str,
                      reason: str | None) -> None:
    await conn.execute(
        "INSERT INTO referral.referral_history (referral_id, status, actor, reason)"
        " VALUES ($1, $2, $3, $4)",
        referral_id, status, actor, reason,
    )


async def awaiting_consent(conn: asyncpg.Connection, person_id: UUID) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT * FROM referral.referrals WHERE person_id = $1 AND status = 'awaiting_consent'"
        " ORDER BY created_at FOR UPDATE",
        person_id,
    )
    return rows


async def mark_requested(conn: asyncpg.Connection, referral_id: UUID, consent_id: UUID) -> None:
    await conn.execute(
        "UPDATE referral.referrals SET status = 'requested', consent_id = $2, updated_at = now()"
        " WHERE id = $1",
        referral_id, consent_id,
    )
    await add_history(conn, referral_id, "requested", "relais", f"consent {consent_id}")


async def upsert_consent(conn: asyncpg.Connection, person_id: UUID, scope: ConsentScope) -> None:
    await conn.execute(
        "INSERT INTO referral.consents (consent_id, person_id, purposes, recipients,"
        " valid_until, status) VALUES ($1, $2, $3, $4, $5, 'active')"
        " ON CONFLICT (consent_id) DO NOTHING",
        scope.consent_id, person_id, sorted(scope.purposes), sorted(scope.recipients),
        scope.valid_until,
    )


async def narrow_consent(conn: asyncpg.Connection, consent_id: UUID, person_id: UUID,
                         purposes: list[str], recipients: list[str], status: str) -> None:
    """After a withdrawal or an expiry the gate opens only for what remains (cancelling the
    referrals it covered is the closed loop's work, issue #5). Arriving before its grant, it
    leaves a closed record so that the late grant opens nothing."""
    await conn.execute(
        "INSERT INTO referral.consents (consent_id, person_id, purposes, recipients,"
        " valid_until, status) VALUES ($1, $2, $3, $4, now(), $5)"
        " ON CONFLICT (consent_id) DO UPDATE SET purposes = $3, recipients = $4, status = $5",
        consent_id, person_id, purposes, recipients, status)


async def consents_of(conn: asyncpg.Connection, person_id: UUID) -> list[ConsentScope]:
    rows = await conn.fetch("SELECT * FROM referral.consents WHERE person_id = $1", person_id)
    return [
        ConsentScope(r["consent_id"], frozenset(r["purposes"]), frozenset(r["recipients"]),
                     r["valid_until"], r["status"] == "active")
        for r in rows
    ]


async def get_referral(pool: asyncpg.Pool, referral_id: UUID, org: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await pool.fetchrow(
        "SELECT * FROM referral.referrals WHERE id = $1 AND (sender_org = $2 OR target = $2)",
        referral_id, org,
    )
    return row


async def list_referrals(pool: asyncpg.Pool, org: str, intake_id: UUID | None,
                         limit: int) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await pool.fetch(
        "SELECT * FROM referral.referrals WHERE (sender_org = $1 OR target = $1)"
        " AND ($2::uuid IS NULL OR intake_id = $2) ORDER BY created_at DESC, id LIMIT $3",
        org, intake_id, limit,
    )
    return rows
