"""How long the daily retention pass takes to find who is due, on two years of data (issue #12,
point 4).

    .venv/bin/python -m bench.retention_pass --intakes 1000000

Preloads a database with `bench.preload` (`--intakes` contacts over 720 days, a trail of the
same size: its consents keep 70 % of the people active for a year), then times, over
`--rounds`, at retention periods of 24, 12 and 6 months, the read the pass starts with
(`store.retention_candidates`: people past the cut-off by the index on `intake.activity`, then
each candidate's last contact). The baseline, in the same invocation, is that read as it was
before (commit 9002b57): every contact grouped by person, a read of the whole `intake.intakes`
table that grows every day. Both must find the same people, or the figures mean nothing."""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from functools import partial

import asyncpg

from bench import database
from bench.preload import migrate, preload
from services.intake import store
from services.runtime import db

BEFORE = """
    SELECT c.person_id, greatest(c.last_contact, a.last_at) AS last_activity, c.orgs
    FROM (SELECT person_id, max(contacted_at) AS last_contact,
                 array_agg(DISTINCT org ORDER BY org) FILTER (WHERE basis = 'met') AS orgs
          FROM intake.intakes GROUP BY person_id) c
    LEFT JOIN intake.people p ON p.person_id = c.person_id
    LEFT JOIN intake.activity a ON a.person_id = c.person_id
    WHERE p.erased_at IS NULL
      AND greatest(c.last_contact, a.last_at) < $1
      AND NOT EXISTS (SELECT 1 FROM intake.consents k WHERE k.person_id = c.person_id
                      AND k.status = 'active' AND k.valid_until > $2)
      AND NOT EXISTS (SELECT 1 FROM intake.restrictions r WHERE r.person_id = c.person_id)
"""
MONTHS = (24, 12, 6)


def say(text: str) -> None:
    print(text, flush=True)


async def timed(call: Callable[[], Awaitable[list[asyncpg.Record]]], rounds: int
                ) -> tuple[list[float], list[asyncpg.Record]]:
    times, rows = [], []
    for _ in range(rounds):
        started = time.perf_counter()
        rows = await call()
        times.append(time.perf_counter() - started)
    return times, rows


def found(rows: list[asyncpg.Record]) -> set[tuple[object, ...]]:
    return {(r["person_id"], r["last_activity"], tuple(r["orgs"] or ())) for r in rows}


async def measure(url: str, intakes: int, rounds: int) -> None:
    await migrate(url)
    conn = await db.connect(url)
    try:
        loaded = await conn.fetchval("SELECT EXISTS (SELECT 1 FROM intake.intakes)")
    finally:
        await conn.close()
    if not loaded:  # (a database given by DATABASE_URL may hold an earlier run's)
        say(f"preloading {intakes:,} intakes ...")
        await preload(url, intakes, intakes, 1000, say=lambda text: say(f"  {text}"))
    pool = await db.create_pool(url, 2)
    now = datetime.now(UTC)
    try:
        held = await pool.fetchval("SELECT count(*) FROM intake.intakes")
        people = await pool.fetchval("SELECT count(*) FROM intake.activity")
        say(f"retention pass on {held:,} intakes of {people:,} people; medians of {rounds}"
            " rounds:")
        for months in MONTHS:
            before = now - timedelta(days=round(months * 365.25 / 12))
            new, rows = await timed(partial(store.retention_candidates, pool, before, now),
                                    rounds)
            old, old_rows = await timed(partial(pool.fetch, BEFORE, before, now), rounds)
            if found(rows) != found(old_rows):
                raise SystemExit(f"at {months} months the two reads disagree: "
                                 f"{len(rows):,} people against {len(old_rows):,}")
            say(f"  at {months:>2} months, {len(rows):,} people due: "
                f"{1000 * statistics.median(new):,.1f} ms; baseline (the whole table) "
                f"{1000 * statistics.median(old):,.0f} ms; ratio "
                f"{statistics.median(new) / statistics.median(old):.4f}")
    finally:
        await pool.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--intakes", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    database.on_new_database(f"retention_{args.intakes}",
                             lambda url: measure(url, args.intakes, args.rounds))


if __name__ == "__main__":
    main()
