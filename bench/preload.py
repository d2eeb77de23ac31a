"""Two years of a large territory in a Relais database, fast (issue #12, point 4).

    .venv/bin/python -m bench.preload --database URL --intakes 5000000 --trail 5000000 \\
        --bus 10000000

Fills a database (migrated here first if it is not: every service's schema and the postgres
bus, as `relais migrate` and `relais up` make them; it must hold no intake yet) by COPY
(`copy_records_to_table`, chunks of `CHUNK` rows), printing the rows written, rows/s and the
ETA as it goes, then VACUUM ANALYZE (so that neither autovacuum nor the first readers set the
hint bits of the new pages during a measurement, as on a database that has run for years).

What two years of the territory look like (sizes are proportionate to the three arguments):

- `--intakes` contacts over the last 720 days (the retention period, 24 months, is not
  reached: the erasure that runs at start has nobody to erase) by `intakes / 1.4` people,
  anonymous (no `intake.people` row, as a contact without identity has none: a sealed
  identity would need the master key the services run with), copied into `referral.intakes`.
- consents: 70 % of `--trail` (at most one a person), granted in time order, valid a year
  (`active` when still valid, else `expired`; one in twenty `withdrawn`), in
  `consent.consents` (with their `granted` change) and the projections `intake.consents`,
  `referral.consents`; `intake.activity` for each person (their last contact, or their
  consent when later, as the intake service keeps it).
- the consent trail: `--trail` entries, the consents' `consent.granted` and
  `personal_data.read` entries between them, each a real chained entry (canonical JSON with
  `seq` and the previous leaf hash, as `trail.encode_entry` makes it), with the stored tree
  (`consent.trail_nodes`, by `merkle.Frontier` as the checkpointer does) and a signed
  checkpoint of the whole trail (signed by a key made here and stored retired, public key
  only): the checkpointer starts from it and reads no old leaf.
- a referral for each consent (`referral.referrals`), closed (completed, rejected, expired,
  cancelled) but for the newest `ACTIVE` (requested, received, accepted, in progress, on
  hold), with its history (2 or 3 rows), a timer (fired for the closed; for the active,
  unfired, due in the days to come) and, for those of the last 360 days (notifications are
  kept 365), its two notifications (email and inbox), sent.
- inbox rows for the main events each consumer saw in two years (intake and consent events,
  the referrals' creation), never pruned; outbox rows (published) for the last six days only
  (the relay deletes published rows after 7 days).
- `--bus` records on the postgres bus, over the last six days: within RELAIS_BUS_RETENTION_DAYS
  (7), so that the pruner, which runs at start, has nothing to delete during a measurement
  (older records read by every group would be deleted at the first start, 10,000,000 rows at
  once: not a steady state). Every consumer group's offsets are at the end of each partition:
  no consumer replays them. Their event ids (`preload-bus-N`) are in no inbox.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from services.cli import SERVICE_NAMES, service_specs
from services.consent import merkle, trail, trail_store
from services.runtime import db
from services.runtime.events import encode, new_event
from services.runtime.transport import postgres as bus

CHUNK = 100_000
SPAN = timedelta(days=720)
NOTIFIED = timedelta(days=360)
BUS_SPAN = timedelta(days=6)
ACTIVE = 5_000
"""The newest referrals still open (a territory of this size follows a few thousand)."""
VISITS = 1.4
CONSENTED = 0.7
ORG = "equipe-aller-vers"
TARGETS = ("mission-locale", "france-travail", "cap-emploi", "ccas", "plie", "asso-boussole",
           "asso-terrain-commun")
SITES = ("qpv-etouvie", "qpv-amiens-nord", "qpv-pierre-rollin", "qpv-marcel-paul",
         "centre-social-nord")
NEEDS = (["employment"], ["housing"], ["health", "employment"], ["training"], ["mobility"])
AGES = ("18_25", "26_35", "36_50", "51_64")
COMMUNES = ("80021", "80016", "80001")
OPEN_STATUSES = ("requested", "received", "accepted", "in_progress", "on_hold")
CLOSED_STATUSES = ("completed", "rejected", "completed", "expired", "cancelled", "completed")
CONSUMERS = {"intake": ("relais.consent", "relais.referral"),
             "consent": ("relais.intake", "relais.referral"),
             "referral": ("relais.intake", "relais.consent"),
             "notify": ("relais.referral", "relais.intake")}
BUS_TOPICS = ("relais.intake",) * 3 + ("relais.consent",) * 2 + ("relais.referral",) * 4 + (
    "relais.notification",)
"""The share of each topic in the records (one in ten each)."""


def ids(kind: int) -> Callable[[int], uuid.UUID]:
    """Distinct, cheap ids: `kind` in the high bits, the number in the low ones (the version
    bits are those of no real uuid4, so none can clash with one Relais makes)."""
    return lambda n: uuid.UUID(int=(kind << 96) | n)


INTAKE, PERSON, CONSENT, REFERRAL, NOTIFICATION = (ids(k) for k in (1, 2, 3, 4, 5))


@dataclass
class Plan:
    """The sizes, all derived from the three arguments."""

    intakes: int
    trail: int
    bus: int
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def people(self) -> int:
        return max(1, int(self.intakes / VISITS))

    @property
    def consents(self) -> int:
        return max(0, min(self.people, int(self.trail * CONSENTED)))

    @property
    def start(self) -> datetime:
        return self.now - SPAN

    def contact_at(self, i: int) -> datetime:
        return self.start + SPAN * (i / max(1, self.intakes))

    def last_activity(self, p: int) -> datetime:
        """Person p's last contact (intake p + k * people), or their consent when later."""
        last = self.contact_at(p + self.people * ((self.intakes - 1 - p) // self.people))
        return max(last, self.granted_at(p)) if p < self.consents else last

    def granted_at(self, j: int) -> datetime:
        """Consent j's trail entry's time (after its person's first contact, intake j)."""
        return self.start + SPAN * ((j + 0.5) / max(1, self.consents))

    @property
    def week(self) -> int:
        """The intakes of the last six days (the outbox keeps a week of published rows)."""
        return int(self.intakes * BUS_SPAN / SPAN)

    def rows(self) -> dict[str, int]:
        c, r = self.consents, self.consents
        return {"intake.intakes": self.intakes, "referral.intakes": self.intakes,
                "consents (x4)": 4 * c, "intake.activity": self.people, "consent.trail": self.trail,
                "referral.referrals": r, "referral.referral_history": 3 * r,
                "referral.timers": r, "notify.notifications": 2 * len(self.notified()),
                "inboxes": 2 * self.intakes + c + r, "outboxes": self.week * 4,
                "relais_bus.records": self.bus}

    def notified(self) -> range:
        """The referrals of the last 360 days (notifications are kept 365)."""
        c = self.consents
        return range(max(0, math.ceil(c * (1 - NOTIFIED / SPAN) - 0.5)), c)


class Progress:
    def __init__(self, total: int, say: Callable[[str], None]) -> None:
        self.total, self.done, self.say = total, 0, say
        self.started = self.shown = time.monotonic()

    def add(self, table: str, rows: int) -> None:
        self.done += rows
        now = time.monotonic()
        if now - self.shown >= 5 or self.done >= self.total:
            self.shown = now
            rate = self.done / max(now - self.started, 1e-9)
            eta = (self.total - self.done) / rate if rate else 0.0
            self.say(f"  {self.done:,}/{self.total:,} rows ({table}), {rate:,.0f} rows/s, "
                     f"ETA {eta:.0f} s")


async def copy(conn: asyncpg.Connection, table: str, columns: Sequence[str],
               rows: Iterable[tuple[Any, ...]], progress: Progress) -> int:
    """COPY the rows in chunks; the next chunk is made in a thread while PostgreSQL takes
    the current one."""
    schema, name = table.split(".")
    source = iter(rows)
    count = 0
    following = asyncio.create_task(asyncio.to_thread(_chunk, source))
    while chunk := await following:
        following = asyncio.create_task(asyncio.to_thread(_chunk, source))
        await conn.copy_records_to_table(name, schema_name=schema, columns=columns,
                                         records=chunk)
        count += len(chunk)
        progress.add(table, len(chunk))
    return count


def _chunk(rows: Iterator[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return list(itertools.islice(rows, CHUNK))


def entry_bytes(seq: int, prev: bytes | None, at: str, kind: str, fields: dict[str, Any]
                ) -> bytes:
    """`trail.encode_entry`, without its RFC 8785 encoder's cost: for ASCII strings, integers
    and lists of them, sorted keys and no spaces are the canonical form (a test checks)."""
    body = {"seq": seq, "prev": prev.hex() if prev else "", "at": at, "kind": kind, **fields}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


async def migrate(url: str) -> None:
    for spec in service_specs(SERVICE_NAMES):
        await db.migrated(url, spec.schema, spec.package)
    conn = await db.connect(url)
    try:
        await db.migrate(conn, bus.SCHEMA, "services.runtime.transport")
    finally:
        await conn.close()


async def preload(url: str, intakes: int = 5_000_000, trail_entries: int = 5_000_000,
                  records: int = 10_000_000, *, vacuum: bool = True,
                  say: Callable[[str], None] = print) -> dict[str, int]:
    """Fill the database at `url` (see the module's text): the rows written per table."""
    await migrate(url)
    plan = Plan(intakes, trail_entries, records)
    conn = await asyncpg.connect(url)
    try:
        if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM intake.intakes)"):
            raise SystemExit("this database already holds intakes: preload an empty one")
        await conn.execute("SET synchronous_commit = off")
        progress = Progress(sum(plan.rows().values()), say)
        written: dict[str, int] = {}
        started = time.monotonic()
        for fill in (_intakes, _consents, _activity, _trail, _referrals, _notifications, _inboxes,
                     _outboxes, _bus):
            written |= await fill(conn, plan, progress)
        loaded = time.monotonic() - started
        say(f"{sum(written.values()):,} rows in {loaded:.0f} s "
            f"({sum(written.values()) / loaded:,.0f} rows/s); "
            + ("VACUUM ANALYZE ..." if vacuum else "ANALYZE ..."))
        await conn.execute("VACUUM ANALYZE" if vacuum else "ANALYZE")
        await conn.execute("CHECKPOINT")
        say(f"done in {time.monotonic() - started:.0f} s")
        return written
    finally:
        await conn.close()


async def _intakes(conn: asyncpg.Connection, plan: Plan, progress: Progress) -> dict[str, int]:
    people = plan.people

    def row(i: int) -> tuple[Any, ...]:
        at = plan.contact_at(i)
        return (INTAKE(i), ORG, PERSON(i % people), SITES[i % len(SITES)], "mobile_permanence",
                at, 20, NEEDS[i % len(NEEDS)], [], AGES[i % len(AGES)],
                COMMUNES[i % len(COMMUNES)], i // people + 1, at + timedelta(minutes=5))

    done = {"intake.intakes": await copy(
        conn, "intake.intakes",
        ["id", "org", "person_id", "site", "channel", "contacted_at", "duration_minutes",
         "needs", "flags", "age_bracket", "commune", "visit_number", "created_at"],
        (row(i) for i in range(plan.intakes)), progress)}
    done["referral.intakes"] = await copy(
        conn, "referral.intakes",
        ["intake_id", "person_id", "org", "site", "contacted_at", "needs", "flags",
         "age_bracket", "commune", "visit_number", "duration_minutes"],
        ((r[0], r[2], r[1], r[3], r[5], r[7], r[8], r[9], r[10], r[11], r[6])
         for r in map(row, range(plan.intakes))), progress)
    return done


def _consent(plan: Plan, j: int) -> tuple[datetime, datetime, str]:
    granted = plan.granted_at(j)
    until = granted + timedelta(days=365)
    status = ("withdrawn" if j % 20 == 7 else "active" if until > plan.now else "expired")
    return granted, until, status


async def _consents(conn: asyncpg.Connection, plan: Plan, progress: Progress
                    ) -> dict[str, int]:
    n, purposes, categories = plan.consents, ["referral_partner"], ["needs"]

    def target(j: int) -> list[str]:
        return [TARGETS[j % len(TARGETS)]]

    done = {"consent.consents": await copy(
        conn, "consent.consents",
        ["id", "org", "person_id", "purposes", "recipients", "categories", "notice_version",
         "method", "captured_by", "granted_at", "valid_until", "status"],
        ((CONSENT(j), ORG, PERSON(j), purposes, target(j), categories, "2026-01",
          "signed_screen", "preload", *_consent(plan, j)) for j in range(n)), progress)}
    done["consent.consent_changes"] = await copy(
        conn, "consent.consent_changes",
        ["consent_id", "kind", "purposes", "recipients", "org", "at"],
        ((CONSENT(j), "granted", purposes, target(j), ORG, plan.granted_at(j))
         for j in range(n)), progress)
    done["intake.consents"] = await copy(
        conn, "intake.consents",
        ["consent_id", "person_id", "purposes", "recipients", "categories", "valid_until",
         "status", "org"],
        ((CONSENT(j), PERSON(j), purposes, target(j), categories, *_consent(plan, j)[1:], ORG)
         for j in range(n)), progress)
    done["referral.consents"] = await copy(
        conn, "referral.consents",
        ["consent_id", "person_id", "purposes", "recipients", "categories", "valid_until",
         "status"],
        ((CONSENT(j), PERSON(j), purposes, target(j), categories, *_consent(plan, j)[1:])
         for j in range(n)), progress)
    return done


async def _activity(conn: asyncpg.Connection, plan: Plan, progress: Progress
                    ) -> dict[str, int]:
    """Each person's last activity: their last contact, or their consent when later (as the
    intake service keeps it)."""
    return {"intake.activity": await copy(
        conn, "intake.activity", ["person_id", "last_at"],
        ((PERSON(p), plan.last_activity(p)) for p in range(plan.people)), progress)}


async def _trail(conn: asyncpg.Connection, plan: Plan, progress: Progress) -> dict[str, int]:
    tree = merkle.Frontier(keep_from=trail_store.STORED_FROM)
    total, consents = plan.trail, plan.consents
    state: dict[str, bytes | None] = {"prev": None}

    def rows() -> Iterator[tuple[Any, ...]]:
        for seq in range(total):
            j = seq * consents // total
            granted = (seq + 1) * consents // total > j
            at = (plan.start + SPAN * ((seq + 0.5) / total)).isoformat()
            person = PERSON(j if granted else seq % max(1, j))
            if granted:
                kind = "consent.granted"
                fields: dict[str, Any] = {
                    "consent_id": str(CONSENT(j)), "person_id": str(person), "org": ORG,
                    "purposes": ["referral_partner"],
                    "recipients": [TARGETS[j % len(TARGETS)]], "categories": ["needs"]}
            else:
                kind = "personal_data.read"
                fields = {"person_id": str(person), "org": TARGETS[seq % len(TARGETS)],
                          "categories": ["needs"], "consent_id": str(CONSENT(j))}
            entry = entry_bytes(seq, state["prev"], at, kind, fields)
            leaf = merkle.leaf_hash(entry)
            state["prev"] = leaf
            tree.append(leaf)
            yield seq, entry, leaf, person, datetime.fromisoformat(at)

    def batches() -> Iterator[tuple[list[tuple[Any, ...]], list[tuple[int, int, bytes]]]]:
        entries = rows()
        while batch := list(itertools.islice(entries, CHUNK)):
            closed, tree.closed = tree.closed, []
            yield batch, closed

    written = nodes = 0
    source = batches()
    following = asyncio.create_task(asyncio.to_thread(next, source, None))
    while made := await following:  # the next batch made in a thread meanwhile
        following = asyncio.create_task(asyncio.to_thread(next, source, None))
        batch, closed = made
        await conn.copy_records_to_table(
            "trail", schema_name="consent", records=batch,
            columns=["seq", "entry", "leaf_hash", "person_id", "recorded_at"])
        await conn.copy_records_to_table("trail_nodes", schema_name="consent",
                                         records=closed, columns=["height", "idx", "hash"])
        written, nodes = written + len(batch), nodes + len(closed)
        progress.add("consent.trail", len(batch))
    if tree.size:
        key, kid = trail.new_key(), "preload"
        signed_at = plan.now.isoformat()
        root = tree.root()
        await conn.execute(
            "INSERT INTO consent.audit_keys (kid, public_key, created_at, retired_at)"
            " VALUES ($1, $2, $3, $4)", kid, key.public_key().public_bytes_raw(), plan.start,
            plan.now)
        await conn.execute(
            "INSERT INTO consent.checkpoints (size, root, signed_at, kid, signature, frontier,"
            " last_leaf) VALUES ($1, $2, $3, $4, $5, $6, $7)", tree.size, root, plan.now, kid,
            trail.sign_checkpoint(key, tree.size, root, signed_at, kid), tree.nodes, tree.last)
    return {"consent.trail": written, "consent.trail_nodes": nodes}


def _status(plan: Plan, j: int) -> str:
    if j >= plan.consents - ACTIVE:
        return OPEN_STATUSES[j % len(OPEN_STATUSES)]
    return CLOSED_STATUSES[j % len(CLOSED_STATUSES)]


async def _referrals(conn: asyncpg.Connection, plan: Plan, progress: Progress
                     ) -> dict[str, int]:
    n = plan.consents
    explanation = json.dumps({"rule": "preload", "matched": ["needs"]})

    def referral(j: int) -> tuple[Any, ...]:
        created, requested = plan.contact_at(j), plan.granted_at(j)
        status = _status(plan, j)
        closed = status in CLOSED_STATUSES
        answered = requested + timedelta(days=2) if status != "requested" else None
        stopped = requested + timedelta(days=30) if closed else None
        due = requested + timedelta(days=7)
        return (REFERRAL(j), PERSON(j), INTAKE(j), ORG, TARGETS[j % len(TARGETS)],
                "referral_partner", status, CONSENT(j), explanation, created,
                stopped or answered or requested, requested, due, answered,
                "no_place" if status == "rejected" else None,
                "completed" if status == "completed" else None, stopped)

    def history(j: int) -> Iterator[tuple[Any, ...]]:
        created, requested = plan.contact_at(j), plan.granted_at(j)
        status = _status(plan, j)
        yield REFERRAL(j), "awaiting_consent", created, "relais", None, ORG
        yield REFERRAL(j), "requested", requested, "relais", "awaiting_consent", ORG
        if status != "requested":
            previous = "requested" if status in ("received", "expired", "cancelled") else (
                "received")
            yield (REFERRAL(j), status, requested + timedelta(days=2), TARGETS[j % len(TARGETS)],
                   previous, TARGETS[j % len(TARGETS)])

    def timer(j: int) -> tuple[Any, ...]:
        requested = plan.granted_at(j)
        if _status(plan, j) in OPEN_STATUSES:  # unfired, due in the days to come
            return REFERRAL(j), "deadline", plan.now + timedelta(days=1 + j % 9), None
        return (REFERRAL(j), "half_way", requested + timedelta(days=3),
                requested + timedelta(days=3, seconds=1))

    done = {"referral.referrals": await copy(
        conn, "referral.referrals",
        ["id", "person_id", "intake_id", "sender_org", "target", "purpose", "status",
         "consent_id", "explanation", "created_at", "updated_at", "requested_at", "due_at",
         "answered_at", "reject_reason", "outcome", "stopped_at"],
        map(referral, range(n)), progress)}
    done["referral.referral_history"] = await copy(
        conn, "referral.referral_history",
        ["referral_id", "status", "at", "actor", "from_status", "org"],
        (h for j in range(n) for h in history(j)), progress)
    done["referral.timers"] = await copy(
        conn, "referral.timers", ["referral_id", "kind", "due_at", "fired_at"],
        map(timer, range(n)), progress)
    return done


async def _notifications(conn: asyncpg.Connection, plan: Plan, progress: Progress
                         ) -> dict[str, int]:
    def rows() -> Iterator[tuple[Any, ...]]:
        for j in plan.notified():
            at, target = plan.granted_at(j) + timedelta(seconds=2), TARGETS[j % len(TARGETS)]
            ref = str(REFERRAL(j))[:8]
            for k, channel in enumerate(("email", "inbox")):
                yield (NOTIFICATION(2 * j + k), f"preload-referral-{j}", REFERRAL(j),
                       PERSON(j), target, channel,
                       f"accueil@{target}.example.org" if channel == "email" else None,
                       f"[Relais] Nouvelle orientation {ref}", "Une orientation vous attend.",
                       "sent", 1, at, at, at + timedelta(seconds=1), "new_referral", ORG)

    return {"notify.notifications": await copy(
        conn, "notify.notifications",
        ["id", "event_id", "referral_id", "person_id", "recipient_org", "channel", "address",
         "subject", "body", "status", "attempts", "next_attempt_at", "created_at", "sent_at",
         "kind", "sender_org"], rows(), progress)}


async def _inboxes(conn: asyncpg.Connection, plan: Plan, progress: Progress) -> dict[str, int]:
    """The events each consumer saw: every intake (consent and referral read them), every
    consent (intake), every referral's creation (notify)."""
    processed = plan.start + SPAN / 2
    sources = {"consent": ("intake", plan.intakes), "referral": ("intake", plan.intakes),
               "intake": ("consent", plan.consents), "notify": ("referral", plan.consents)}
    done = {}
    for schema, (kind, count) in sources.items():
        done[f"{schema}.inbox"] = await copy(
            conn, f"{schema}.inbox", ["consumer", "event_id", "processed_at"],
            ((schema, str(uuid.UUID(int=(6 << 96) | (len(kind) << 64) | n)), processed)
             for n in range(count)), progress)
    return done


def _template(topic: str) -> tuple[bytes | None, bytes, str, str]:
    """An event of the topic as the relay publishes it: its key, value, and its headers as
    JSON cut around its id (so each record gets its own id cheaply)."""
    event = new_event(f"fr.{topic}.preloaded.v1", "/relais/preload", str(PERSON(0)),
                      {"preloaded": True})
    record = encode(event)
    headers = json.dumps(bus.headers_to_json(record.headers))
    before, _, after = headers.partition(event.id)
    return record.key, record.value, before, after


async def _outboxes(conn: asyncpg.Connection, plan: Plan, progress: Progress
                    ) -> dict[str, int]:
    done = {}
    since = plan.now - BUS_SPAN
    for schema, topic in (("intake", "relais.intake"), ("consent", "relais.consent"),
                          ("referral", "relais.referral"), ("notify", "relais.notification")):
        key, value, before, after = _template(topic)
        week = plan.week
        done[f"{schema}.outbox"] = await copy(
            conn, f"{schema}.outbox",
            ["topic", "key", "value", "headers", "created_at", "published_at"],
            ((topic, key, value, f"{before}preload-out-{n}{after}",
              since + BUS_SPAN * (n / max(1, week)),
              since + BUS_SPAN * (n / max(1, week)) + timedelta(milliseconds=300))
             for n in range(week)), progress)
    return done


async def _bus(conn: asyncpg.Connection, plan: Plan, progress: Progress) -> dict[str, int]:
    partitions = 4
    templates = {topic: _template(topic) for topic in set(BUS_TOPICS)}
    since = plan.now - BUS_SPAN
    offsets: dict[tuple[str, int], int] = {}

    def rows() -> Iterator[tuple[Any, ...]]:
        for n in range(plan.bus):
            topic = BUS_TOPICS[n % len(BUS_TOPICS)]
            partition = (n // len(BUS_TOPICS)) % partitions
            offset = offsets.get((topic, partition), 0)
            offsets[topic, partition] = offset + 1
            key, value, before, after = templates[topic]
            yield (topic, partition, offset, key, value, f"{before}preload-bus-{n}{after}",
                   since + BUS_SPAN * (n / plan.bus))

    written = await copy(conn, "relais_bus.records",
                         ["topic", "partition", "offset", "key", "value", "headers",
                          "created_at"], rows(), progress)
    await conn.executemany(
        f"INSERT INTO {bus.SCHEMA}.partitions (topic, partition, next_offset)"
        " VALUES ($1, $2, $3)", [(t, p, n) for (t, p), n in sorted(offsets.items())])
    await conn.executemany(
        f"INSERT INTO {bus.SCHEMA}.group_offsets (group_id, topic, partition, committed)"
        " VALUES ($1, $2, $3, $4)",
        [(group, t, p, n) for group, topics in CONSUMERS.items()
         for (t, p), n in sorted(offsets.items()) if t in topics])
    return {"relais_bus.records": written}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", required=True, help="the database's URL")
    parser.add_argument("--intakes", type=int, default=5_000_000)
    parser.add_argument("--trail", type=int, default=5_000_000)
    parser.add_argument("--bus", type=int, default=10_000_000)
    parser.add_argument("--no-vacuum", action="store_true",
                        help="ANALYZE only after loading (no VACUUM)")
    args = parser.parse_args(argv)
    asyncio.run(preload(args.database, args.intakes, args.trail, args.bus,
                        vacuum=not args.no_vacuum,
                        say=lambda text: print(text, flush=True)))


if __name__ == "__main__":
    main()
