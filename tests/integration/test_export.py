"""Issue #14, the right of access (GDPR art. 15): `GET /v1/people/{id}/export` gathers what
every service holds about a person for the data-protection officer, as JSON and as a French
document; the export is itself logged; without `people:export` it is refused."""

from __future__ import annotations

import uuid
from typing import Any

from services.runtime.app import RUNTIME
from tests.conftest import wait_until
from tests.e2e.conftest import Tokens
from tests.e2e.test_skeleton import consent_body
from tests.integration.conftest import Client
from tests.integration.test_intake import IDENTITY, INTAKE, SCOPES, TEAM, post

ML = "mission-locale"
DPO = ("coordination", "people:export")


async def handed_off(client: Client, tokens: Tokens) -> str:
    """A person met with their identity and a note, who consented to the Mission locale; the
    referral handed off; the Mission locale read their data."""
    intake = await post(client, tokens, "/v1/intakes",
                        INTAKE | {"identity": IDENTITY, "note": "Cherche un CAP cuisine"})
    person = str(intake["person_id"])
    await post(client, tokens, "/v1/consents", consent_body(person) | {
        "categories": ["identity", "contact", "needs"]})
    pool = client.app[RUNTIME].pool

    async def requested() -> bool:
        return bool(await pool.fetchval(
            "SELECT count(*) FROM referral.referrals WHERE person_id = $1 AND status ="
            " 'requested'", uuid.UUID(person))) and bool(await pool.fetchval(
                "SELECT count(*) FROM notify.notifications WHERE person_id = $1",
                uuid.UUID(person)))

    await wait_until(requested, 30, "the hand-off and its notifications")
    read = await client.get(f"/v1/people/{person}", headers=tokens.headers(ML, "people:read"))
    assert read.status == 200, await read.text()
    return person


async def export(client: Client, tokens: Tokens, person: str, **headers: str) -> Any:
    return await client.get(f"/v1/people/{person}/export",
                            headers=tokens.headers(*DPO, **headers))


async def test_the_officer_gets_everything_every_service_holds_and_it_is_logged(
        client: Client, tokens: Tokens) -> None:
    person = await handed_off(client, tokens)
    response = await export(client, tokens, person)
    assert response.status == 200, await response.text()
    held = await response.json()
    assert held["identity"]["last_name"] == IDENTITY["last_name"]
    assert held["identity"]["email"] == IDENTITY["email"]
    assert held["notes"] == ["Cherche un CAP cuisine"]
    assert [c["org"] for c in held["contacts"]] == [TEAM]
    assert [r["org"] for r in held["reads"]] == [ML], "the Mission locale's read"
    [consent] = held["consents"]
    assert consent["consent"]["recipients"] == [ML]
    assert [c["kind"] for c in consent["changes"]] == ["granted"]
    [referral] = held["referrals"]
    assert referral["target"] == ML and referral["status"] == "requested"
    assert [h["status"] for h in referral["history"]][-1] == "requested"
    assert held["notifications"] and {n["recipient_org"] for n in held["notifications"]} == {ML}
    assert held["exported_by"] == DPO[0] and held["erased_at"] is None

    pool = client.app[RUNTIME].pool
    logged = await pool.fetch("SELECT org, categories FROM intake.access_log WHERE person_id"
                              " = $1 ORDER BY id", uuid.UUID(person))
    assert [r["org"] for r in logged] == [ML, DPO[0]], "the export is a logged read"
    assert sorted(logged[-1]["categories"]) == ["contact", "identity", "needs", "note",
                                                "situation"]
    events = await pool.fetch("SELECT value FROM intake.outbox WHERE headers::text LIKE"
                              " '%personal_data_read%' ORDER BY id")
    assert DPO[0].encode() in events[-1]["value"], "and on its way to the consent trail"


async def test_the_french_document_names_people_and_organisations(
        client: Client, tokens: Tokens) -> None:
    person = await handed_off(client, tokens)
    response = await export(client, tokens, person, Accept="text/html")
    assert response.status == 200 and response.content_type == "text/html"
    page = await response.text()
    assert '<html lang="fr"' in page and "<h1>Vos données dans Relais</h1>" in page
    for shown in (IDENTITY["last_name"], IDENTITY["phone"], "Cherche un CAP cuisine",
                  "Mission locale", "orientation vers un partenaire", "emploi",
                  "Qui a lu vos données"):
        assert shown in page, shown
    assert "referral_partner" not in page and "mission-locale" not in page, "no codes"
    assert "Content-Security-Policy" in response.headers


async def test_without_the_scope_or_for_nobody_it_is_refused(
        client: Client, tokens: Tokens) -> None:
    person = await handed_off(client, tokens)
    refused = await client.get(f"/v1/people/{person}/export",
                               headers=tokens.headers(TEAM, SCOPES))
    assert refused.status == 403
    for path in ("/v1/consents:held", "/v1/referrals:held", "/v1/notifications:held"):
        alone = await client.get(path, params={"person_id": person},
                                 headers=tokens.headers(ML, "consent:read referral:read "
                                                        "notification:read"))
        assert alone.status == 403, path
    nobody = await export(client, tokens, str(uuid.uuid4()))
    assert nobody.status == 404 and nobody.content_type == "application/problem+json"


async def test_an_erased_person_s_export_says_so_and_holds_no_identity(
        client: Client, tokens: Tokens) -> None:
    person = await handed_off(client, tokens)
    erased = await client.delete(f"/v1/people/{person}", headers=tokens.headers(TEAM, SCOPES))
    assert erased.status == 204
    held = await (await export(client, tokens, person)).json()
    assert held["erased_at"] is not None
    assert held["identity"] is None and held["notes"] == []
    assert held["contacts"] and held["referrals"], "what stays, without a name"
    page = await (await export(client, tokens, person, Accept="text/html")).text()
    assert "Vos données personnelles ont été effacées" in page
    assert IDENTITY["last_name"] not in page
