"""What the programmes met in their first week (issue #16, bugs 1 to 3), over real HTTP and
PostgreSQL: the dossier gives the recipient exactly what the consent covers, a returning
person's new contact joins the referral already open instead of opening another, and routing
chooses the commission that covers the person's commune."""

from __future__ import annotations

import argparse
import copy
import json
import uuid
from typing import Any

import pytest

from services.cli import DEMO_SCOPES, client_command
from services.runtime.app import RUNTIME
from services.runtime.settings import Settings
from tests.conftest import wait_until
from tests.e2e.conftest import Tokens
from tests.integration.conftest import Client
from tests.integration.test_oauth import get_token
from tests.integration.test_referral import CCAS, ML, TEAM, act, headers, intake, referral_of

LEA = {"first_name": "Léa", "last_name": "Durand", "phone": "06 12 34 56 78"}


async def consent(client: Client, tokens: Tokens, person: str, categories: list[str],
                  purposes: tuple[str, ...] = ("referral_partner",),
                  recipients: tuple[str, ...] = (ML,)) -> dict[str, Any]:
    response = await client.post("/v1/consents", json={
        "person_id": person, "purposes": list(purposes), "recipients": list(recipients),
        "categories": categories, "notice_version": "2026-01", "method": "signed_screen",
        "captured_by": "conseillere-camion"},
        headers=headers(tokens, TEAM, **{"Idempotency-Key": str(uuid.uuid4())}))
    assert response.status == 201, await response.text()
    result: dict[str, Any] = await response.json()
    return result


async def known_to_intake(client: Client, *consents: dict[str, Any]) -> None:
    """The intake service learns consents from their events, as the referral service does."""
    pool = client.app[RUNTIME].pool

    async def known() -> bool:
        count = await pool.fetchval("SELECT count(*) FROM intake.consents"
                                    " WHERE consent_id = ANY($1::uuid[])",
                                    [c["id"] for c in consents])
        return bool(count == len(consents))

    await wait_until(known, 30, "the intake service to learn the consents")


async def dossier(client: Client, referral_id: str, auth: dict[str, str]) -> dict[str, Any]:
    response = await client.get(f"/v1/referrals/{referral_id}/dossier", headers=auth)
    assert response.status == 200, await response.text()
    result: dict[str, Any] = await response.json()
    return result


# --- 1. the dossier gives what the person agreed to share -------------------------------------


async def test_the_recipients_own_client_reads_the_identity_and_contact_it_was_given(
    client: Client, tokens: Tokens, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """The Mission locale's system, with the client `relais client create` makes, reads the
    name and phone number the person agreed to give it."""
    created = argparse.Namespace(command="client", action="create", org=ML, name="si-ml",
                                 scopes=DEMO_SCOPES)
    assert await client_command(settings, created) == 0
    said = json.loads(capsys.readouterr().out)
    answer = await get_token(client, said["client_id"], said["client_secret"])
    assert answer.status == 200, await answer.text()
    own = {"Authorization": f"Bearer {(await answer.json())['access_token']}"}

    met = await intake(client, tokens, identity=LEA)
    granted = await consent(client, tokens, met["person_id"],
                            ["identity", "contact", "needs", "situation"])
    referral = await referral_of(client, tokens, met["id"], "requested")
    await known_to_intake(client, granted)
    read = await dossier(client, referral["id"], own)
    assert read["categories"] == ["contact", "identity", "needs", "situation"]
    assert read["person"] is not None, "the consent covers identity and contact"
    assert read["person"]["identity"]["first_name"] == "Léa"
    assert read["person"]["identity"]["phone"] == "06 12 34 56 78"
    assert read["person"]["consent_id"] == granted["id"]


async def test_the_dossier_gives_exactly_what_its_consent_covers_and_logs_it(
    client: Client, tokens: Tokens
) -> None:
    """Another live consent naming the recipient (to share notes and contact) does not widen
    the dossier of the referral a narrower consent handed off, nor change the consent its
    read is logged under; a consent without personal data opens none."""
    met = await intake(client, tokens, identity=LEA, note="Préfère être appelée le matin.")
    handing = await consent(client, tokens, met["person_id"], ["identity", "needs"])
    sharing = await consent(client, tokens, met["person_id"], ["contact", "note"],
                            purposes=("share_dossier",))
    referral = await referral_of(client, tokens, met["id"], "requested")
    assert referral["consent_id"] == handing["id"]
    await known_to_intake(client, handing, sharing)

    read = await dossier(client, referral["id"], headers(tokens, ML))
    assert read["categories"] == ["identity", "needs"]
    person = read["person"]
    assert person["categories"] == ["identity"] and person["consent_id"] == handing["id"]
    assert person["identity"]["first_name"] == "Léa"
    assert person["identity"]["phone"] is None and person["notes"] is None
    pool = client.app[RUNTIME].pool
    logged = await pool.fetch("SELECT consent_id, categories FROM intake.access_log"
                              " WHERE person_id = $1 AND org = $2", uuid.UUID(met["person_id"]),
                              ML)
    assert [(r["consent_id"], r["categories"]) for r in logged] == [
        (uuid.UUID(handing["id"]), ["identity"])]
    assert await pool.fetchval(  # and the dossier's read itself, as before
        "SELECT count(*) FROM referral.outbox WHERE key = $1::text::bytea"
        " AND headers::text LIKE '%dossier_read%'", met["person_id"]) == 1

    other = await intake(client, tokens, identity=LEA)
    needs_only = await consent(client, tokens, other["person_id"], ["needs", "situation"])
    referral = await referral_of(client, tokens, other["id"], "requested")
    await known_to_intake(client, needs_only)
    read = await dossier(client, referral["id"], headers(tokens, ML))
    assert read["needs"] == ["employment"] and read["person"] is None
    assert await pool.fetchval("SELECT count(*) FROM intake.access_log WHERE person_id = $1",
                               uuid.UUID(other["person_id"])) == 0


# --- 2. one person, one hand-off per partner and purpose --------------------------------------


async def referrals_of_person(client: Client, person: str) -> list[Any]:
    return list(await client.app[RUNTIME].pool.fetch(
        "SELECT id, intake_id, target, status FROM referral.referrals WHERE person_id = $1"
        " ORDER BY created_at", uuid.UUID(person)))


async def detail(client: Client, tokens: Tokens, referral_id: str,
                 org: str = TEAM) -> dict[str, Any]:
    response = await client.get(f"/v1/referrals/{referral_id}", headers=headers(tokens, org))
    assert response.status == 200, await response.text()
    result: dict[str, Any] = await response.json()
    return result


async def visits(client: Client, tokens: Tokens, referral_id: str) -> list[dict[str, Any]]:
    history = (await detail(client, tokens, referral_id))["history"]
    return [h for h in history if h["action"] == "visit"]


async def test_a_returning_person_joins_the_referral_already_open(
    client: Client, tokens: Tokens
) -> None:
    """Met three times, waiting for consent then handed off: one referral to the Mission
    locale, each new visit in its history, found from each contact, and nothing more told
    to the partner."""
    first = await intake(client, tokens)
    person = first["person_id"]
    waiting = await referral_of(client, tokens, first["id"], "awaiting_consent")

    second = await intake(client, tokens, person_id=person)
    joined = await referral_of(client, tokens, second["id"])
    assert joined["id"] == waiting["id"] and joined["status"] == "awaiting_consent"
    [visit] = await visits(client, tokens, waiting["id"])
    assert visit["detail"] == {"intake_id": second["id"]} and visit["org"] == TEAM
    assert visit["status"] == visit["from_status"] == "awaiting_consent"
    assert "Nouveau passage" in visit["reason"]

    await consent(client, tokens, person, ["needs", "situation"])
    await referral_of(client, tokens, first["id"], "requested")
    pool = client.app[RUNTIME].pool
    events = "SELECT count(*) FROM referral.outbox WHERE key = $1::text::bytea"
    told = await pool.fetchval(events, person)
    third = await intake(client, tokens, person_id=person)
    assert (await referral_of(client, tokens, third["id"]))["id"] == waiting["id"]
    assert [v["detail"]["intake_id"] for v in await visits(client, tokens, waiting["id"])] == [
        second["id"], third["id"]]
    assert await pool.fetchval(events, person) == told, "a visit tells the partner nothing"
    seen = await detail(client, tokens, waiting["id"], ML)  # the partner sees it in the history
    assert seen["status"] == "requested" and seen["history"][-1]["action"] == "visit"
    assert [r["id"] for r in await referrals_of_person(client, person)] == [
        uuid.UUID(waiting["id"])]


async def test_a_closed_referral_another_partner_or_another_sender_opens_a_new_one(
    client: Client, tokens: Tokens
) -> None:
    first = await intake(client, tokens)
    person = first["person_id"]
    await consent(client, tokens, person, ["needs"], recipients=(ML, CCAS))
    handed = await referral_of(client, tokens, first["id"], "requested")
    housing = await intake(client, tokens, person_id=person, needs=["housing"],
                           age_bracket="26_29")
    to_ccas = await referral_of(client, tokens, housing["id"])
    assert to_ccas["target"] == CCAS and to_ccas["id"] != handed["id"]

    rejected = await act(client, tokens, ML, handed["id"], "reject", reason="no_place")
    assert rejected.status == 200, await rejected.text()
    again = await intake(client, tokens, person_id=person)
    fresh = await referral_of(client, tokens, again["id"])
    assert fresh["target"] == ML and fresh["id"] not in (handed["id"], to_ccas["id"])
    assert fresh["intake_id"] == again["id"]
    assert await visits(client, tokens, handed["id"]) == []
    assert len(await referrals_of_person(client, person)) == 3


# --- 3. the commission that covers the person's commune ---------------------------------------


async def with_commissions(client: Client, tokens: Tokens,
                           commissions: list[dict[str, Any]]) -> None:
    """The demo directory, its commission replaced by these ones."""
    admin = tokens.headers("coordination", "directory:write intake:read")
    directory = await (await client.get("/v1/directory", headers=admin)).json()
    changed = copy.deepcopy(directory)
    changed["organisations"] = [o for o in changed["organisations"]
                                if o["kind"] != "commission"] + [
        {"kind": "commission", "answer_days": 10, "members": [ML, TEAM]} | c
        for c in commissions]
    response = await client.put("/v1/directory", json=changed, headers=admin)
    assert response.status == 200, await response.text()
    pool = client.app[RUNTIME].pool
    wanted = sorted(c["id"] for c in commissions)

    async def followed() -> bool:
        active = await pool.fetch("SELECT id FROM referral.partners WHERE kind = 'commission'"
                                  " AND active ORDER BY id")
        return [r["id"] for r in active] == wanted

    await wait_until(followed, 30, "the referral service to follow the directory")


async def routed(client: Client, tokens: Tokens, commune: str | None) -> dict[str, Any]:
    """An intake with three needs, which the rules send to the commission."""
    met = await intake(client, tokens, commune=commune,
                       needs=["employment", "housing", "health"])
    referral = await referral_of(client, tokens, met["id"])
    assert referral["purpose"] == "referral_commission"
    assert referral["explanation"]["rule"] == "commission_for_complex_situations"
    return referral


async def test_routing_chooses_the_commission_that_covers_the_commune(
    client: Client, tokens: Tokens
) -> None:
    await with_commissions(client, tokens, [
        {"id": "commission-bassin-nord", "name": "Commission du bassin nord",
         "email": "nord@commission.example.org", "communes": ["80021"]},
        {"id": "commission-amiens-centre", "name": "Commission d'Amiens centre",
         "email": "centre@commission.example.org", "communes": ["80021"]},
        {"id": "commission-bassin-sud", "name": "Commission du bassin sud",
         "email": "sud@commission.example.org", "communes": ["80479"]},
        {"id": "commission-departement", "name": "Commission départementale",
         "email": "departement@commission.example.org"},
    ])
    south = await routed(client, tokens, "80479")
    assert south["target"] == "commission-bassin-sud"
    assert "dans le territoire de cette commission" in south["explanation"]["reason"]
    assert "80479" not in json.dumps(south["explanation"]), "the commune is not told"
    covers = {c["partner"]: c["covers"] for c in south["explanation"]["candidates"]}
    assert covers == {"commission-bassin-sud": "commune", "commission-departement": "territory",
                      "commission-bassin-nord": "no", "commission-amiens-centre": "no"}

    both = await routed(client, tokens, "80021")
    assert both["target"] == "commission-amiens-centre"  # same load: the first by id
    assert ("Plusieurs commissions la couvrent (commission-amiens-centre, "
            "commission-bassin-nord) : la moins chargée est choisie.") in both[
        "explanation"]["reason"]
    await consent(client, tokens, both["person_id"], ["needs"],
                  purposes=("referral_commission",), recipients=("commission-amiens-centre",))
    await referral_of(client, tokens, both["intake_id"], "requested")
    lighter = await routed(client, tokens, "80021")
    assert lighter["target"] == "commission-bassin-nord"  # the centre has one to study now

    elsewhere = await routed(client, tokens, "80620")
    assert elsewhere["target"] == "commission-departement"
    assert "couvre tout le territoire" in elsewhere["explanation"]["reason"]

    await with_commissions(client, tokens, [
        {"id": "commission-bassin-nord", "name": "Commission du bassin nord",
         "email": "nord@commission.example.org", "communes": ["80021"]},
        {"id": "commission-bassin-sud", "name": "Commission du bassin sud",
         "email": "sud@commission.example.org", "communes": ["80479"]}])
    nobody = await routed(client, tokens, "80620")
    assert nobody["target"] == "commission-bassin-nord"  # same load: the first by id
    assert ("Aucune commission ne couvre la commune de la personne : la moins chargée "
            "étudie la situation.") in nobody["explanation"]["reason"]
