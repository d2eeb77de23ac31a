"""A hostile partner with valid credentials, against the consent gate and a person's data
(issue: "the consent gate can be bypassed by any partner"). Each test failed before the rule
of services/runtime/access.py was enforced."""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from services.runtime.app import RUNTIME
from tests.conftest import wait_until
from tests.e2e.conftest import Tokens
from tests.integration.conftest import Client, apply_again

TEAM, ML, FT, CCAS = "equipe-aller-vers", "mission-locale", "france-travail", "ccas"
SCOPES = ("intake:write intake:read consent:write consent:read people:read people:erase "
          "referral:read referral:write")
INTAKE = {"site": "qpv-etouvie", "channel": "mobile_permanence",
          "contacted_at": "2026-11-20T10:00:00+01:00", "needs": ["employment"],
          "age_bracket": "18_25", "commune": "80021"}


def headers(tokens: Tokens, org: str, **extra: str) -> dict[str, str]:
    return tokens.headers(org, SCOPES, **{"Idempotency-Key": str(uuid.uuid4())} | extra)


async def post(client: Client, tokens: Tokens, org: str, path: str, body: Any) -> Any:
    return await client.post(path, json=body, headers=headers(tokens, org))


async def met_by_team(client: Client, tokens: Tokens) -> dict[str, Any]:
    response = await post(client, tokens, TEAM, "/v1/intakes", INTAKE | {
        "identity": {"first_name": "Léa", "phone": "06 12 34 56 78"},
        "note": "Cherche un apprentissage."})
    assert response.status == 201, await response.text()
    return dict(await response.json())


def consent(person: str, recipients: list[str], categories: list[str]) -> dict[str, Any]:
    return {"person_id": person, "purposes": ["referral_partner", "share_dossier"],
            "recipients": recipients, "categories": categories, "notice_version": "2026-01",
            "method": "signed_screen", "captured_by": "conseillere-camion"}


async def referral_of(client: Client, tokens: Tokens, intake_id: str, status: str) -> Any:
    found: dict[str, Any] = {}

    async def arrived() -> bool:
        response = await client.get(f"/v1/referrals?intake_id={intake_id}",
                                    headers=tokens.headers(TEAM, SCOPES))
        items = (await response.json())["items"]
        found.update(items[0] if items and items[0]["status"] == status else {})
        return bool(found)

    await wait_until(arrived, 30, f"a {status} referral")
    return found


async def test_an_id_learned_elsewhere_grants_nothing(client: Client, tokens: Tokens) -> None:
    person = (await met_by_team(client, tokens))["person_id"]

    claimed = await post(client, tokens, ML, "/v1/intakes", INTAKE | {"person_id": person})
    stranger = await post(client, tokens, ML, "/v1/intakes",
                          INTAKE | {"person_id": str(uuid.uuid4())})
    assert claimed.status == stranger.status == 422
    claimed_body, stranger_body = await claimed.json(), await stranger.json()
    assert claimed_body["errors"] == stranger_body["errors"]  # no oracle of who exists
    assert claimed_body["errors"][0]["code"] == "unknown_person"

    overwrite = await post(client, tokens, ML, "/v1/intakes", INTAKE | {
        "person_id": person, "identity": {"phone": "07 00 00 00 00"}})
    assert overwrite.status == 422
    read = await client.get(f"/v1/people/{person}", headers=tokens.headers(ML, SCOPES))
    assert read.status == 404
    erase = await client.delete(f"/v1/people/{person}", headers=tokens.headers(ML, SCOPES))
    assert erase.status == 404
    standing = await client.get(f"/v1/people/{person}/standing",
                                headers=tokens.headers(ML, SCOPES))
    assert standing.status == 404

    mine = await client.get(f"/v1/people/{person}", headers=tokens.headers(TEAM, SCOPES))
    assert mine.status == 200
    assert (await mine.json())["identity"]["phone"] == "06 12 34 56 78"
    count = await client.app[RUNTIME].pool.fetchval(
        "SELECT count(*) FROM intake.intakes WHERE person_id = $1", uuid.UUID(person))
    assert count == 1


async def test_no_one_records_a_consent_for_a_person_they_did_not_meet(
    client: Client, tokens: Tokens
) -> None:
    intake = await met_by_team(client, tokens)
    person = intake["person_id"]
    await referral_of(client, tokens, intake["id"], "awaiting_consent")

    forged = await post(client, tokens, CCAS, "/v1/consents",
                        consent(person, [CCAS], ["identity", "contact", "note", "needs"]))
    assert forged.status == 422
    assert (await forged.json())["errors"][0]["field"] == "person_id"
    assert await client.app[RUNTIME].pool.fetchval("SELECT count(*) FROM consent.consents") \
        == 0
    dossier_list = await client.get("/v1/referrals?role=recipient",
                                    headers=tokens.headers(CCAS, SCOPES))
    assert (await dossier_list.json())["items"] == []


async def test_a_recipient_grants_itself_nothing(client: Client, tokens: Tokens) -> None:
    """Named for needs only, the Mission locale may attach its own contact, but does not
    become one that met the person: it reads no identity and records no consent."""
    person = (await met_by_team(client, tokens))["person_id"]
    granted = await post(client, tokens, TEAM, "/v1/consents", consent(person, [ML], ["needs"]))
    assert granted.status == 201

    async def named() -> bool:
        response = await client.get(f"/v1/people/{person}/standing",
                                    headers=tokens.headers(ML, SCOPES))
        return response.status == 200

    await wait_until(named, 30, "the consent to reach the intake service")
    attached = await post(client, tokens, ML, "/v1/intakes", INTAKE | {"person_id": person})
    assert attached.status == 201
    corrected = await post(client, tokens, ML, "/v1/intakes", INTAKE | {
        "person_id": person, "identity": {"phone": "07 00 00 00 00"}})
    assert corrected.status == 403

    standing = await (await client.get(f"/v1/people/{person}/standing",
                                       headers=tokens.headers(ML, SCOPES))).json()
    assert standing["met"] is False and standing["categories"] == []
    assert "record_consent" not in standing["may"]
    self_grant = await post(client, tokens, ML, "/v1/consents",
                            consent(person, [ML], ["identity", "contact", "note"]))
    assert self_grant.status == 403
    read = await client.get(f"/v1/people/{person}", headers=tokens.headers(ML, SCOPES))
    assert read.status == 404  # no personal category was consented


async def test_a_recipient_sees_a_referral_only_once_a_consent_hands_it_off(
    client: Client, tokens: Tokens
) -> None:
    intake = await met_by_team(client, tokens)
    person = intake["person_id"]
    waiting = await referral_of(client, tokens, intake["id"], "awaiting_consent")
    assert waiting["target"] == ML

    listed = await client.get("/v1/referrals?role=recipient", headers=tokens.headers(ML, SCOPES))
    assert (await listed.json())["items"] == []
    everything = await client.get("/v1/referrals", headers=tokens.headers(ML, SCOPES))
    assert (await everything.json())["items"] == []
    one = await client.get(f"/v1/referrals/{waiting['id']}", headers=tokens.headers(ML, SCOPES))
    assert one.status == 404

    granted = await post(client, tokens, TEAM, "/v1/consents",
                         consent(person, [ML], ["needs", "situation"]))
    await referral_of(client, tokens, intake["id"], "requested")
    seen = await (await client.get(f"/v1/referrals/{waiting['id']}",
                                   headers=tokens.headers(ML, SCOPES))).json()
    assert seen["person_id"] == person

    withdrawn = await client.post(f"/v1/consents/{(await granted.json())['id']}/withdraw",
                                  json={"requested_by": "person", "channel": "in_person"},
                                  headers=tokens.headers(TEAM, SCOPES))
    assert withdrawn.status == 200
    await referral_of(client, tokens, intake["id"], "cancelled")

    async def id_gone() -> bool:
        response = await client.get(f"/v1/referrals/{waiting['id']}",
                                    headers=tokens.headers(ML, SCOPES))
        return (await response.json())["person_id"] is None

    await wait_until(id_gone, 30, "the recipient to lose the person's id")


async def test_a_recipient_withdraws_its_own_part_only(client: Client, tokens: Tokens) -> None:
    person = (await met_by_team(client, tokens))["person_id"]
    granted = await (await post(client, tokens, TEAM, "/v1/consents",
                                consent(person, [ML, FT], ["needs"]))).json()
    url = f"/v1/consents/{granted['id']}/withdraw"
    said = {"requested_by": "person", "channel": "phone"}

    for body in ({"recipients": [FT]}, {"recipients": [ML, FT]}, {"purposes": ["share_dossier"]},
                 {"recipients": [ML], "purposes": ["referral_partner"]}):
        refused = await client.post(url, json=said | body, headers=tokens.headers(ML, SCOPES))
        assert refused.status == 403, body
    state = await (await client.get(f"/v1/consents/{granted['id']}",
                                    headers=tokens.headers(TEAM, SCOPES))).json()
    assert state["recipients"] == [ML, FT] and state["status"] == "active"

    own = await client.post(url, json=said, headers=tokens.headers(ML, SCOPES))
    assert own.status == 200
    assert (await own.json())["recipients"] == [FT]
    check = await client.get(f"/v1/consents:check?person_id={person}&purpose=referral_partner"
                             f"&recipient={FT}", headers=tokens.headers(TEAM, SCOPES))
    assert (await check.json())["allowed"] is True


async def commission_referral(client: Client, tokens: Tokens) -> str:
    response = await post(client, tokens, TEAM, "/v1/intakes", INTAKE | {
        "needs": ["employment", "housing", "health"]})
    intake = await response.json()
    await referral_of(client, tokens, intake["id"], "awaiting_consent")
    await post(client, tokens, TEAM, "/v1/consents", {
        "person_id": intake["person_id"], "purposes": ["referral_commission"],
        "recipients": ["commission-remobilisation"], "categories": ["needs"],
        "notice_version": "2026-01", "method": "signed_screen", "captured_by": "x"})
    return str((await referral_of(client, tokens, intake["id"], "requested"))["id"])


async def test_only_its_declared_members_act_for_the_commission(
    client: Client, tokens: Tokens
) -> None:
    referral_id = await commission_referral(client, tokens)
    outsider = "asso-boussole"  # not a member of the demo commission
    session = {"held_on": "2026-12-03", "members": [outsider], "referral_ids": [referral_id]}
    refused = await post(client, tokens, outsider, "/v1/commission/sessions", session)
    assert refused.status == 403
    sneaked = await post(client, tokens, ML, "/v1/commission/sessions",
                         session | {"members": [ML, outsider]})
    assert sneaked.status == 422

    opened = await post(client, tokens, ML, "/v1/commission/sessions",
                        session | {"members": [ML, FT]})
    assert opened.status == 201, await opened.text()
    session_id = (await opened.json())["id"]
    decision = {"referral_id": referral_id, "decision": "refer_partner", "partner": outsider,
                "text": "À nous."}
    for org in (outsider, CCAS):  # CCAS is a member, but was not present: it cannot see it
        response = await client.post(f"/v1/commission/sessions/{session_id}/decisions",
                                     json=decision, headers=tokens.headers(org, SCOPES))
        assert response.status in (403, 404), org
    agenda = await (await client.get(f"/v1/commission/sessions/{session_id}",
                                     headers=tokens.headers(ML, SCOPES))).json()
    assert agenda["agenda"][0]["decision"] is None


async def test_the_identity_read_never_follows_the_request_host(
    client: Client, tokens: Tokens
) -> None:
    """The dossier reads the identity from the intake service at its configured address: a
    forged Host header does not send the caller's token elsewhere."""
    seen: list[str] = []

    async def trap(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        return web.json_response({}, status=500)

    trap_app = web.Application()
    trap_app.router.add_route("*", "/{tail:.*}", trap)
    async with TestServer(trap_app, host="127.0.0.1") as trap_server:
        intake = await met_by_team(client, tokens)
        await post(client, tokens, TEAM, "/v1/consents",
                   consent(intake["person_id"], [ML], ["identity", "contact", "needs"]))
        referral = await referral_of(client, tokens, intake["id"], "requested")
        response = await client.get(
            f"/v1/referrals/{referral['id']}/dossier",
            headers=tokens.headers(ML, SCOPES, Host=f"127.0.0.1:{trap_server.port}"))
        assert response.status == 200, await response.text()
        dossier = await response.json()
    assert seen == []
    assert dossier["person"]["identity"]["first_name"] == "Léa"


async def test_contacts_recorded_before_the_rule_do_not_count_as_meeting(
    client: Client, tokens: Tokens
) -> None:
    """Before the access rule any organisation could attach a contact to an id it learned;
    the upgrade (intake migration 006) keeps only the first contact's organisation as one
    that met the person."""
    person = (await met_by_team(client, tokens))["person_id"]
    pool = client.app[RUNTIME].pool
    await pool.execute(  # what the old code let the Mission locale write
        "INSERT INTO intake.intakes (id, org, person_id, site, channel, contacted_at, needs, flags,"
        " visit_number, basis) SELECT gen_random_uuid(), $2, person_id, site, channel,"
        " contacted_at, needs, flags, 2, 'met' FROM intake.intakes WHERE person_id = $1",
        uuid.UUID(person), ML)
    assert (await client.get(f"/v1/people/{person}",
                             headers=tokens.headers(ML, SCOPES))).status == 200
    await apply_again(pool, "intake", "006_standing_backfill.sql")
    assert (await client.get(f"/v1/people/{person}",
                             headers=tokens.headers(ML, SCOPES))).status == 404
    assert (await client.get(f"/v1/people/{person}",
                             headers=tokens.headers(TEAM, SCOPES))).status == 200
