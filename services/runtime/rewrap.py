"""The second half of a rotation of the master key: everything sealed under the previous key
sealed again under the current one, in batches, while Relais serves (`relais master-key
rewrap`).

Each service declares the columns it seals under the master key (`ServiceSpec.sealed`); the
derived keys (`relais_keys.derived`) are one more. A batch reads at most `batch` rows not yet under
the current key (what is sealed under a keyring starts with the key's id: `sealing.PREFIX`),
opens and seals them again in Python, and writes each back only if it has not changed
meanwhile (an erasure that emptied it, a key replaced): nothing a service writes at the same
time is undone. Stopped at any point, it starts again where it was: the rows done are under
the current key and no longer selected."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import asyncpg

from services.runtime.sealing import (
    DERIVED_COLUMN,
    KEYS_SCHEMA,
    PREFIX,
    Keyring,
    SealedColumn,
    SealError,
)

__all__ = ["DERIVED", "SealedColumn", "left", "rewrap"]

DERIVED = (KEYS_SCHEMA, DERIVED_COLUMN)
"""The derived keys, kept once for every service (sealing.py)."""

BATCH = 1000


@dataclass
class Progress:
    schema: str
    sealed: SealedColumn
    resealed: int = 0
    unopened: int = 0
    """Rows no key of the keyring opens (sealed under a third key, or altered): left as they
    are and counted, never in a loop."""

    @property
    def name(self) -> str:
        return f"{self.schema}.{self.sealed.table}.{self.sealed.column}"


def _pending(schema: str, sealed: SealedColumn, after: bool) -> str:
    table, key, column = f'"{schema}"."{sealed.table}"', sealed.key, sealed.column
    return (f"SELECT {key} AS key, {column} AS sealed FROM {table}"
            f" WHERE {column} IS NOT NULL AND substring({column} FROM 1 FOR {PREFIX}) <> $1"
            + (f" AND {key} > $3" if after else "") + f" ORDER BY {key} LIMIT $2")


async def left(db: asyncpg.Pool | asyncpg.Connection, schema: str, sealed: SealedColumn,
               prefix: bytes) -> int:
    """How many rows are not yet under the key `prefix` names (a count, no write)."""
    count = await db.fetchval(
        f'SELECT count(*) FROM "{schema}"."{sealed.table}" WHERE {sealed.column} IS NOT NULL'
        f" AND substring({sealed.column} FROM 1 FOR {PREFIX}) <> $1", prefix)
    assert isinstance(count, int)
    return count


async def rewrap(pool: asyncpg.Pool, schema: str, sealed: SealedColumn, ring: Keyring,
                 batch: int = BATCH, max_batches: int | None = None,
                 told: Callable[[Progress], None] | None = None) -> Progress:
    """Every row of one column sealed again under the ring's current key; `max_batches`
    stops early (the next call goes on), `told` hears after each batch."""
    progress, cursor, batches = Progress(schema, sealed), None, 0
    while max_batches is None or batches < max_batches:
        rows = await pool.fetch(_pending(schema, sealed, cursor is not None), ring.prefix,
                                batch, *(() if cursor is None else (cursor,)))
        if not rows:
            break
        cursor, batches = rows[-1]["key"], batches + 1
        changes = []
        for row in rows:
            context = sealed.context_of(row["key"])
            try:
                plain = ring.open(row["sealed"], context)
            except SealError:
                progress.unopened += 1
                continue
            changes.append((row["key"], row["sealed"], ring.seal(plain, context)))
        async with pool.acquire() as conn, conn.transaction():
            done = await conn.fetch(
                f'UPDATE "{schema}"."{sealed.table}" AS t SET {sealed.column} = c.new'
                f" FROM unnest($1::{sealed.key_type}[], $2::bytea[], $3::bytea[])"
                " AS c(key, old, new)"
                f" WHERE t.{sealed.key} = c.key AND t.{sealed.column} = c.old"
                f" RETURNING t.{sealed.key}",
                [k for k, _, _ in changes], [o for _, o, _ in changes],
                [n for _, _, n in changes])
        progress.resealed += len(done)
        if told is not None:
            told(progress)
    return progress
