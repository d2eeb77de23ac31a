"""Broken object level authorisation (OWASP API1:2023), for every operation of the OpenAPI
document that takes an object id: another organisation, holding every ordinary scope, gets
403 or 404 and changes nothing. The list of operations comes from the committed document, so
a new route with an id fails here until it says whose object it takes."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

from services.intake.api import EXAMPLE_PNG
from services.runtime.app import RUNTIME
from tests.conftest import wait_until
from tests.e2e.conftest import Tokens
from tests.integration.conftest import Client

DOCUMENT = json.loads((Path(__file__).resolve().parents[2] / "schemas" / "openapi.json")
                      .read_text())
TEAM, ML, OUTSIDER = "equipe-aller-vers", "mission-locale", "asso-boussole"
# Every ordinary scope; directory:write, audit:read and stats:read are territory-wide roles
# given to coordinators, auditors and funders, not to a partner; programme:write is a
# programme's coordination's (tests/integration/test_programmes.py).
SCOPES = ("intake:write intake:read consent:write consent:read people:read people:erase "
          "referral:read referral:write notification:read notification:write")

# Which object a path's parameter names, and who owns it in the world below.
OBJECTS: dict[str, str] = {
    r"/v1/intakes/\{id\}": "intake",
    r"/v1/people/\{id\}/evidence/\{sha256\}": "evidence",
    r"/v1/people/\{id\}(/.*)?": "person",
    r"/v1/consents/\{id\}(/.*)?": "consent",
    r"/v1/referrals/\{id\}(/.*)?": "referral",
    r"/v1/signals/\{id\}(/.*)?": "signal",
    r"/v1/commission/sessions/\{id\}(/.*)?": "session",
    r"/v1/webhooks/endpoints/\{id\}": "endpoint",
    r"/v1/webhooks/deliveries/\{id\}(/.*)?": "delivery",
    r"/v1/recipients/\{org\}": "org",
    r"/v1/partners/\{id\}/capacity": "org",
    r"/v1/directory/\w+/\{id\}": "directory item",  # the keeper's, or its programme's
}
PUBLIC = {"/v1/notices/{version}",  # reference data, the same for every organisation
          # territory-wide by design, as audit:read: the scope people:export is for the
          # data-protection officer answering an access request (tests/integration/
          # test_export.py checks that without it the export is refused)
          "/v1/people/{id}/export"}
READ_BY = {"/v1/referrals/{id}/dossier": ML}  # the recipient's, not the sender's


def operations_with_ids() -> list[tuple[str, str, dict[str, Any]]]:
    return [(method.upper(), path, op) for path, item in DOCUMENT["paths"].items()
            for method, op in item.items() if "{" in path]


def object_of(path: str) -> str | None:
    return next((kind for pattern, kind in OBJECTS.items() if re.fullmatch(pattern, path)),
                None)


def test_every_operation_with_an_id_says_whose_object_it_takes() -> None:
    unknown = [f"{m} {p}" for m, p, _ in operations_with_ids()
               if p not in PUBLIC and object_of(p) is None]
    assert unknown == [], "add these to OBJECTS (and the world) in tests/security/test_bola.py"


async def request(client: Client, tokens: Tokens, org: str, method: str, path: str,
                  body: Any = None) -> Any:
    headers = tokens.headers(org, SCOPES, **{"Idempotency-Key": str(uuid.uuid4())})
    return await client.request(method, path, json=body, headers=headers)


async def ok(client: Client, tokens: Tokens, org: str, method: str, path: str,
             body: Any = None) -> Any:
    response = await request(client, tokens, org, method, path, body)
    assert response.status < 300, (path, response.status, await response.text())
    return await response.json()


async def world(client: Client, tokens: Tokens) -> dict[str, tuple[str, str]]:
    """One object of each kind, with its owner: the outreach team met a person, who
    consented to the Mission locale; the referral was handed off; the Mission locale has a
    webhook endpoint (with a delivery) and opened a commission session."""
    intake = await ok(client, tokens, TEAM, "POST", "/v1/intakes", {
        "site": "qpv-etouvie", "channel": "mobile_permanence",
        "contacted_at": "2026-11-20T10:00:00+01:00", "needs": ["employment"],
        "age_bracket": "18_25", "commune": "80021", "identity": {"first_name": "Léa"}})
    person = intake["person_id"]
    endpoint = await ok(client, tokens, ML, "POST", "/v1/webhooks/endpoints",
                        {"url": "https://hooks.mission-locale.example.org/relais"})
    consent = await ok(client, tokens, TEAM, "POST", "/v1/consents", {
        "person_id": person, "purposes": ["referral_partner", "share_dossier"],
        "recipients": [ML], "categories": ["identity", "needs"], "notice_version": "2026-01",
        "method": "signed_screen", "captured_by": "x"})
    evidence = await ok(client, tokens, TEAM, "POST", f"/v1/people/{person}/evidence", {
        "kind": "signature", "media_type": "image/png", "content": EXAMPLE_PNG})
    signal = await ok(client, tokens, TEAM, "POST", "/v1/signals", {
        "relay_kind": "shop", "relay_name": "Boulangerie", "needs": ["employment"]})
    found: dict[str, Any] = {}

    async def handed_off_and_delivered() -> bool:
        referrals = await ok(client, tokens, TEAM, "GET", f"/v1/referrals?intake_id={intake['id']}")
        deliveries = await ok(client, tokens, ML, "GET", "/v1/webhooks/deliveries")
        if referrals["items"] and referrals["items"][0]["status"] == "requested" \
                and deliveries["items"]:
            found.update(referral=referrals["items"][0]["id"],
                         delivery=deliveries["items"][0]["id"])
        return bool(found)

    await wait_until(handed_off_and_delivered, 30, "the hand-off and its webhook delivery")
    session = await ok(client, tokens, ML, "POST", "/v1/commission/sessions",
                       {"held_on": "2026-12-03", "members": [ML], "referral_ids": []})
    return {"intake": (intake["id"], TEAM), "person": (person, TEAM),
            "evidence": (f"{person} {evidence['sha256']}", TEAM),
            "consent": (consent["id"], TEAM), "referral": (found["referral"], TEAM),
            "signal": (signal["id"], TEAM), "session": (session["id"], ML),
            "endpoint": (endpoint["id"], ML), "delivery": (found["delivery"], ML),
            "org": (TEAM, TEAM), "directory item": ("qpv-etouvie", TEAM)}


async def test_no_organisation_reaches_another_ones_objects(client: Client,
                                                            tokens: Tokens) -> None:
    objects = await world(client, tokens)
    reached = []
    for method, template, op in operations_with_ids():
        if template in PUBLIC:
            continue
        object_id, owner = objects[str(object_of(template))]
        path = template
        for part in object_id.split():  # a person and their evidence: two ids, in order
            path = re.sub(r"\{\w+\}", part, path, count=1)
        path = re.sub(r"\{\w+\}", object_id, path)
        if method == "GET":  # the id is real: its owner reaches it
            mine = await request(client, tokens, READ_BY.get(template, owner), method, path)
            assert mine.status == 200, (path, mine.status, await mine.text())
        body = op.get("requestBody", {}).get("content", {}).get("application/json", {}) \
            .get("example")
        theirs = await request(client, tokens, OUTSIDER, method, path, body)
        if theirs.status not in (403, 404):
            reached.append((method, template, theirs.status, await theirs.text()))
    assert reached == []

    # and nothing changed for the owners
    person = await ok(client, tokens, TEAM, "GET", f"/v1/people/{objects['person'][0]}")
    assert person["identity"]["first_name"] == "Léa"
    consent = await ok(client, tokens, TEAM, "GET", f"/v1/consents/{objects['consent'][0]}")
    assert consent["status"] == "active"
    referral = await ok(client, tokens, TEAM, "GET", f"/v1/referrals/{objects['referral'][0]}")
    assert referral["status"] == "requested"
    endpoints = await ok(client, tokens, ML, "GET", "/v1/webhooks/endpoints")
    assert [e["id"] for e in endpoints["items"]] == [objects["endpoint"][0]]
    pool = client.app[RUNTIME].pool
    assert await pool.fetchval("SELECT status FROM intake.signals") == "open"
