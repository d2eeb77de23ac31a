"""Issue #14, restriction (GDPR art. 18) and objection (art. 21): processing stops without
erasing; every live consent is withdrawn (the referral's recipient is told to stop), no new
contact, consent or read until the officer lifts it; then processing may go on."""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import ClientResponse

from services.intake import names, store
from services.intake.api import EXAMPLE_PNG, EXAMPLE_SHA256, MASTER_KEY
from services.runtime.app import RUNTIME
from tests.conftest import wait_until
from tests.e2e.conftest import Tokens
from tests.e2e.test_skeleton import consent_body
from tests.integration.conftest import Client
from tests.integration.test_export import handed_off
from tests.integration.test_intake import IDENTITY, INTAKE, SCOPES, TEAM, get

DPO = ("coordination", "people:restrict people:export")


async def asked(client: Client, tokens: Tokens, method: str, path: str, body: Any = None,
                org_scopes: tuple[str, str] = (TEAM, SCOPES)) -> ClientResponse:
    return await client.request(method, path, json=body, headers=tokens.headers(
        *org_scopes, **{"Idempotency-Key": str(uuid.uuid4())}))


async def test_an_objection_stops_processing_until_it_is_lifted(
        client: Client, tokens: Tokens) -> None:
    person = await handed_off(client, tokens)
    pool = client.app[RUNTIME].pool
    restriction = f"/v1/people/{person}/restriction"
    refused = await asked(client, tokens, "POST", restriction,
                          {"right": "objection", "channel": "letter"})
    assert refused.status == 403, "a counsellor does not hold people:restrict"

    done = await asked(client, tokens, "POST", restriction,
                       {"right": "objection", "channel": "letter"}, DPO)
    assert done.status == 200, await done.text()
    said = await done.json()
    assert said["right"] == "objection" and said["org"] == DPO[0]
    at_once = await asked(client, tokens, "POST", "/v1/consents", consent_body(person))
    assert at_once.status == 409, "refused at once: the intake service says so, no window"

    async def stopped() -> bool:
        consent = await pool.fetchrow("SELECT status FROM consent.consents WHERE person_id = $1",
                                      uuid.UUID(person))
        referral = await pool.fetchrow("SELECT stopped_at FROM referral.referrals WHERE"
                                       " person_id = $1 AND status <> 'awaiting_consent'",
                                       uuid.UUID(person))
        return consent["status"] == "withdrawn" and referral["stopped_at"] is not None

    await wait_until(stopped, 30, "the consent withdrawn and the recipient told to stop")
    change = await pool.fetchrow(
        "SELECT requested_by, channel, org FROM consent.consent_changes WHERE kind ="
        " 'withdrawn'")
    assert dict(change) == {"requested_by": "person", "channel": "letter", "org": DPO[0]}
    trail = await pool.fetchval(
        "SELECT count(*) FROM consent.trail WHERE person_id = $1 AND convert_from(entry,"
        " 'UTF8') LIKE '%person.restricted%'", uuid.UUID(person))
    assert trail == 1

    # while it stands: no contact, no read, no consent; the officer's export still works
    contact = await asked(client, tokens, "POST", "/v1/intakes", INTAKE | {"person_id": person})
    assert contact.status == 409, await contact.text()
    assert (await get(client, tokens, f"/v1/people/{person}")).status == 403
    consent = await asked(client, tokens, "POST", "/v1/consents", consent_body(person))
    assert consent.status == 409, await consent.text()
    export = await client.get(f"/v1/people/{person}/export", headers=tokens.headers(*DPO))
    assert export.status == 200
    again = await asked(client, tokens, "POST", restriction,
                        {"right": "restriction", "channel": "email"}, DPO)
    assert (await again.json())["right"] == "objection", "asked again, it stays as it was"
    assert await pool.fetchval("SELECT count(*) FROM intake.outbox WHERE headers::text LIKE"
                               " '%person_restricted%'") == 1

    lifted = await asked(client, tokens, "DELETE", restriction, org_scopes=DPO)
    assert lifted.status == 204

    async def consents_again() -> bool:
        return not await pool.fetchval("SELECT count(*) FROM consent.restricted")

    await wait_until(consents_again, 30, "the consent service knows it is lifted")
    assert (await get(client, tokens, f"/v1/people/{person}")).status == 200
    assert (await asked(client, tokens, "POST", "/v1/intakes",
                        INTAKE | {"person_id": person})).status == 201
    assert (await asked(client, tokens, "POST", "/v1/consents",
                        consent_body(person))).status == 201
    statuses = [r["status"] for r in await pool.fetch(
        "SELECT status FROM consent.consents WHERE person_id = $1 ORDER BY granted_at",
        uuid.UUID(person))]
    assert statuses == ["withdrawn", "active"], "a withdrawn consent stays withdrawn"


async def test_refusals(client: Client, tokens: Tokens) -> None:
    unknown = await asked(client, tokens, "POST", f"/v1/people/{uuid.uuid4()}/restriction",
                          {"right": "objection", "channel": "letter"}, DPO)
    assert unknown.status == 404
    person = await handed_off(client, tokens)
    bad = await asked(client, tokens, "POST", f"/v1/people/{person}/restriction",
                      {"right": "forget me", "channel": "pigeon"}, DPO)
    assert bad.status == 422
    assert {e["field"] for e in (await bad.json())["errors"]} == {"right", "channel"}


async def test_while_restricted_no_search_by_name_finds_them_and_no_signature_is_read(
        client: Client, tokens: Tokens) -> None:
    person = await handed_off(client, tokens)
    sealed = await asked(client, tokens, "POST", f"/v1/people/{person}/evidence", {
        "kind": "signature", "media_type": "image/png", "content": EXAMPLE_PNG})
    assert sealed.status in (200, 201), await sealed.text()
    evidence = f"/v1/people/{person}/evidence/{EXAMPLE_SHA256}"
    assert (await asked(client, tokens, "GET", evidence)).status == 200
    pool, master = client.app[RUNTIME].pool, client.app[MASTER_KEY]
    [term, *_] = sorted(names.terms(names.key(master), IDENTITY))
    assert [r["person_id"] for r in await store.people_named(pool, term, TEAM, 10)] == [
        uuid.UUID(person)]

    done = await asked(client, tokens, "POST", f"/v1/people/{person}/restriction",
                       {"right": "restriction", "channel": "in_person"}, DPO)
    assert done.status == 200
    assert await store.people_named(pool, term, TEAM, 10) == []
    assert (await asked(client, tokens, "GET", evidence)).status == 403
    again = await asked(client, tokens, "POST", f"/v1/people/{person}/evidence", {
        "kind": "signature", "media_type": "image/png", "content": EXAMPLE_PNG})
    assert again.status == 409
