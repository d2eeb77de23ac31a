"""Erasure (crypto-shredding) as one unit of work, and the erasure ledger that keeps every
erasure outside the database, so that a backup restored from before an erasure cannot bring the
erased person back (issue #14).

The ledger is a file of one JSON line per erasure (the pseudonymous person id, who erased and
when; never a name), kept with the keys (`RELAIS_ERASURE_LEDGER`, by default
`<data dir>/keys/erasures.log`), never in a database backup. A line is written and flushed to
disk *before* the erasure commits: an erasure the database holds is always in the ledger (an
erasure whose commit then failed is in it too, and is made at the next start: the person did
ask for it). At every start, before serving, the intake service makes again each erasure of the
ledger that its database does not show (`replay`), with the same unit of work and the same
`person_erased` event, which every other service follows."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal
from uuid import UUID

import asyncpg

from schemas.events import PERSON_ERASED, PersonErasedV1
from services.intake import retention, store
from services.runtime import outbox
from services.runtime.events import new_event
from services.runtime.logging import get_logger

log = get_logger("relais.intake.erasure")
SOURCE = "/relais/intake"


Cause = Literal["asked", "retention"]


@dataclass(frozen=True)
class Erasure:
    person_id: UUID
    erased_by: str
    erased_at: datetime
    cause: Cause = "asked"

    def line(self) -> bytes:
        return (json.dumps({"person_id": str(self.person_id), "erased_by": self.erased_by,
                            "erased_at": self.erased_at.isoformat(), "cause": self.cause})
                + "\n").encode()

    @classmethod
    def parse(cls, line: str) -> Erasure:
        entry = json.loads(line)
        cause: Cause = "retention" if entry.get("cause") == "retention" else "asked"
        return cls(UUID(entry["person_id"]), entry["erased_by"],
                   datetime.fromisoformat(entry["erased_at"]), cause)


class Ledger:
    def __init__(self, path: Path) -> None:
        self.path = path

    async def append(self, erasure: Erasure) -> None:
        """One line, on disk (fsync) when this returns. Several processes may append: each
        line is one write in append mode."""
        await asyncio.to_thread(self._append, erasure.line())

    def _append(self, line: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = b"\n" + line  # a line cut by a crash stays alone: this one is whole
            while line:
                line = line[os.write(fd, line):]
            os.fsync(fd)
        finally:
            os.close(fd)

    def read(self) -> list[Erasure]:
        """Every erasure written; a line cut by a crash in the middle of its write (the last
        one) is skipped: its erasure never committed."""
        if not self.path.exists():
            return []
        erasures = []
        for number, line in enumerate(self.path.read_text().splitlines(), 1):
            try:
                erasures.append(Erasure.parse(line))
            except (ValueError, KeyError, TypeError):
                log.warning("erasure_ledger_line_unreadable", path=str(self.path), line=number)
        return erasures


async def erase(conn: asyncpg.Connection, erasure: Erasure) -> bool:
    """In the caller's transaction: the person's key and every sealed copy gone, and the
    `person_erased` event for the other services. False if they were erased already."""
    person = await store.person(conn, erasure.person_id, lock=True)
    if person is not None and person["erased_at"] is not None:
        return False
    if person is None:
        await store.insert_person(conn, erasure.person_id, b"")
    await store.erase(conn, erasure.person_id)
    await outbox.add(conn, store.SCHEMA, [new_event(
        PERSON_ERASED, SOURCE, str(erasure.person_id),
        PersonErasedV1(person_id=erasure.person_id, erased_by=erasure.erased_by,
                       erased_at=erasure.erased_at, cause=erasure.cause))])
    return True


async def replay(pool: asyncpg.Pool, ledger: Ledger) -> int:
    """Make again, in one transaction, every erasure of the ledger that the database does not
    show (a backup restored from before it): how many."""
    erasures = {e.person_id: e for e in await asyncio.to_thread(ledger.read)}
    if await store.erased_count(pool) > len(erasures):  # erased before the ledger, or it was
        added = 0                                          # lost: the database's go in it
        for row in await store.erased_people(pool):
            if row["person_id"] not in erasures:
                known = Erasure(row["person_id"], "relais", row["erased_at"])
                await ledger.append(known)
                erasures[known.person_id] = known
                added += 1
        log.warning("erasure_ledger_completed", ledger=str(ledger.path), added=added,
                    why="erasures the database shows were not in the ledger (made before it, "
                        "or the ledger was lost or is not where this process looks: keep "
                        "RELAIS_ERASURE_LEDGER on storage every intake process shares)")
    if not erasures:
        return 0
    async with pool.acquire() as conn, conn.transaction():
        missing = await store.not_erased(conn, list(erasures))
        made = [await erase(conn, erasures[person_id]) for person_id in missing]
    if missing:
        log.warning("erasures_made_again", count=sum(made), ledger=str(ledger.path),
                    why="the database did not show them: a backup from before them restored")
    return sum(made)


# --- retention (the decision: services/intake/retention.py) ---------------------------------

def _seen(row: asyncpg.Record) -> retention.Seen:
    return retention.Seen(row["person_id"], row["last_activity"], tuple(row["orgs"] or ()))


async def retention_plan(pool: asyncpg.Pool, months: Mapping[str, int], now: datetime
                         ) -> list[retention.Due]:
    """Who the next run would erase at `now`, and why (nothing is written)."""
    rows = await store.retention_candidates(pool, retention.cutoff(months, now), now)
    return retention.due([_seen(row) for row in rows], months, now)


async def apply_retention(pool: asyncpg.Pool, ledger: Ledger, months: Mapping[str, int],
                          now: datetime) -> int:
    """Erase everyone past their period at `now`, one transaction each, each decision checked
    again under the person's lock (a contact or a consent may have come meanwhile): how many
    were erased."""
    erased = 0
    for planned in await retention_plan(pool, months, now):
        async with pool.acquire() as conn, conn.transaction():
            await store.person(conn, planned.person_id, lock=True)  # (the anonymous have none)
            row = await store.retention_candidate(conn, planned.person_id, now, now)
            if row is None or not retention.due([_seen(row)], months, now):
                continue
            asked = Erasure(planned.person_id, "relais", now, "retention")
            await ledger.append(asked)
            erased += await erase(conn, asked)
    if erased:
        log.info("retention_erased", count=erased)
    return erased
