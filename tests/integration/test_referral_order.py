"""The consent gate gives the same outcome whatever the order of arrival of the intake, the
consent and its withdrawal (order across topics is not guaranteed), on a real PostgreSQL."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from schemas import events as ev
from schemas.asyncapi import dead_letter_topic
from schemas.events import ConsentChangedV1, ConsentGrantedV1, IntakeRecordedV1
from services import directory
from services.referral import handlers, routing, store
from services.runtime import db
from services.runtime.consumer import ConsumerSettings, EventConsumer, inbox_and_locks
from services.runtime.events import Event, encode, new_event
from services.runtime.transport.postgres import PostgresTransport
from tests.conftest import wait_until

NOW = datetime.now(UTC)


def facts() -> tuple[IntakeRecordedV1, ConsentGrantedV1, ConsentChangedV1]:
    person, intake_id, consent_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    intake = IntakeRecordedV1(
        intake_id=intake_id, person_id=person, org="equipe-aller-vers", site="qpv-etouvie",
        channel="mobile_permanence", contacted_at=NOW, needs=["employment"],
        age_bracket="18_25", commune="80021", visit_number=1, returning=False,
    )
    consent = ConsentGrantedV1(
        consent_id=consent_id, person_id=person, org="equipe-aller-vers",
        purposes=["referral_partner"], recipients=["mission-locale"], categories=["needs"],
        notice_version="v1", granted_at=NOW, valid_until=NOW + timedelta(days=30),
    )
    withdrawal = ConsentChangedV1(
        consent_id=consent_id, person_id=person, org="equipe-aller-vers",
        removed_purposes=["referral_partner"], removed_recipients=["mission-locale"],
        purposes=[], recipients=[], status="withdrawn", requested_by="person",
        channel="in_person", at=NOW + timedelta(minutes=5))
    return intake, consent, withdrawal


async def run(conn: asyncpg.Connection, order: list[str]) -> tuple[list[tuple[str, str]],
                                                                    list[str]]:
    intake, consent, withdrawal = facts()
    rules = routing.load_rules()
    for step in order:
        async with conn.transaction():
            if step == "intake":
                await handlers.on_intake(conn, intake, rules, NOW)
            elif step == "consent":
                await handlers.on_consent(conn, consent, NOW)
            else:
                await handlers.on_consent_change(conn, withdrawal, NOW + timedelta(minutes=5))
    rows = await conn.fetch("SELECT target, status FROM referral.referrals WHERE person_id = $1",
                            intake.person_id)
    types = await conn.fetch(
        "SELECT headers FROM referral.outbox WHERE key = $1::text::bytea ORDER BY id",
        str(intake.person_id))
    return ([(r["target"], r["status"]) for r in rows],
            [dict(h["headers"])["ce_type"].split(".")[3] for h in types])


@pytest.fixture
async def conn(database: str) -> asyncpg.Connection:
    connection = await db.connect(database)
    await db.migrate(connection, "referral", "services.runtime")
    await db.migrate(connection, "referral", "services.referral")
    await store.upsert_partners(connection, directory.load())
    yield connection
    await connection.close()


@pytest.mark.parametrize("order", [["intake", "consent"], ["consent", "intake"]])
async def test_the_outcome_does_not_depend_on_the_order(conn: asyncpg.Connection,
                                                        order: list[str]) -> None:
    referrals, emitted = await run(conn, order)
    assert referrals == [("mission-locale", "requested")]
    assert emitted == ["created", "requested"]


async def test_a_redelivered_intake_creates_no_second_referral(conn: asyncpg.Connection) -> None:
    referrals, emitted = await run(conn, ["intake", "intake", "consent", "consent"])
    assert referrals == [("mission-locale", "requested")]
    assert len(emitted) == 2


async def test_with_a_withdrawal_every_order_ends_cancelled(conn: asyncpg.Connection) -> None:
    """Six orders of intake, grant and withdrawal: the referral always ends cancelled, and
    the recipient is told to stop exactly when it had been handed the referral."""
    for order in itertools.permutations(["intake", "consent", "withdraw"]):
        referrals, emitted = await run(conn, list(order))
        assert referrals == [("mission-locale", "cancelled")], order
        handed_off = "requested" in emitted
        assert ("stop_processing" in emitted) == handed_off, (order, emitted)
        assert handed_off == (list(order) in (["intake", "consent", "withdraw"],
                                              ["consent", "intake", "withdraw"])), order


@pytest.mark.parametrize("batch", [1, 50])
async def test_an_intake_and_its_consent_applied_side_by_side_hand_off(
        conn: asyncpg.Connection, database: str, batch: int) -> None:
    """The intake's and the consent's events are on two topics: two lanes of a consumer (or
    two instances) apply them at the same time. Each transaction must see the other's work
    once committed, or the referral waits for a consent that is already there."""
    people = [facts() for _ in range(96)]
    transport = PostgresTransport(database, partitions=4, poll_interval=0.2)
    await transport.setup(["relais.intake", "relais.consent", dead_letter_topic("referral")])
    producer = transport.producer()
    await producer.start()
    try:  # both on the bus before the consumer starts: its first poll gets them all
        await producer.send_batch([encode(new_event(kind, "/tests", str(fact.person_id), fact))
                                   for intake, consent, _ in people
                                   for kind, fact in ((ev.INTAKE_RECORDED, intake),
                                                      (ev.CONSENT_GRANTED, consent))])
    finally:
        await producer.stop()
    rules = routing.load_rules()

    async def handle(c: asyncpg.Connection, event: Event) -> None:
        await asyncio.sleep(0.002)  # a busier database: the transactions overlap more
        if event.type == ev.INTAKE_RECORDED:
            await handlers.on_intake(c, IntakeRecordedV1.model_validate(event.data), rules, NOW)
        else:
            await handlers.on_consent(c, ConsentGrantedV1.model_validate(event.data), NOW)

    pool = await db.create_pool(database, 10)
    consumer = EventConsumer("referral", "referral", ["relais.intake", "relais.consent"],
                             handle, pool, transport,
                             ConsumerSettings(poll_timeout=0.2, lanes=8, batch=batch))
    task = asyncio.create_task(consumer.run())
    try:
        async def all_applied() -> bool:
            return consumer.counts["done"] >= 2 * len(people)

        await wait_until(all_applied, 30, "every event applied")
        statuses = await conn.fetch(
            "SELECT status, count(*) AS n FROM referral.referrals WHERE person_id ="
            " ANY($1::uuid[]) GROUP BY status", [intake.person_id for intake, _, _ in people])
        assert {r["status"]: r["n"] for r in statuses} == {"requested": len(people)}
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await pool.close()


async def test_a_consent_waits_for_the_intake_being_applied(conn: asyncpg.Connection,
                                                            database: str) -> None:
    """The same race, step by step: the intake's transaction is open when the consent's
    starts; the consent's waits for it, then sees its referral and hands it off."""
    intake, consent, _ = facts()
    rules = routing.load_rules()
    other = await db.connect(database)
    try:
        async with conn.transaction():
            assert await inbox_and_locks(conn, "referral", "test", [new_event(
                ev.INTAKE_RECORDED, "/test", str(intake.person_id), intake)])
            await handlers.on_intake(conn, intake, rules, NOW)

            async def the_consent() -> None:
                async with other.transaction():
                    assert await inbox_and_locks(other, "referral", "test", [new_event(
                        ev.CONSENT_GRANTED, "/test", str(consent.person_id), consent)])
                    await handlers.on_consent(other, consent, NOW)

            applying = asyncio.create_task(the_consent())
            await asyncio.sleep(0.3)
            assert not applying.done(), "the consent did not wait for the intake"
        await applying
    finally:
        await other.close()
    status = await conn.fetchval("SELECT status FROM referral.referrals WHERE person_id = $1",
                                 intake.person_id)
    assert status == "requested"
