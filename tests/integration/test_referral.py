"""The referral service over real HTTP and PostgreSQL (postgres transport): the hand-off only
under consent, the closed loop with its 409s, the dossier and its logged reads, withdrawal,
capacity, the chase with an injected clock (and across a restart), the commission, and the
funders' statistics."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from services.auth.api import KEYS
from services.cli import SERVICE_NAMES, service_specs
from services.referral import deadlines, handlers
from services.runtime.app import RUNTIME, create_app
from services.runtime.settings import Settings
from tests.conftest import wait_until
from tests.e2e.conftest import Tokens
from tests.integration.conftest import Client
from tests.integration.test_consent import trail_kinds

TEAM, ML, FT, CCAS, COMMISSION = ("equipe-aller-vers", "mission-locale", "france-travail",
                                  "ccas", "commission-remobilisation")
ALL = ("intake:write intake:read consent:write consent:read referral:read referral:write "
       "people:read stats:read")


def headers(tokens: Tokens, org: str, **extra: str) -> dict[str, str]:
    return tokens.headers(org, ALL, **extra)


async def intake(client: Client, tokens: Tokens, **body: Any) -> dict[str, Any]:
    payload = {"site": "qpv-etouvie", "channel": "mobile_permanence",
               "contacted_at": datetime.now(UTC).isoformat(), "needs": ["employment"],
               "age_bracket": "18_25", "commune": "80021",
               "identity": {"first_name": "Inès", "last_name": "Martin"}} | body
    response = await client.post("/v1/intakes", json=payload, headers=headers(
        tokens, TEAM, **{"Idempotency-Key": str(uuid.uuid4())}))
    assert response.status == 201, await response.text()
    result: dict[str, Any] = await response.json()
    return result


async def consent(client: Client, tokens: Tokens, person: str, recipients: list[str],
                  purposes: list[str] | None = None) -> dict[str, Any]:
    response = await client.post("/v1/consents", json={
        "person_id": person, "purposes": purposes or ["referral_partner"],
        "recipients": recipients, "categories": ["identity", "needs", "situation"],
        "notice_version": "2026-01", "method": "signed_screen",
        "captured_by": "conseillere-camion"},
        headers=headers(tokens, TEAM, **{"Idempotency-Key": str(uuid.uuid4())}))
    assert response.status == 201, await response.text()
    result: dict[str, Any] = await response.json()
    return result


async def referral_of(client: Client, tokens: Tokens, intake_id: str,
                      status: str | None = None) -> dict[str, Any]:
    async def seen() -> Any:
        response = await client.get(f"/v1/referrals?intake_id={intake_id}",
                                    headers=headers(tokens, TEAM))
        items = (await response.json())["items"]
        return items and (status is None or items[0]["status"] == status) and items[0]

    await wait_until(seen, what=f"referral of {intake_id} in {status}")
    result: dict[str, Any] = await seen()
    return result


async def act(client: Client, tokens: Tokens, org: str, referral_id: str, action: str,
              **body: Any) -> Any:
    return await client.post(f"/v1/referrals/{referral_id}/{action}", json=body,
                             headers=headers(tokens, org))


async def test_the_closed_loop_from_intake_to_outcome(client: Client, tokens: Tokens) -> None:
    met = await intake(client, tokens)
    waiting = await referral_of(client, tokens, met["id"], "awaiting_consent")
    assert waiting["target"] == ML and waiting["explanation"]["rule"] == "best_partner_by_needs"
    # no consent yet: to the recipient it does not exist
    assert (await act(client, tokens, ML, waiting["id"], "accept")).status == 404
    await consent(client, tokens, met["person_id"], [ML])
    requested = await referral_of(client, tokens, met["id"], "requested")
    assert requested["due_at"] and requested["consent_id"]

    inbox = await client.get("/v1/referrals?role=recipient&status=requested",
                             headers=headers(tokens, ML))
    assert requested["id"] in [r["id"] for r in (await inbox.json())["items"]]
    outsider = await client.get(f"/v1/referrals/{requested['id']}", headers=headers(tokens, FT))
    assert outsider.status == 404

    assert (await act(client, tokens, TEAM, requested["id"], "accept")).status == 403
    for action, body in (("receive", {}), ("accept", {"text": "RDV mardi"}),
                         ("start", {"milestone": "first_appointment"})):
        response = await act(client, tokens, ML, requested["id"], action, **body)
        assert response.status == 200, await response.text()
    illegal = await act(client, tokens, ML, requested["id"], "receive")
    assert illegal.status == 409
    problem = await illegal.json()
    assert illegal.content_type == "application/problem+json"
    assert problem["status_now"] == "in_progress"
    missing = await act(client, tokens, ML, requested["id"], "complete")
    assert missing.status == 422
    done = await act(client, tokens, ML, requested["id"], "complete",
                     outcome="contrat_engagement_jeune")
    body = await done.json()
    assert body["status"] == "completed" and body["outcome"] == "contrat_engagement_jeune"
    assert [(h["status"], h["org"]) for h in body["history"]] == [
        ("awaiting_consent", "relais"), ("requested", "relais"), ("received", ML),
        ("accepted", ML), ("in_progress", ML), ("completed", ML)]
    assert body["history"][3]["reason"] == "RDV mardi"

    page = await client.get("/v1/referrals?role=sender&limit=1", headers=headers(tokens, TEAM))
    assert (await page.json())["next_cursor"]
    bad = await client.get("/v1/referrals?role=boss", headers=headers(tokens, TEAM))
    assert bad.status == 400


async def test_the_dossier_shows_what_the_consent_allows_and_is_logged(
    client: Client, tokens: Tokens
) -> None:
    met = await intake(client, tokens, flags=["no_income"])
    await consent(client, tokens, met["person_id"], [ML])
    referral = await referral_of(client, tokens, met["id"], "requested")
    response = await client.get(f"/v1/referrals/{referral['id']}/dossier",
                                headers=headers(tokens, ML))
    assert response.status == 200, await response.text()
    dossier = await response.json()
    assert dossier["needs"] == ["employment"]
    assert dossier["situation"]["flags"] == ["no_income"]
    assert dossier["person"]["identity"]["first_name"] == "Inès"
    sender = await client.get(f"/v1/referrals/{referral['id']}/dossier",
                              headers=headers(tokens, TEAM))
    assert sender.status == 404

    async def logged() -> bool:
        kinds = await trail_kinds(client)
        return kinds.count("personal_data.read") >= 2  # the dossier, and the identity

    await wait_until(logged, what="both reads on the consent trail")


async def test_a_withdrawal_cancels_stops_and_closes_the_dossier(
    client: Client, tokens: Tokens
) -> None:
    met = await intake(client, tokens)
    granted = await consent(client, tokens, met["person_id"], [ML])
    referral = await referral_of(client, tokens, met["id"], "requested")
    assert (await act(client, tokens, ML, referral["id"], "accept")).status == 200
    withdrawn = await client.post(f"/v1/consents/{granted['id']}/withdraw", json={
        "requested_by": "person", "channel": "phone"}, headers=headers(tokens, TEAM))
    assert withdrawn.status == 200
    await referral_of(client, tokens, met["id"], "cancelled")
    detail = await (await client.get(f"/v1/referrals/{referral['id']}",
                                     headers=headers(tokens, ML))).json()
    assert detail["history"][-1]["detail"]["cause"] == "consent_withdrawn"
    closed = await client.get(f"/v1/referrals/{referral['id']}/dossier",
                              headers=headers(tokens, ML))
    assert closed.status == 403
    stops = await client.app[RUNTIME].pool.fetchval(
        "SELECT count(*) FROM referral.outbox WHERE headers::text LIKE '%stop_processing%'"
        " AND key = $1::text::bytea", met["person_id"])
    assert stops == 1


async def test_a_manual_referral_and_capacity(client: Client, tokens: Tokens) -> None:
    met = await intake(client, tokens)
    await referral_of(client, tokens, met["id"])
    key = {"Idempotency-Key": str(uuid.uuid4())}
    body = {"intake_id": met["id"], "target": CCAS, "reason": "Logement à voir en urgence"}
    first = await client.post("/v1/referrals", json=body, headers=headers(tokens, TEAM, **key))
    assert first.status == 201, await first.text()
    again = await client.post("/v1/referrals", json=body, headers=headers(tokens, TEAM, **key))
    assert (await again.json())["id"] == (await first.json())["id"]
    created = await first.json()
    assert created["status"] == "awaiting_consent" and created["origin"] == "manual"
    unknown = await client.post("/v1/referrals", json=body | {"target": "nobody"},
                                headers=headers(tokens, TEAM, **{"Idempotency-Key": "x1"}))
    assert unknown.status == 422

    full = await client.put(f"/v1/partners/{ML}/capacity", json={"open_places": 0},
                            headers=headers(tokens, ML))
    assert full.status == 200 and (await full.json())["open_places"] == 0
    not_mine = await client.put(f"/v1/partners/{FT}/capacity", json={"open_places": 3},
                                headers=headers(tokens, ML))
    assert not_mine.status == 403
    routed = await referral_of(client, tokens, (await intake(client, tokens))["id"])
    assert routed["target"] != ML  # full, no waiting list
    candidates = [c["partner"] for c in routed["explanation"]["candidates"]]
    assert ML not in candidates


async def test_the_chase_reminds_escalates_then_expires_with_a_proposal(
    settings: Settings, tokens: Tokens
) -> None:
    """Timers are stored: they fire after a restart, at the injected clock's time."""
    assert settings.database_url
    specs = service_specs(SERVICE_NAMES)
    app = create_app(settings, settings.database_url, specs)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        tokens = Tokens(await client.app[KEYS].signing(), settings)
        met = await intake(client, tokens)
        await consent(client, tokens, met["person_id"], [ML, FT])
        referral = await referral_of(client, tokens, met["id"], "requested")
    due = datetime.fromisoformat(referral["due_at"])
    app = create_app(settings, settings.database_url, specs)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        runtime = client.app[RUNTIME]
        pool = runtime.pool
        plan = deadlines.schedule(datetime.fromisoformat(referral["requested_at"]), 3)
        assert plan[deadlines.Timer.deadline] == due  # the Mission locale's 3 working days
        assert await handlers.fire_due(pool, plan[deadlines.Timer.half_way]
                                       - timedelta(seconds=1)) == 0
        fired = [await handlers.fire_due(pool, plan[timer]) for timer in deadlines.Timer]
        assert fired == [1, 1, 1, 1]
        types = await outbox_types(pool, met["person_id"])
        assert types[-4:] == ["reminder_due", "reminder_due", "escalated", "status_changed"]
        expired = await (await client.get(f"/v1/referrals/{referral['id']}",
                                          headers=headers(tokens, TEAM))).json()
        assert expired["status"] == "expired"
        detail = expired["history"][-1]["detail"]
        assert detail["cause"] == "deadline_passed"
        ranked = [c["partner"] for c in referral["explanation"]["candidates"]]
        assert detail["proposal"] == ranked[1]  # the next candidate, with places
        assert await handlers.fire_due(pool, due + timedelta(days=30)) == 0


async def test_the_chaser_runs_on_the_injected_clock(client: Client, tokens: Tokens) -> None:
    met = await intake(client, tokens)
    await consent(client, tokens, met["person_id"], [ML])
    referral = await referral_of(client, tokens, met["id"], "requested")
    later = datetime.fromisoformat(referral["due_at"]) + timedelta(days=10)
    client.app[RUNTIME].clock = lambda: later  # ten days after the deadline
    await referral_of(client, tokens, met["id"], "expired")
    types = await outbox_types(client.app[RUNTIME].pool, met["person_id"])
    assert types[-4:] == ["reminder_due", "reminder_due", "escalated", "status_changed"]


async def outbox_types(pool: Any, person: str) -> list[str]:
    rows = await pool.fetch("SELECT headers FROM referral.outbox WHERE key = $1::text::bytea"
                            " ORDER BY id", person)
    return [dict(r["headers"])["ce_type"].split(".")[3] for r in rows]


async def test_an_answer_stops_the_chase(client: Client, tokens: Tokens) -> None:
    met = await intake(client, tokens)
    await consent(client, tokens, met["person_id"], [ML])
    referral = await referral_of(client, tokens, met["id"], "requested")
    assert (await act(client, tokens, ML, referral["id"], "receive")).status == 200
    due = datetime.fromisoformat(referral["due_at"])
    assert await handlers.fire_due(client.app[RUNTIME].pool, due + timedelta(days=30)) == 0


async def test_the_commission_decides_and_refers_on(client: Client, tokens: Tokens) -> None:
    met = await intake(client, tokens, needs=["employment", "housing", "health"])
    await consent(client, tokens, met["person_id"], [COMMISSION, ML],
                  ["referral_commission", "referral_partner"])
    referral = await referral_of(client, tokens, met["id"], "requested")
    assert referral["target"] == COMMISSION
    session = await client.post("/v1/commission/sessions", json={
        "held_on": "2026-12-03", "members": [ML, FT, CCAS, TEAM]},
        headers=headers(tokens, TEAM, **{"Idempotency-Key": str(uuid.uuid4())}))
    assert session.status == 201, await session.text()
    opened = await session.json()
    assert referral["id"] in [a["referral_id"] for a in opened["agenda"]]
    decided = await client.post(f"/v1/commission/sessions/{opened['id']}/decisions", json={
        "referral_id": referral["id"], "decision": "refer_partner", "partner": ML,
        "text": "CEJ à la Mission locale"}, headers=headers(tokens, ML))
    assert decided.status == 200, await decided.text()
    item = next(a for a in (await decided.json())["agenda"]
                if a["referral_id"] == referral["id"])
    assert item["status"] == "completed" and item["follow_up"]
    twice = await client.post(f"/v1/commission/sessions/{opened['id']}/decisions", json={
        "referral_id": referral["id"], "decision": "close", "text": "x"},
        headers=headers(tokens, ML))
    assert twice.status == 409
    follow = await (await client.get(f"/v1/referrals/{item['follow_up']}",
                                     headers=headers(tokens, ML))).json()
    assert follow["part_of"] == referral["id"] and follow["target"] == ML
    assert follow["status"] == "requested"  # the consent covers the partner already
    stranger = await client.get(f"/v1/commission/sessions/{opened['id']}",
                                headers=headers(tokens, "plie"))
    assert stranger.status == 404


async def test_statistics_hide_small_cells(client: Client, tokens: Tokens) -> None:
    for i in range(6):
        met = await intake(client, tokens, gender="female" if i < 5 else "male",
                           site="qpv-etouvie" if i < 5 else "qpv-amiens-nord")
    await referral_of(client, tokens, met["id"])

    async def counted() -> bool:
        n = await client.app[RUNTIME].pool.fetchval("SELECT count(*) FROM referral.intakes")
        return bool(n == 6)

    await wait_until(counted, what="six intakes counted")
    response = await client.get("/v1/stats", headers=headers(tokens, TEAM))
    assert response.status == 200, await response.text()
    figures = await response.json()
    assert figures["people"] == 6 and figures["intakes"] == 6
    assert figures["site"] == {"qpv-etouvie": 5, "qpv-amiens-nord": None}
    assert figures["gender"]["female"] == round(100 * 5 / 6, 1)
    assert figures["gender"]["male"] is None
    assert figures["visit"]["first"] == 6
    exported = await client.get("/v1/stats.csv?from=2026-01-01&to=2030-01-01",
                                headers=headers(tokens, TEAM))
    rows = list(csv.reader(io.StringIO(await exported.text())))
    assert rows[0] == ["indicateur", "categorie", "valeur"]
    assert ["Contacts par lieu", "qpv-amiens-nord", "<5"] in rows
    none = await client.get("/v1/stats", headers=tokens.headers(TEAM, "referral:read"))
    assert none.status == 403
