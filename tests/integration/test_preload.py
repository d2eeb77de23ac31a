"""The generator of two years of a territory (bench/preload.py, issue #12 point 4), at a tiny
scale: the services start on what it wrote (their start-up checks pass), take a complete
flow, replay none of the old bus records, and the trail it wrote is a valid one (chained
entries, a signed checkpoint the checkpointer goes on from)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg

from bench import preload
from services.auth.api import KEYS
from services.consent import trail, trail_store
from services.runtime import db
from services.runtime.settings import Settings
from tests.conftest import wait_until
from tests.e2e.conftest import Tokens
from tests.integration.conftest import running
from tests.integration.test_consent import consent, grant, met

SCHEMAS = ("intake", "consent", "referral", "notify")


def test_its_entries_are_the_trail_s_canonical_ones() -> None:
    at = datetime(2025, 3, 4, 5, 6, 7, 890, tzinfo=UTC)
    fields = {"consent_id": str(uuid.uuid4()), "person_id": str(uuid.uuid4()),
              "org": "equipe-aller-vers", "purposes": ["referral_partner"],
              "recipients": ["mission-locale"], "categories": ["needs"]}
    for prev in (None, b"\x01" * 32):
        assert preload.entry_bytes(7, prev, at.isoformat(), "consent.granted", fields) == (
            trail.encode_entry(7, prev, at, "consent.granted", fields))


async def test_a_preloaded_territory_starts_and_takes_a_flow(database: str,
                                                             settings: Settings) -> None:
    written = await preload.preload(database, 200, 200, 500, say=lambda _: None)
    plan = preload.Plan(200, 200, 500)
    assert written["intake.intakes"] == written["referral.intakes"] == 200
    assert written["consent.trail"] == 200
    assert written["relais_bus.records"] == 500
    assert written["referral.referrals"] == written["consent.consents"] == plan.consents == 140
    assert written["notify.notifications"] == 2 * len(plan.notified()) > 0

    async with running(settings) as client:  # every on_start hook on the preloaded data
        tokens = Tokens(await client.app[KEYS].signing(), settings)
        person = await met(client, tokens)
        await grant(client, tokens, consent(person))
        conn: asyncpg.Connection = await db.connect(database)
        try:
            async def requested() -> bool:
                return bool(await conn.fetchval(
                    "SELECT count(*) FROM referral.referrals WHERE person_id = $1"
                    " AND status = 'requested'", uuid.UUID(person)))

            async def signed() -> bool:  # the checkpointer goes on from the preloaded head
                return bool(await conn.fetchval(
                    "SELECT max(size) FROM consent.checkpoints") == 201)

            await wait_until(requested, what="the new referral handed off")
            await wait_until(signed, what="a checkpoint of the trail with the new consent")
        finally:
            await conn.close()

    conn = await db.connect(database)
    try:
        for schema in SCHEMAS:  # no consumer read the old records again
            assert not await conn.fetchval(
                f"SELECT count(*) FROM {schema}.inbox WHERE event_id LIKE 'preload-bus-%'")
        assert await conn.fetchval(  # nor were they pruned (within the bus's retention)
            "SELECT count(*) FROM relais_bus.records WHERE headers::text LIKE"
            " '%preload-bus-%'") == 500
        assert await conn.fetchval(
            "SELECT count(*) FROM intake.intakes") == 201  # no one erased
    finally:
        await conn.close()
    pool = await db.create_pool(database, 2)
    try:
        report = trail.verify([line async for line in trail_store.export_lines(pool)])
    finally:
        await pool.close()
    assert report.ok, report.problem
    assert (report.entries, report.checkpoints) == (201, 2)
