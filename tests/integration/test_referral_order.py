"""The consent gate gives the same outcome whatever the order of arrival of the intake and the
consent (order across topics is not guaranteed), on a real PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from schemas.events import ConsentGrantedV1, IntakeRecordedV1
from services import directory
from services.referral import handlers, store
from services.runtime import db


async def run(database: str, order: list[str]) -> tuple[list[tuple[str, str]], list[str]]:
    conn = await db.connect(database)
    try:
        await db.migrate(conn, "referral", "services.runtime")
        await db.migrate(conn, "referral", "services.referral")
        await store.upsert_partners(conn, directory.load())
        person, intake_id, consent_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        intake = IntakeRecordedV1(
            intake_id=intake_id, person_id=person, org="equipe-aller-vers", site="qpv-etouvie",
            channel="mobile_permanence", contacted_at=datetime.now(UTC), needs=["employment"],
            age_bracket="18_25", commune="80021", visit_number=1, returning=False,
        )
        consent = ConsentGrantedV1(
            consent_id=consent_id, person_id=person, org="equipe-aller-vers",
            purposes=["referral_partner"], recipients=["mission-locale"], categories=["needs"],
            notice_version="v1", granted_at=datetime.now(UTC),
            valid_until=datetime.now(UTC) + timedelta(days=30),
        )
        for step in order:
            async with conn.transaction():
                if step == "intake":
                    await handlers.on_intake(conn, intake)
                else:
                    await handlers.on_consent(conn, consent)
        rows = await conn.fetch("SELECT target, status FROM referral.referrals")
        types = await conn.fetch("SELECT headers FROM referral.outbox ORDER BY id")
        return ([(r["target"], r["status"]) for r in rows],
                [dict(h["headers"])["ce_type"] for h in types])
    finally:
        await conn.close()


@pytest.mark.parametrize("order", [["intake", "consent"], ["consent", "intake"]])
async def test_the_outcome_does_not_depend_on_the_order(database: str, order: list[str]) -> None:
    referrals, emitted = await run(database, order)
    assert referrals == [("mission-locale", "requested")]
    assert emitted == ["fr.relais.referral.created.v1", "fr.relais.referral.requested.v1"]


async def test_a_redelivered_intake_creates_no_second_referral(database: str) -> None:
    referrals, emitted = await run(database, ["intake", "intake", "consent", "consent"])
    assert referrals == [("mission-locale", "requested")]
    assert len(emitted) == 2


