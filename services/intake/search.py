"""The search by name's unit of work (issue #11, point 3): one lookup of the keyed blind index
(services/intake/names.py), limited to the people the searcher's organisation met; only those
are unsealed, and each one shown is logged as a read of their identity (the access log and a
`personal_data_read` event for the consent trail, as `GET /v1/people/{id}` does), in one
transaction."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from schemas.api import Identity
from schemas.events import PERSONAL_DATA_READ, PersonalDataReadV1
from schemas.vocab import DataCategory
from services.intake import names, store, vault
from services.intake.api import SOURCE
from services.runtime import outbox
from services.runtime.auth import Principal
from services.runtime.events import Event, new_event
from services.runtime.sealing import Keyring

BATCH = 200
"""People indexed again per transaction by `reindex`."""
SHOWN = 10
"""People shown for one search at most (the most recently met first); beyond, the page asks
for the first and the last name together."""
READ = [DataCategory.identity.value]


@dataclass(frozen=True, slots=True)
class Found:
    """A person found, as the organisation knows them."""

    person_id: uuid.UUID
    first_name: str | None
    last_name: str | None
    birth_year: int | None
    visits: int
    """Contacts the organisation recorded with the person."""
    last_at: datetime | None
    intake_ids: tuple[uuid.UUID, ...]
    """Those contacts, the oldest first."""


async def find(pool: asyncpg.Pool, principal: Principal, master: Keyring,
               term: bytes) -> tuple[list[Found], bool]:
    """The people with this index term that the principal's organisation met (at most SHOWN),
    unsealed and logged; and whether more have it."""
    now = datetime.now(UTC)
    async with pool.acquire() as conn, conn.transaction():
        rows = await store.people_named(conn, term, principal.org, SHOWN + 1)
        found: list[Found] = []
        events: list[Event] = []
        for row in rows[:SHOWN]:
            identity = _unseal(master, row)
            person_id: uuid.UUID = row["person_id"]
            await store.log_access(conn, person_id, principal.org, principal.client_id, None,
                                   READ)
            events.append(new_event(PERSONAL_DATA_READ, SOURCE, str(person_id),
                                    PersonalDataReadV1(
                                        person_id=person_id, org=principal.org,
                                        client_id=principal.client_id, consent_id=None,
                                        categories=[DataCategory.identity], read_at=now,
                                        read_by=principal.who if principal.name else None)))
            found.append(Found(
                person_id=person_id, first_name=identity.first_name,
                last_name=identity.last_name,
                birth_year=identity.birth_date.year if identity.birth_date else None,
                visits=row["visits"], last_at=row["last_at"],
                intake_ids=tuple(row["intake_ids"] or ())))
        if events:
            await outbox.add(conn, store.SCHEMA, events)
    return found, len(rows) > SHOWN


def _unseal(master: Keyring, row: asyncpg.Record) -> Identity:
    """A match's identity (a person is indexed only while their identity is sealed)."""
    person_id = row["person_id"]
    key = vault.unwrap(master, person_id, row["wrapped_key"])
    return Identity.model_validate_json(
        vault.open_sealed(key, row["identity"], f"identity/{person_id}"))


async def reindex(conn: asyncpg.Connection, master: Keyring, batch: int = BATCH) -> tuple[int, int]:
    """The index computed again from the vault for every person whose identity is sealed
    (`relais intake reindex-names`: for people sealed before the index existed, or after a
    new master key); `batch` people a transaction, each locked while it is done, so a contact
    recorded meanwhile keeps its own terms. How many people were read, and how many are now
    findable by name."""
    index_key, after, read, named = names.key(master), None, 0, 0
    while True:
        async with conn.transaction():
            rows = await store.people_to_index(conn, after, batch)
            for row in rows:
                person_id = row["person_id"]
                key = vault.unwrap(master, person_id, row["wrapped_key"])
                identity = json.loads(vault.open_sealed(key, row["identity"],
                                                        f"identity/{person_id}"))
                terms = names.terms(index_key, identity)
                await store.replace_name_terms(conn, person_id, terms)
                read, named = read + 1, named + bool(terms)
        if len(rows) < batch:
            return read, named
        after = rows[-1]["person_id"]
