"""Issue #14, rectification (GDPR art. 16): `PUT /v1/people/{id}/identity` replaces a person's
identity and contact details; the old values are gone from the vault and the search by name;
the correction (which fields, never their values) is on the consent trail."""

from __future__ import annotations

import json
import uuid

from aiohttp import ClientResponse

from services.intake import names
from services.intake.api import MASTER_KEY
from services.runtime.app import RUNTIME
from tests.conftest import wait_until
from tests.e2e.conftest import Tokens
from tests.integration.conftest import Client
from tests.integration.test_intake import IDENTITY, INTAKE, SCOPES, TEAM, get, post

DPO = ("coordination", "people:rectify")
CORRECTED = {"first_name": "Léa", "last_name": "Martin-Dubois", "birth_date": "2006-04-02",
             "phone": "06 12 34 56 78"}


async def rectify(client: Client, tokens: Tokens, person: str, body: object
                  ) -> ClientResponse:
    return await client.put(f"/v1/people/{person}/identity", json=body,
                            headers=tokens.headers(*DPO))


async def test_a_correction_replaces_the_old_values_and_is_on_the_trail(
        client: Client, tokens: Tokens) -> None:
    person = (await post(client, tokens, "/v1/intakes", INTAKE | {"identity": IDENTITY}))[
        "person_id"]
    response = await rectify(client, tokens, person, CORRECTED)
    assert response.status == 200, await response.text()
    now = await (await get(client, tokens, f"/v1/people/{person}")).json()
    assert now["identity"] == CORRECTED | {"email": None}, "a field left out is removed"

    pool, master = client.app[RUNTIME].pool, client.app[MASTER_KEY]
    terms = {bytes(r["term"]) for r in await pool.fetch(
        "SELECT term FROM intake.name_index WHERE person_id = $1", uuid.UUID(person))}
    assert terms == set(names.terms(names.key(master), CORRECTED)), (
        "found by the new name only")
    [event] = await pool.fetch("SELECT value FROM intake.outbox WHERE headers::text LIKE"
                               " '%person_rectified%'")
    said = json.loads(event["value"])
    assert said["fields"] == ["email", "last_name"] and said["org"] == DPO[0]
    assert b"Dubois" not in event["value"] and b"example.org" not in event["value"]

    async def on_the_trail() -> bool:
        return bool(await pool.fetchval(
            "SELECT count(*) FROM consent.trail WHERE person_id = $1 AND"
            " convert_from(entry, 'UTF8') LIKE '%personal_data.rectified%'", uuid.UUID(person)))

    await wait_until(on_the_trail, 30, "the correction on the consent trail")
    again = await rectify(client, tokens, person, CORRECTED)
    assert again.status == 200
    assert len(await pool.fetch("SELECT 1 FROM intake.outbox WHERE headers::text LIKE"
                                " '%person_rectified%'")) == 1, "nothing changed, nothing logged"


async def test_refusals_say_why(client: Client, tokens: Tokens) -> None:
    person = (await post(client, tokens, "/v1/intakes", INTAKE | {"identity": IDENTITY}))[
        "person_id"]
    counsellor = await client.put(f"/v1/people/{person}/identity", json=CORRECTED,
                                  headers=tokens.headers(TEAM, SCOPES))
    assert counsellor.status == 403
    bad = await rectify(client, tokens, person, {"phone": "not a phone", "age": 3})
    assert bad.status == 422
    problem = await bad.json()
    assert {e["field"] for e in problem["errors"]} == {"phone", "age"}
    assert (await rectify(client, tokens, str(uuid.uuid4()), CORRECTED)).status == 404
    erased = await client.delete(f"/v1/people/{person}", headers=tokens.headers(TEAM, SCOPES))
    assert erased.status == 204
    assert (await rectify(client, tokens, person, CORRECTED)).status == 410
    now = await (await get(client, tokens, f"/v1/people/{person}")).json()
    assert now["status"] == 410
