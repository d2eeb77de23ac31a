"""The queries Relais runs all the time keep to an index as the data grows (issue #12): each is
planned by PostgreSQL with sequential scans off, and its plan must read the index named here,
never a whole table that grows. Dropping one of these indexes, or changing a query (or the
statuses of the partners' load) so that its index no longer serves it, fails this test."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from services.intake import store as intake_store
from services.referral import store as referral_store
from services.runtime import db, outbox, pruning
from services.runtime.settings import Settings
from services.runtime.transport import postgres as bus
from tests.integration.conftest import running

NOW = datetime(2026, 12, 6, tzinfo=UTC)
HOT: dict[str, tuple[str, tuple[Any, ...], str]] = {
    "the partners' load, at every routing": (
        referral_store._PARTNERS + " WHERE p.active ORDER BY p.id", (),
        "referrals_active_by_target"),
    "the timers due (chaser, deadlines)": (
        referral_store.DUE_TIMERS, (NOW, 100), "timers_due"),
    "the relay's unpublished events": (
        outbox.unpublished("referral"), (500,), "outbox_unpublished"),
    "a consumer's next records on the bus": (
        bus._FETCH, (["relais.consent"], [0], [0], 500), "records_pkey"),
    "the people past the retention cut-off, daily": (
        intake_store._LAST_ACTIVITY.format(where=""), (NOW, NOW), "activity_last_at"),
    "the bus's pruning bounds": (
        bus._PRUNE_BELOW, (NOW, NOW), "records_pkey"),
    "a consumer's inbox rows past their period, daily": (
        pruning.statement("referral", pruning.INBOX), (NOW,), "inbox_processed"),
    "the idempotency records past their period, daily": (
        pruning.statement("intake", pruning.IDEMPOTENCY), (NOW,), "idempotency_keys_created"),
}
GROWING = {"referrals", "timers", "outbox", "records", "referral_history", "intakes",
           "activity", "consents", "people", "inbox", "idempotency_keys"}


def scans(plan: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(node type, relation, index) of every node of a JSON plan."""
    found = [(plan["Node Type"], plan.get("Relation Name", ""), plan.get("Index Name", ""))]
    for child in plan.get("Plans", []):
        found += scans(child)
    return found


@pytest.mark.parametrize("name", sorted(HOT))
async def test_a_hot_query_reads_its_index_not_a_growing_table(settings: Settings,
                                                               name: str) -> None:
    query, args, index = HOT[name]
    async with running(settings):  # every schema migrated, the bus set up
        conn: asyncpg.Connection = await db.connect(str(settings.database_url))
        try:
            await conn.execute("SET enable_seqscan = off")
            [row] = await conn.fetch(f"EXPLAIN (FORMAT JSON) {query}", *args)
        finally:
            await conn.close()
    nodes = scans(json.loads(row[0])[0]["Plan"])
    assert index in {i for _, _, i in nodes}, f"{name}: {index} unused in {nodes}"
    whole = [(t, r) for t, r, _ in nodes if t == "Seq Scan" and r in GROWING]
    assert not whole, f"{name}: reads whole tables {whole}"
