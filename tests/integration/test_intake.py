"""The intake service over real HTTP and PostgreSQL: the identity vault, notes, returning
people, reading and erasing a person, listing, batches and signals."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from aiohttp import ClientResponse

from services.runtime.app import RUNTIME
from tests.conftest import wait_until
from tests.e2e.conftest import Tokens
from tests.integration.conftest import Client

TEAM, ML, CCAS = "equipe-aller-vers", "mission-locale", "ccas"
SCOPES = "intake:write intake:read people:read people:erase consent:write"
INTAKE: dict[str, Any] = {"site": "qpv-etouvie", "channel": "mobile_permanence",
                          "contacted_at": "2026-11-20T10:00:00+01:00", "needs": ["employment"]}
IDENTITY = {"first_name": "Léa", "last_name": "Martin", "birth_date": "2006-04-02",
            "phone": "06 12 34 56 78", "email": "lea.martin@example.org"}


async def post(client: Client, tokens: Tokens, path: str, body: Any, org: str = TEAM,
               status: int = 201) -> Any:
    response = await client.post(path, json=body, headers=tokens.headers(
        org, SCOPES, **{"Idempotency-Key": str(uuid.uuid4())}))
    assert response.status == status, await response.text()
    return await response.json()


async def get(client: Client, tokens: Tokens, path: str, org: str = TEAM) -> ClientResponse:
    return await client.get(path, headers=tokens.headers(org, SCOPES))


async def test_an_anonymous_first_contact_is_a_valid_intake(client: Client,
                                                            tokens: Tokens) -> None:
    intake = await post(client, tokens, "/v1/intakes", INTAKE | {"birth_year": 2005})
    assert intake["has_identity"] is False and intake["has_note"] is False
    assert intake["age_bracket"] == "18_25"
    assert intake["visit_number"] == 1 and intake["returning"] is False


async def test_identity_and_notes_are_sealed_at_rest(client: Client, tokens: Tokens) -> None:
    intake = await post(client, tokens, "/v1/intakes",
                        INTAKE | {"identity": IDENTITY, "note": "Cherche un CAP cuisine"})
    assert intake["has_identity"] and intake["has_note"]
    assert "Martin" not in str(intake) and "CAP" not in str(intake)
    pool = client.app[RUNTIME].pool
    raw = await pool.fetch("SELECT identity::text AS i FROM intake.people UNION ALL"
                           " SELECT note::text FROM intake.intakes")
    dump = " ".join(r["i"] or "" for r in raw).lower()
    for plain in ("martin", "léa", "cap cuisine", "06 12"):
        assert plain.encode().hex() not in dump
    outbox = await pool.fetch("SELECT value FROM intake.outbox")
    assert all(b"Martin" not in r["value"] and b"CAP" not in r["value"] for r in outbox)

    person = await (await get(client, tokens, f"/v1/people/{intake['person_id']}")).json()
    assert person["identity"]["last_name"] == "Martin"
    assert person["notes"] == ["Cherche un CAP cuisine"]
    logged = await pool.fetchval("SELECT count(*) FROM intake.access_log WHERE person_id = $1",
                                 uuid.UUID(intake["person_id"]))
    assert logged == 1


async def test_a_note_with_a_social_security_number_is_refused(client: Client,
                                                                tokens: Tokens) -> None:
    problem = await post(client, tokens, "/v1/intakes",
                         INTAKE | {"note": "NIR 1 85 05 78 006 084 36", "commune": "1"},
                         status=422)
    assert {e["field"] for e in problem["errors"]} == {"note", "commune"}
    assert "social security" in next(e["message"] for e in problem["errors"]
                                     if e["field"] == "note")
    await post(client, tokens, "/v1/intakes", INTAKE | {"note": "x" * 1001}, status=422)
    assert await client.app[RUNTIME].pool.fetchval("SELECT count(*) FROM intake.intakes") == 0


async def test_a_returning_person_gets_a_visit_count_and_a_completed_identity(
    client: Client, tokens: Tokens
) -> None:
    first = await post(client, tokens, "/v1/intakes",
                       INTAKE | {"identity": {"first_name": "Léa"}})
    again = await post(client, tokens, "/v1/intakes", INTAKE | {
        "person_id": first["person_id"], "identity": {"phone": "0612345678"}})
    assert again["visit_number"] == 2 and again["returning"] is True
    person = await (await get(client, tokens, f"/v1/people/{first['person_id']}")).json()
    assert person["identity"]["first_name"] == "Léa"
    assert person["identity"]["phone"] == "0612345678"
    recorded = await client.app[RUNTIME].pool.fetch(
        "SELECT value FROM intake.outbox WHERE headers::text LIKE '%intake.recorded%'"
        " ORDER BY id")
    assert [json.loads(r["value"])["returning"] for r in recorded] == [False, True]


async def test_another_organisation_reads_only_what_a_live_consent_covers(
    client: Client, tokens: Tokens
) -> None:
    intake = await post(client, tokens, "/v1/intakes", INTAKE | {"identity": IDENTITY,
                                                                 "note": "RDV mardi"})
    person_id = intake["person_id"]
    assert (await get(client, tokens, f"/v1/people/{person_id}", ML)).status == 404

    await post(client, tokens, "/v1/consents", {
        "person_id": person_id, "purposes": ["referral_partner"], "recipients": [ML],
        "categories": ["identity", "needs"], "notice_version": "2026-01",
        "method": "signed_screen", "captured_by": "conseillere-camion"})

    async def readable() -> bool:
        return (await get(client, tokens, f"/v1/people/{person_id}", ML)).status == 200

    await wait_until(readable, 30, "the consent to reach the intake service")
    person = await (await get(client, tokens, f"/v1/people/{person_id}", ML)).json()
    assert person["categories"] == ["identity"]
    assert person["identity"]["last_name"] == "Martin"
    assert person["identity"]["phone"] is None and person["identity"]["email"] is None
    assert person["notes"] is None
    assert person["consent_id"]
    assert (await get(client, tokens, f"/v1/people/{person_id}", CCAS)).status == 404
    reads = await client.app[RUNTIME].pool.fetch(
        "SELECT org, consent_id FROM intake.access_log WHERE person_id = $1 ORDER BY id",
        uuid.UUID(person_id))
    assert [r["org"] for r in reads][-1] == ML and reads[-1]["consent_id"] is not None


async def test_erasing_a_person_shreds_their_key(client: Client, tokens: Tokens) -> None:
    intake = await post(client, tokens, "/v1/intakes", INTAKE | {"identity": IDENTITY})
    person_id = intake["person_id"]
    other = await client.delete(f"/v1/people/{person_id}",
                                headers=tokens.headers(CCAS, SCOPES))
    assert other.status == 404
    erased = await client.delete(f"/v1/people/{person_id}", headers=tokens.headers(TEAM,
                                                                                   SCOPES))
    assert erased.status == 204
    again = await client.delete(f"/v1/people/{person_id}", headers=tokens.headers(TEAM,
                                                                                  SCOPES))
    assert again.status == 204
    assert (await get(client, tokens, f"/v1/people/{person_id}")).status == 410
    row = await client.app[RUNTIME].pool.fetchrow(
        "SELECT wrapped_key, identity FROM intake.people WHERE person_id = $1",
        uuid.UUID(person_id))
    assert row["wrapped_key"] is None and row["identity"] is None
    types = await client.app[RUNTIME].pool.fetch(
        "SELECT headers FROM intake.outbox ORDER BY id")
    assert dict(types[-1]["headers"])["ce_type"] == "fr.relais.intake.person_erased.v1"
    await post(client, tokens, "/v1/intakes", INTAKE | {"person_id": person_id}, status=422)


async def test_intakes_are_listed_page_by_page(client: Client, tokens: Tokens) -> None:
    made = [await post(client, tokens, "/v1/intakes", INTAKE) for _ in range(5)]
    await post(client, tokens, "/v1/intakes", INTAKE | {"site": "centre-social-nord"})
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        path = "/v1/intakes?site=qpv-etouvie&limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = await (await get(client, tokens, path)).json()
        seen += [i["id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [i["id"] for i in made]
    other_org = await (await get(client, tokens, "/v1/intakes", CCAS)).json()
    assert other_org["items"] == []
    assert (await get(client, tokens, "/v1/intakes?cursor=nonsense")).status == 400


async def test_a_batch_answers_per_record(client: Client, tokens: Tokens) -> None:
    items = [
        {"idempotency_key": "a", "intake": INTAKE},
        {"idempotency_key": "b", "intake": INTAKE | {"needs": ["flying"]}},
        {"idempotency_key": "a", "intake": INTAKE},
        {"idempotency_key": "c", "intake": INTAKE | {"person_id": str(uuid.uuid4())}},
    ]
    response = await client.post("/v1/intakes:batch", json={"items": items},
                                 headers=tokens.headers(TEAM, SCOPES))
    assert response.status == 200
    body = await response.json()
    assert [r["status"] for r in body["results"]] == ["created", "invalid", "duplicate",
                                                     "invalid"]
    assert body["results"][1]["errors"][0]["field"] == "needs.0"
    assert body["results"][0]["intake"]["id"] == body["results"][2]["intake"]["id"]
    assert (body["created"], body["duplicates"], body["invalid"]) == (1, 1, 2)
    too_many = await client.post("/v1/intakes:batch", json={"items": [items[0]] * 501},
                                 headers=tokens.headers(TEAM, SCOPES))
    assert too_many.status == 422


async def test_a_signal_from_the_network_becomes_an_intake(client: Client,
                                                           tokens: Tokens) -> None:
    signal = await post(client, tokens, "/v1/signals", {
        "relay_kind": "sports_club", "relay_name": "US Étouvie foot", "commune": "80021",
        "age_bracket": "16_17", "needs": ["training"],
        "hint": "Un jeune au city stade le mercredi"})
    assert signal["status"] == "open" and "hint" not in signal
    listed = await (await get(client, tokens, "/v1/signals?status=open")).json()
    assert [s["id"] for s in listed["items"]] == [signal["id"]]
    intake = await post(client, tokens, "/v1/intakes", INTAKE | {"signal_id": signal["id"]})
    closed = await (await get(client, tokens, "/v1/signals?status=closed")).json()
    assert closed["items"][0]["outcome"] == "reached"
    assert closed["items"][0]["intake_id"] == intake["id"]

    other = await post(client, tokens, "/v1/signals", {"relay_kind": "mayor",
                                                      "relay_name": "Mairie"})
    response = await client.post(f"/v1/signals/{other['id']}/close",
                                 json={"outcome": "not_found"},
                                 headers=tokens.headers(TEAM, SCOPES))
    assert (await response.json())["outcome"] == "not_found"
    twice = await client.post(f"/v1/signals/{other['id']}/close",
                              json={"outcome": "not_found"}, headers=tokens.headers(TEAM, SCOPES))
    assert twice.status == 409
    await asyncio.sleep(0)
