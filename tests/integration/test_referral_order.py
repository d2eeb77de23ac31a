"""The consent gate gives the same outcome whatever the order of arrival of the intake, the
consent and its withdrawal (order across topics is not guaranteed), on a real PostgreSQL."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from schemas.events import ConsentChangedV1, ConsentGrantedV1, IntakeRecordedV1
from services import directory
from services.referral import handlers, routing, store
from services.runtime import db

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
