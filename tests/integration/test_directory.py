"""The directory: served to members, replaced as a whole by `directory:write`, checked on
every intake, and followed by the referral and notify services through its event."""

from __future__ import annotations

import copy
import uuid
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from services.cli import SERVICE_NAMES, service_specs
from services.runtime.app import RUNTIME, create_app
from services.runtime.settings import Settings
from tests.conftest import wait_until
from tests.e2e.conftest import Tokens
from tests.integration.conftest import Client

ADMIN = "directory:write intake:write"
INTAKE = {"site": "qpv-etouvie", "channel": "mobile_permanence",
          "contacted_at": "2026-11-20T10:00:00+01:00", "needs": ["employment"]}


async def test_the_demo_directory_is_there_on_first_start(client: Client,
                                                          tokens: Tokens) -> None:
    response = await client.get("/v1/directory", headers=tokens.headers("ccas", "intake:read"))
    assert response.status == 200
    directory = await response.json()
    kinds = {o["kind"] for o in directory["organisations"]}
    assert {"mission_locale", "france_travail", "cap_emploi", "ccas", "plie", "association",
            "commission", "outreach_team"} <= kinds
    qpv = [s for s in directory["sites"] if s["kind"] == "qpv_square"]
    assert len(qpv) == 4
    assert all(p["mobile"] for p in directory["permanences"] if p["site"] in
               {s["id"] for s in qpv})
    assert (await client.get("/v1/directory")).status == 401


async def test_a_directory_with_dangling_references_is_refused(client: Client,
                                                               tokens: Tokens) -> None:
    current = await (await client.get("/v1/directory",
                                      headers=tokens.headers("ccas", ADMIN))).json()
    broken = copy.deepcopy(current)
    broken["permanences"][0]["site"] = "nowhere"
    broken["consortia"][0]["members"].append("ghost")
    response = await client.put("/v1/directory", json=broken,
                                headers=tokens.headers("ccas", ADMIN))
    assert response.status == 422
    message = (await response.json())["errors"][0]["message"]
    assert "unknown site nowhere" in message and "unknown organisation ghost" in message
    forbidden = await client.put("/v1/directory", json=current,
                                 headers=tokens.headers("ccas", "intake:write"))
    assert forbidden.status == 403


async def test_a_new_directory_reaches_every_service(client: Client, tokens: Tokens) -> None:
    current: dict[str, Any] = await (await client.get(
        "/v1/directory", headers=tokens.headers("ccas", ADMIN))).json()
    current["organisations"].append({
        "id": "epide", "name": "EPIDE d'Amiens", "kind": "association",
        "email": "contact@epide.example.org", "needs": ["training"],
        "counsellors": ["m.leroy@epide.example.org"]})
    current["sites"].append({"id": "gare", "name": "Parvis de la gare", "kind": "public_space"})
    current["organisations"] = [o for o in current["organisations"] if o["id"] != "plie"]
    current["consortia"] = [c | {"members": [m for m in c["members"] if m != "plie"]}
                            for c in current["consortia"]]
    current["organisations"] = [o | {"members": [m for m in o.get("members", [])
                                                 if m != "plie"]}
                                for o in current["organisations"]]
    response = await client.put("/v1/directory", json=current,
                                headers=tokens.headers("ccas", ADMIN))
    assert response.status == 200
    assert response.headers["ETag"] == '"2"'
    pool = client.app[RUNTIME].pool

    async def followed() -> bool:
        partner = await pool.fetchval("SELECT 1 FROM referral.partners WHERE id = 'epide'")
        recipient = await pool.fetchval("SELECT counsellors FROM notify.recipients"
                                        " WHERE org = 'epide'")
        dropped = await pool.fetchval("SELECT NOT active FROM referral.partners WHERE id = 'plie'")
        return bool(partner and recipient == ["m.leroy@epide.example.org"] and dropped)

    await wait_until(followed, 30, "referral and notify to follow the directory")
    intake = await client.post("/v1/intakes", json=INTAKE | {"site": "gare"},
                               headers=tokens.headers("ccas", ADMIN, **{
                                   "Idempotency-Key": str(uuid.uuid4())}))
    assert intake.status == 201
    partners = await (await client.get("/v1/partners", headers=tokens.headers(
        "ccas", "referral:read"))).json()
    ids = {p["id"] for p in partners["items"]}
    assert "epide" in ids and "plie" not in ids, "a dropped organisation is no candidate"


async def test_an_intake_at_an_unknown_place_is_refused(client: Client, tokens: Tokens) -> None:
    headers = tokens.headers("ccas", ADMIN, **{"Idempotency-Key": str(uuid.uuid4())})
    response = await client.post("/v1/intakes", json=INTAKE | {"site": "la-lune"},
                                 headers=headers)
    assert response.status == 422
    assert (await response.json())["errors"][0]["field"] == "site"
    wrong_place = INTAKE | {"permanence": "camion-amiens-nord-mercredi"}
    response = await client.post("/v1/intakes", json=wrong_place, headers=headers)
    assert (await response.json())["errors"][0]["field"] == "permanence"
    right = INTAKE | {"permanence": "camion-etouvie-mardi"}
    response = await client.post("/v1/intakes", json=right, headers=headers)
    assert response.status == 201


async def test_a_permanence_alone_says_where(client: Client, tokens: Tokens) -> None:
    body = {k: v for k, v in INTAKE.items() if k != "site"} | {
        "permanence": "permanence-centre-social-nord"}
    response = await client.post("/v1/intakes", json=body, headers=tokens.headers(
        "equipe-aller-vers", ADMIN, **{"Idempotency-Key": str(uuid.uuid4())}))
    assert response.status == 201, await response.text()
    assert (await response.json())["site"] == "centre-social-nord"
    nowhere = {k: v for k, v in INTAKE.items() if k != "site"}
    response = await client.post("/v1/intakes", json=nowhere, headers=tokens.headers(
        "equipe-aller-vers", ADMIN, **{"Idempotency-Key": str(uuid.uuid4())}))
    assert response.status == 422


async def test_consortium_members_see_each_others_intakes(client: Client,
                                                          tokens: Tokens) -> None:
    created = await client.post("/v1/intakes", json=INTAKE, headers=tokens.headers(
        "equipe-aller-vers", ADMIN, **{"Idempotency-Key": str(uuid.uuid4())}))
    intake_id = (await created.json())["id"]
    read = "intake:read"
    member = await client.get(f"/v1/intakes/{intake_id}",
                              headers=tokens.headers("mission-locale", read))
    outsider = await client.get(f"/v1/intakes/{intake_id}", headers=tokens.headers("ccas",
                                                                                 read))
    assert member.status == 200  # both in « Réseau d'insertion des jeunes »
    assert outsider.status == 404
    listed = await (await client.get("/v1/intakes", headers=tokens.headers(
        "mission-locale", read))).json()
    assert [i["id"] for i in listed["items"]] == [intake_id]


async def test_a_restart_keeps_the_loaded_directory(client: Client, tokens: Tokens,
                                                    settings: Settings) -> None:
    current: dict[str, Any] = await (await client.get(
        "/v1/directory", headers=tokens.headers("ccas", ADMIN))).json()
    ml = next(o for o in current["organisations"] if o["id"] == "mission-locale")
    ml["email"] = "nouvelle-adresse@mission-locale.example.org"
    await client.put("/v1/directory", json=current, headers=tokens.headers("ccas", ADMIN))
    pool = client.app[RUNTIME].pool

    async def followed() -> bool:
        email = await pool.fetchval("SELECT email FROM notify.recipients WHERE org = $1",
                                    "mission-locale")
        return bool(email == ml["email"])

    await wait_until(followed, 30, "notify to follow the directory")
    assert settings.database_url
    restarted = create_app(settings, settings.database_url, service_specs(SERVICE_NAMES))
    async with TestClient(TestServer(restarted, host="127.0.0.1")):
        assert await followed(), "the restart put the demo directory back"
