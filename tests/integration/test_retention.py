"""Issue #14, retention that runs by itself, on a real PostgreSQL: people past the retention
period of every organisation that met them, with no live consent, are erased as
`DELETE /v1/people/{id}` erases them (the ledger, the `person_erased` event, cause
`retention`); the activity seen in consents and referrals counts; the funders' figures stay;
`relais retention report` says who and why without erasing; the worker does it by itself."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from services.intake import api as intake_api
from services.intake.erasure import Ledger, apply_retention, retention_plan
from services.runtime.app import RUNTIME
from services.runtime.settings import Settings
from tests.conftest import wait_until
from tests.e2e.conftest import Tokens
from tests.e2e.test_skeleton import consent_body
from tests.integration.conftest import Client, apply_again
from tests.integration.test_intake import IDENTITY, TEAM, get, post
from tests.integration.test_stats_pages import counted

STATS = ("region-hauts-de-france", "stats:read")
MARCH = {"site": "qpv-etouvie", "channel": "mobile_permanence", "needs": ["employment"],
         "contacted_at": "2026-03-10T10:00:00+01:00", "age_bracket": "18_25",
         "commune": "80021"}


async def met(client: Client, tokens: Tokens, **body: Any) -> str:
    intake = await post(client, tokens, "/v1/intakes", MARCH | body)
    return str(intake["person_id"])


async def figures(client: Client, tokens: Tokens) -> Any:
    response = await client.get("/v1/stats?from=2026-03-01&to=2026-04-01",
                                headers=tokens.headers(*STATS))
    assert response.status == 200, await response.text()
    return await response.json()


async def erased_events(client: Client) -> list[dict[str, Any]]:
    rows = await client.app[RUNTIME].pool.fetch(
        "SELECT value FROM intake.outbox WHERE headers::text LIKE '%person_erased%' ORDER BY id")
    return [json.loads(r["value"]) for r in rows]


TODAY = datetime(2026, 12, 7, 12, tzinfo=UTC)
"""The day the retention passes below run: the contacts' fixed dates (March, April and November
2026) are months before it, whatever the date the tests run (with the real date, "recent",
met on 2026-11-20, would be past 6 months from 2027-05-20 on)."""


async def wait_for_status(client: Client, person: str, status: str) -> None:
    async def there() -> bool:
        return bool(await client.app[RUNTIME].pool.fetchval(
            "SELECT count(*) FROM referral.referrals WHERE person_id = $1 AND status = $2",
            uuid.UUID(person), status))

    await wait_until(there, 30, f"the referral of {person} {status}")


async def test_people_past_their_period_are_erased_and_the_figures_stay(
        client: Client, tokens: Tokens, settings: Settings) -> None:
    old = [await met(client, tokens, identity=IDENTITY)] + [
        await met(client, tokens) for _ in range(5)]
    recent = await met(client, tokens, identity=IDENTITY,
                       contacted_at="2026-11-20T10:00:00+01:00")
    await met(client, tokens, person_id=old[1], contacted_at="2026-03-12T10:00:00+01:00")
    consented = await met(client, tokens, identity=IDENTITY)
    await post(client, tokens, "/v1/consents", consent_body(consented))
    await counted(client, 9)
    await wait_for_status(client, consented, "requested")
    before = await figures(client, tokens)
    assert (before["people"], before["intakes"]) == (7, 8), before
    pool, now = client.app[RUNTIME].pool, TODAY
    months = {TEAM: 6}

    plan = await retention_plan(pool, months, now)
    assert sorted(str(d.person_id) for d in plan) == sorted(old), (
        "the recent contact and the live consent keep theirs")
    assert {(d.kept_by, d.months) for d in plan} == {(TEAM, 6)}
    assert await retention_plan(pool, {TEAM: 24}, now) == []

    ledger = Ledger(settings.erasure_ledger_path)
    assert await apply_retention(pool, ledger, months, now) == 6
    assert await apply_retention(pool, ledger, months, now) == 0, "done once"
    assert (await get(client, tokens, f"/v1/people/{old[0]}")).status == 410
    assert (await get(client, tokens, f"/v1/people/{recent}")).status == 200
    assert (await get(client, tokens, f"/v1/people/{consented}")).status == 200
    assert sorted(str(e.person_id) for e in ledger.read()) == sorted(old)
    assert {(e.erased_by, e.cause) for e in ledger.read()} == {("relais", "retention")}
    events = await erased_events(client)
    assert sorted(e["person_id"] for e in events) == sorted(old)
    assert {(e["erased_by"], e["cause"]) for e in events} == {("relais", "retention")}

    async def referral_forgot_them() -> bool:
        return bool(await pool.fetchval(
            "SELECT count(*) FROM referral.intakes WHERE person_id = ANY($1::uuid[])",
            [uuid.UUID(p) for p in old]) == 0)

    await wait_until(referral_forgot_them, 30, "the referral service followed the erasures")
    assert await figures(client, tokens) == before, (
        "the figures count what was, not who: a person met twice is still one person")


async def test_activity_seen_in_consents_and_referrals_keeps_the_person(
        client: Client, tokens: Tokens) -> None:
    person = await met(client, tokens, identity=IDENTITY)
    started = datetime.now(UTC)
    until = started + timedelta(days=30)
    await post(client, tokens, "/v1/consents",
                         consent_body(person) | {"valid_until": until.isoformat()})
    pool = client.app[RUNTIME].pool

    async def seen() -> bool:
        last = await pool.fetchval("SELECT last_at FROM intake.activity WHERE person_id = $1",
                                   uuid.UUID(person))
        referral = await pool.fetchval(
            "SELECT count(*) FROM referral.referrals WHERE person_id = $1 AND status ="
            " 'requested'", uuid.UUID(person))
        return last is not None and referral == 1 and last >= started - timedelta(seconds=5)

    await wait_until(seen, 30, "the consent and the referral seen as activity")
    months = {TEAM: 6}
    assert await retention_plan(pool, months, until - timedelta(days=1)) == [], (
        "a live consent keeps the person")
    assert await retention_plan(pool, months, until + timedelta(days=30)) == [], (
        "the contact was in March, but the consent and its referral came in December")
    later = await retention_plan(pool, months, datetime.now(UTC) + timedelta(days=200))
    assert [str(d.person_id) for d in later] == [person]


async def test_people_met_before_the_upgrade_are_found_by_their_contacts(
        client: Client, tokens: Tokens) -> None:
    """Before intake migration 016 a contact did not touch `intake.activity`: the upgrade
    fills it from the contacts, so retention, which now reads people by their last activity,
    still finds those met before it (and only them); and a contact written by a process of the
    previous version, which does not touch `intake.activity`, still counts."""
    old, recent = await met(client, tokens), await met(
        client, tokens, contacted_at="2026-11-20T10:00:00+01:00")
    await met(client, tokens, person_id=old, contacted_at="2026-04-01T10:00:00+02:00")
    pool, now, months = client.app[RUNTIME].pool, TODAY, {TEAM: 6}
    assert [str(d.person_id) for d in await retention_plan(pool, months, now)] == [old]
    await pool.execute("DELETE FROM intake.activity")  # what the old contacts left
    assert await retention_plan(pool, months, now) == []
    await apply_again(pool, "intake", "016_activity_of_contacts.sql")
    [due] = await retention_plan(pool, months, now)
    assert (str(due.person_id), due.last_activity) == (
        old, datetime(2026, 4, 1, 8, tzinfo=UTC)), "the last of the two contacts"
    assert await pool.fetchval("SELECT last_at FROM intake.activity WHERE person_id = $1",
                               uuid.UUID(recent)) == datetime(2026, 11, 20, 9, tzinfo=UTC)
    await pool.execute(  # a process of the previous version, during a rolling upgrade
        "INSERT INTO intake.intakes (id, org, person_id, site, channel, contacted_at, needs,"
        " flags, visit_number, basis) SELECT gen_random_uuid(), org, person_id, site, channel,"
        " now(), needs, flags, 3, 'met' FROM intake.intakes WHERE person_id = $1 LIMIT 1",
        uuid.UUID(old))
    assert await retention_plan(pool, months, now) == [], "met again: kept (by the contact)"


@pytest.fixture
def settings(database: str, tmp_path: Path) -> Settings:
    return Settings.model_validate({"data_dir": tmp_path, "database_url": database,
                                    "poll_interval": 0.5, "checkpoint_interval": 0.3,
                                    "chase_interval": 0.2, "retention_interval": 0.3})


async def test_the_worker_erases_by_itself_and_the_report_erases_nothing(
        client: Client, tokens: Tokens, settings: Settings) -> None:
    person = await met(client, tokens, identity=IDENTITY)
    kept = await met(client, tokens, identity=IDENTITY, contacted_at="2026-11-20T10:00:00+01:00")
    assert settings.database_url
    env = os.environ | {"RELAIS_DATABASE_URL": settings.database_url,
                        "RELAIS_DATA_DIR": str(settings.data_dir), "RELAIS_LOG_LEVEL": "ERROR"}
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "services.cli", "retention", "report", "--at",
                         "2028-04-01"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "1 people past their period (nothing is erased by this report)" in done.stdout
    assert (f"{person}  last activity 2026-03-10; {TEAM} keeps 24 months; period ended "
            "2028-03-10") in done.stdout
    assert (await get(client, tokens, f"/v1/people/{person}")).status == 200

    runtime = client.app[RUNTIME]
    runtime.clock = lambda: datetime(2028, 4, 1, tzinfo=UTC)  # the demo directory: 24 months

    async def erased() -> bool:
        return (await get(client, tokens, f"/v1/people/{person}")).status == 410

    await wait_until(erased, 30, "the retention worker erased the person")
    assert (await get(client, tokens, f"/v1/people/{kept}")).status == 200
    assert client.app[intake_api.LEDGER].path == settings.erasure_ledger_path


async def test_a_person_who_asked_for_restriction_is_kept(client: Client, tokens: Tokens) -> None:
    """Art. 18: a person may ask that their data be kept but not processed (to defend a
    claim): retention leaves them until the restriction is lifted."""
    person = await met(client, tokens, identity=IDENTITY)
    restricted = await client.post(f"/v1/people/{person}/restriction", json={
        "right": "restriction", "channel": "letter"}, headers=tokens.headers(
        "coordination", "people:restrict"))
    assert restricted.status == 200, await restricted.text()
    pool, months = client.app[RUNTIME].pool, {TEAM: 6}
    assert await retention_plan(pool, months, datetime.now(UTC)) == []
    lifted = await client.delete(f"/v1/people/{person}/restriction", headers=tokens.headers(
        "coordination", "people:restrict"))
    assert lifted.status == 204
    assert [str(d.person_id) for d in await retention_plan(pool, months, datetime.now(UTC))
            ] == [person]
