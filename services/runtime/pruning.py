"""Pruning (issue #14): the records each service keeps only for a while (access logs,
notifications and their delivery attempts, idempotency records, the consumers' inbox rows)
deleted once past their period, once a day (RELAIS_RETENTION_INTERVAL), in small batches so
that writers never wait long.

A service declares what it prunes (`ServiceSpec.prunes`); every service prunes its
idempotency records and its inbox (`EVERY_SERVICE`). The consent trail is never pruned: it
stays whole and verifiable."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from services.runtime.logging import get_logger
from services.runtime.settings import Settings

log = get_logger("relais.pruning")
BATCH = 1000


@dataclass(frozen=True)
class Prune:
    table: str
    """In the service's schema."""
    column: str
    """The row's time: it goes once this is older than the period."""
    days: str
    """The Settings field giving the period, in days."""
    keep: str = ""
    """SQL: the rows kept whatever their age (e.g. a notification still to send)."""

    def period(self, settings: Settings) -> timedelta:
        days = getattr(settings, self.days)
        assert isinstance(days, int)
        return timedelta(days=days)


IDEMPOTENCY = Prune("idempotency_keys", "created_at", "retention_idempotency_days")
INBOX = Prune("inbox", "processed_at", "retention_inbox_days")
"""The event ids each consumer handled: kept longer than any event can come again (the event
log's retention, a dead letter's; `Settings` checks it)."""
EVERY_SERVICE = (IDEMPOTENCY, INBOX)
"""What every service prunes, besides its own `ServiceSpec.prunes`."""


def statement(schema: str, rule: Prune) -> str:
    """One batch of `rule`'s rows, older than `$1` and not kept, deleted."""
    keep = f" AND NOT ({rule.keep})" if rule.keep else ""
    return (f"DELETE FROM {schema}.{rule.table} WHERE ctid = ANY(ARRAY("
            f"SELECT ctid FROM {schema}.{rule.table} AS t WHERE {rule.column} < $1{keep}"
            f" LIMIT {BATCH}))")


async def prune(pool: asyncpg.Pool, schema: str, rule: Prune, before: datetime) -> int:
    """Delete the rows of `schema.table` older than `before` (and not kept), a batch per
    transaction: how many."""
    batch = statement(schema, rule)
    deleted = 0
    while True:
        status = await pool.execute(batch, before)
        count = int(status.rsplit(" ", 1)[1])
        deleted += count
        if count < BATCH:
            return deleted


async def prune_all(pool: asyncpg.Pool, schema: str, rules: tuple[Prune, ...],
                    settings: Settings, now: datetime) -> dict[str, int]:
    """Every rule of one service at `now`: the rows deleted per table."""
    done = {rule.table: await prune(pool, schema, rule, now - rule.period(settings))
            for rule in rules}
    if any(done.values()):
        log.info("pruned", schema=schema, **done)
    return done
