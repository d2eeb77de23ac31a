"""Consent over real HTTP and PostgreSQL: withdrawal (whole or in part, as easy as granting),
expiry on its own, history, the check, the events and the trail; and data access closing."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from services.auth.api import KEYS
from services.cli import SERVICE_NAMES, service_specs
from services.runtime.app import RUNTIME, create_app
from services.runtime.settings import Settings
from tests.conftest import wait_until
from tests.e2e.conftest import Tokens
from tests.integration.conftest import Client

TEAM, ML, FT = "equipe-aller-vers", "mission-locale", "france-travail"
SCOPES = "intake:write consent:write consent:read people:read"


def consent(person: str, **extra: Any) -> dict[str, Any]:
    return {"person_id": person, "purposes": ["referral_partner", "share_dossier"],
            "recipients": [ML, FT], "categories": ["identity"], "notice_version": "2026-01",
            "method": "oral_witnessed", "witness": "Mme Diallo, animatrice",
            "captured_by": "conseillere-camion"} | extra


async def met(client: Client, tokens: Tokens) -> str:
    """A person the outreach team met (only it may record their consent)."""
    response = await client.post("/v1/intakes", json={
        "site": "qpv-etouvie", "channel": "mobile_permanence",
        "contacted_at": "2026-11-20T10:00:00+01:00", "needs": ["employment"]},
        headers=tokens.headers(TEAM, SCOPES, **{"Idempotency-Key": str(uuid.uuid4())}))
    assert response.status == 201, await response.text()
    return str((await response.json())["person_id"])


async def grant(client: Client, tokens: Tokens, body: dict[str, Any]) -> Any:
    response = await client.post("/v1/consents", json=body, headers=tokens.headers(
        TEAM, SCOPES, **{"Idempotency-Key": str(uuid.uuid4())}))
    assert response.status == 201, await response.text()
    return await response.json()


async def withdraw(client: Client, tokens: Tokens, consent_id: str, org: str,
                   **body: Any) -> Any:
    return await client.post(f"/v1/consents/{consent_id}/withdraw",
                             json={"requested_by": "person", "channel": "phone"} | body,
                             headers=tokens.headers(org, SCOPES))


async def check(client: Client, tokens: Tokens, person: str, recipient: str) -> Any:
    response = await client.get(
        f"/v1/consents:check?person_id={person}&purpose=referral_partner&recipient={recipient}",
        headers=tokens.headers(TEAM, SCOPES))
    return await response.json()


async def trail_kinds(client: Client) -> list[str]:
    rows = await client.app[RUNTIME].pool.fetch(
        "SELECT convert_from(entry, 'UTF8')::jsonb ->> 'kind' AS kind FROM consent.trail"
        " ORDER BY seq")
    return [r["kind"] for r in rows]


async def test_a_partial_then_whole_withdrawal(client: Client, tokens: Tokens) -> None:
    person = await met(client, tokens)
    granted = await grant(client, tokens, consent(person))
    assert (await check(client, tokens, person, FT))["allowed"] is True

    # the person tells the outreach team: stop sharing with France Travail
    partial = await withdraw(client, tokens, granted["id"], TEAM, recipients=[FT])
    assert partial.status == 200
    body = await partial.json()
    assert body["status"] == "active" and body["recipients"] == [ML]
    said = await check(client, tokens, person, FT)
    assert (said["allowed"], said["consent_id"], said["reason"]) == (False, None, "not_covered")
    assert (await check(client, tokens, person, ML))["allowed"] is True

    whole = await withdraw(client, tokens, granted["id"], TEAM)
    assert (await whole.json())["status"] == "withdrawn"
    assert (await check(client, tokens, person, ML))["allowed"] is False
    again = await withdraw(client, tokens, granted["id"], TEAM)
    assert again.status == 409

    history = await (await client.get(f"/v1/consents?person_id={person}",
                                      headers=tokens.headers(TEAM, SCOPES))).json()
    [item] = history["items"]
    assert [c["kind"] for c in item["changes"]] == ["granted", "withdrawn", "withdrawn"]
    assert item["changes"][1]["recipients"] == [FT]
    assert item["changes"][1]["channel"] == "phone"
    assert await trail_kinds(client) == ["consent.granted", "consent.withdrawn",
                                         "consent.withdrawn"]
    types = await client.app[RUNTIME].pool.fetch(
        "SELECT headers FROM consent.outbox ORDER BY id")
    assert [dict(t["headers"])["ce_type"] for t in types] == [
        "fr.relais.consent.granted.v1", "fr.relais.consent.withdrawn.v1",
        "fr.relais.consent.withdrawn.v1"]


async def test_only_the_recorder_or_a_recipient_may_record_a_withdrawal(
    client: Client, tokens: Tokens
) -> None:
    granted = await grant(client, tokens, consent(await met(client, tokens)))
    assert (await withdraw(client, tokens, granted["id"], "ccas")).status == 404
    nothing = await withdraw(client, tokens, granted["id"], TEAM, recipients=["ccas"])
    assert nothing.status == 422


async def test_a_withdrawal_closes_access_to_the_persons_data(client: Client,
                                                               tokens: Tokens) -> None:
    intake = await (await client.post("/v1/intakes", json={
        "site": "qpv-etouvie", "channel": "mobile_permanence",
        "contacted_at": "2026-11-20T10:00:00+01:00", "needs": ["employment"],
        "identity": {"last_name": "Martin"}}, headers=tokens.headers(
            TEAM, SCOPES, **{"Idempotency-Key": str(uuid.uuid4())}))).json()
    person = intake["person_id"]
    granted = await grant(client, tokens, consent(person))

    async def ml_reads(status: int) -> bool:
        response = await client.get(f"/v1/people/{person}", headers=tokens.headers(ML, SCOPES))
        return response.status == status

    await wait_until(lambda: ml_reads(200), 30, "the consent to open access")
    await withdraw(client, tokens, granted["id"], ML)
    await wait_until(lambda: ml_reads(404), 30, "the withdrawal to close access")


async def test_a_consent_expires_on_its_own(database: str, tmp_path: Path) -> None:
    settings = Settings.model_validate({"data_dir": tmp_path, "database_url": database,
                                        "poll_interval": 0.3, "expiry_interval": 0.3})
    app = create_app(settings, database, service_specs(SERVICE_NAMES))
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        tokens = Tokens(await client.app[KEYS].signing(), settings)
        person = await met(client, tokens)
        # 4 s: time for the grant and the check on a loaded machine, before it ends
        soon = (datetime.now(UTC) + timedelta(seconds=4)).isoformat()
        granted = await grant(client, tokens, consent(person, valid_until=soon))
        assert (await check(client, tokens, person, ML))["allowed"] is True
        await asyncio.sleep(4.1)

        async def expired() -> bool:
            got = await client.get(f"/v1/consents/{granted['id']}",
                                   headers=tokens.headers(TEAM, SCOPES))
            return bool((await got.json())["status"] == "expired")

        await wait_until(expired, 10, "the consent to expire")
        assert (await check(client, tokens, person, ML))["allowed"] is False
        assert "consent.expired" in await trail_kinds(client)


async def test_a_consent_refers_to_a_registered_notice_by_its_hash(client: Client,
                                                                    tokens: Tokens) -> None:
    demo = await (await client.get("/v1/notices/2026-01",
                                   headers=tokens.headers(TEAM, SCOPES))).json()
    assert "retirer votre accord" in demo["text"]
    granted = await grant(client, tokens, consent(await met(client, tokens)))
    assert granted["notice_hash"] == demo["hash"]

    notice = {"version": "2027-01", "text": "Nouvelle notice d'information, version 2027."}
    first = await client.post("/v1/notices", json=notice, headers=tokens.headers(TEAM, SCOPES))
    again = await client.post("/v1/notices", json=notice, headers=tokens.headers(TEAM, SCOPES))
    changed = await client.post("/v1/notices", json=notice | {"text": notice["text"] + " Bis."},
                                headers=tokens.headers(TEAM, SCOPES))
    assert (first.status, again.status, changed.status) == (201, 200, 409)

    unknown = await client.post("/v1/consents", json=consent(await met(client, tokens),
                                                             notice_version="1999"),
                                headers=tokens.headers(TEAM, SCOPES, **{
                                    "Idempotency-Key": str(uuid.uuid4())}))
    assert unknown.status == 422
    assert (await unknown.json())["errors"][0]["field"] == "notice_version"


async def test_the_time_the_person_agreed_is_kept_within_bounds(client: Client,
                                                               tokens: Tokens) -> None:
    """A device that recorded a consent offline says when the person agreed: kept as given,
    but never in the future, nor more than seven days back (no dating back at will)."""
    person = await met(client, tokens)
    agreed = (datetime.now(UTC) - timedelta(days=2)).replace(microsecond=0)
    given = await grant(client, tokens, consent(person, granted_at=agreed.isoformat()))
    assert datetime.fromisoformat(given["granted_at"]) == agreed
    for refused in (datetime.now(UTC) + timedelta(minutes=10),
                    datetime.now(UTC) - timedelta(days=8)):
        response = await client.post(
            "/v1/consents", json=consent(person, granted_at=refused.isoformat()),
            headers=tokens.headers(TEAM, SCOPES, **{"Idempotency-Key": str(uuid.uuid4())}))
        assert response.status == 422, refused
        assert "granted_at" in await response.text()
    count = await client.app[RUNTIME].pool.fetchval(
        "SELECT count(*) FROM consent.consents WHERE person_id = $1", uuid.UUID(person))
    assert count == 1
