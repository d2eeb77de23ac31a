"""Issue #16, points 9 and 10, over real HTTP and PostgreSQL: a contact says whether the person
came without an appointment or with one, and, at a permanence shared by partners, the partner
it was for (one the directory says is present, else a 422 naming it), from the API and from
the outreach form; the funders' figures add the time spent with people (average, median),
the share of people met at a site of a priority neighbourhood (QPV), walk-ins against
appointments, and the time from a relay's signal to the first contact, still counting
distinct people and hiding every figure about fewer than 5."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from services.runtime.app import RUNTIME
from tests.conftest import wait_until
from tests.e2e.conftest import Tokens
from tests.integration.conftest import Client
from tests.integration.test_outreach_pages import (
    ANONYMOUS,
    TODAY,
    form_data,
    intakes,
    open_form,
    pick,
    signed_in_counsellor,
)
from tests.integration.test_stats_pages import counted, funder, table

TEAM = "equipe-aller-vers"
WRITE = "intake:write intake:read"
STATS = ("region-hauts-de-france", "stats:read")


async def post(client: Client, tokens: Tokens, **body: Any) -> Any:
    payload = {"channel": "mobile_permanence", "contacted_at": "2026-03-10T10:00:00+01:00",
               "needs": ["employment"], "age_bracket": "18_25", "commune": "80021"} | body
    return await client.post("/v1/intakes", json=payload, headers=tokens.headers(
        TEAM, WRITE, **{"Idempotency-Key": str(uuid.uuid4())}))


async def met(client: Client, tokens: Tokens, **body: Any) -> dict[str, Any]:
    response = await post(client, tokens, **body)
    assert response.status == 201, await response.text()
    result: dict[str, Any] = await response.json()
    return result


# --- point 9: walk-in or appointment, and the partner a contact was for ----------------------

async def test_a_contact_says_walk_in_and_the_partner_it_was_for(client: Client,
                                                                  tokens: Tokens) -> None:
    intake = await met(client, tokens, permanence="camion-etouvie-mardi", arrival="walk_in",
                       for_org="mission-locale", duration_minutes=20)
    assert (intake["arrival"], intake["for_org"], intake["duration_minutes"]) == (
        "walk_in", "mission-locale", 20)
    read = await (await client.get(f"/v1/intakes/{intake['id']}",
                                   headers=tokens.headers(TEAM, WRITE))).json()
    assert (read["arrival"], read["for_org"]) == ("walk_in", "mission-locale")
    plain = await met(client, tokens, site="qpv-etouvie")  # both stay optional
    assert plain["arrival"] is None and plain["for_org"] is None
    pool = client.app[RUNTIME].pool
    await counted(client, 2)  # the referral service's copy, from intake.recorded
    row = await pool.fetchrow("SELECT arrival, for_org, duration_minutes FROM referral.intakes"
                              " WHERE intake_id = $1", uuid.UUID(intake["id"]))
    assert dict(row) == {"arrival": "walk_in", "for_org": "mission-locale",
                         "duration_minutes": 20}


async def test_a_partner_absent_from_the_permanence_is_a_422_naming_it(
        client: Client, tokens: Tokens) -> None:
    pool = client.app[RUNTIME].pool
    absent = await post(client, tokens, permanence="camion-etouvie-mardi",
                        for_org="france-travail")
    assert absent.status == 422
    problem = await absent.json()
    [error] = problem["errors"]
    assert error["field"] == "for_org" and error["code"] == "not_at_permanence"
    assert "france-travail" in error["message"] and "mission-locale" in error["message"]
    no_permanence = await post(client, tokens, site="qpv-etouvie", for_org="mission-locale")
    assert no_permanence.status == 422
    assert (await no_permanence.json())["errors"][0]["field"] == "for_org"
    wrong = await post(client, tokens, site="qpv-etouvie", arrival="by_bus")
    assert wrong.status == 422
    assert await pool.fetchval("SELECT count(*) FROM intake.intakes") == 0  # nothing written


async def test_the_outreach_form_asks_the_arrival_and_the_partner(client: Client,
                                                                  tokens: Tokens) -> None:
    await signed_in_counsellor(client, tokens)
    assert (await pick(client)).status == 303
    page = await (await client.get("/terrain/contact")).text()
    assert "Sa venue" in page and "Sans rendez-vous" in page and "Sur rendez-vous" in page
    assert "Pour quel partenaire de la permanence" in page
    assert 'name="partenaire" value="mission-locale"' in page
    assert 'name="partenaire" value="equipe-aller-vers"' not in page  # the team's own

    absent = await client.post("/terrain/contact", data=form_data(
        await open_form(client), ANONYMOUS | {"partenaire": "france-travail"}))
    assert absent.status == 422
    assert "Choisissez un partenaire présent à cette permanence." in await absent.text()
    assert await intakes(client, tokens) == []

    done = await client.post("/terrain/contact", data=form_data(
        await open_form(client), ANONYMOUS | {"arrivee": "appointment",
                                              "partenaire": "mission-locale"}),
        allow_redirects=False)
    assert done.status == 303, await done.text()
    [intake] = await intakes(client, tokens)
    assert (intake["permanence"], intake["arrival"], intake["for_org"]) == (
        TODAY, "appointment", "mission-locale")

    # a site without a permanence: no partner to choose
    assert (await pick(client, "site:centre-social-nord")).status == 303
    alone = await (await client.get("/terrain/contact")).text()
    assert "Sa venue" in alone and "Pour quel partenaire" not in alone


# --- point 10: the funders' figures -----------------------------------------------------------

async def seed(client: Client, tokens: Tokens) -> None:
    """In March 2026: five people met at Étouvie (a QPV site) without an appointment, one of
    them back by appointment; one person at the Centre social Nord (no QPV code) by
    appointment. Seven contacts of 10 to 70 minutes, six people."""
    first = None
    for i in range(5):
        intake = await met(client, tokens, site="qpv-etouvie", arrival="walk_in",
                           duration_minutes=10 * (i + 1),
                           contacted_at=f"2026-03-{10 + i}T10:00:00+01:00")
        first = first or intake
    assert first is not None
    await met(client, tokens, site="qpv-etouvie", arrival="appointment", duration_minutes=60,
              person_id=first["person_id"], contacted_at="2026-03-20T10:00:00+01:00")
    await met(client, tokens, site="centre-social-nord", channel="fixed_permanence",
              arrival="appointment", duration_minutes=70,
              contacted_at="2026-03-21T15:00:00+01:00")
    await met(client, tokens, site="qpv-etouvie", contacted_at="2026-04-02T10:00:00+02:00")
    await counted(client, 8)


async def test_time_spent_qpv_share_and_arrivals(client: Client, tokens: Tokens) -> None:
    await seed(client, tokens)
    stats = await (await client.get("/v1/stats?from=2026-03-01&to=2026-04-01",
                                    headers=tokens.headers(*STATS))).json()
    assert stats["people"] == 6 and stats["intakes"] == 7
    assert stats["time_spent"] == {"people": 6, "contacts": 7, "minutes_average": 40.0,
                                   "minutes_median": 40.0}
    assert stats["qpv"] == {"people": 5, "share": 83.3}  # distinct people, not contacts
    # five people came without an appointment; two (under 5) with one
    assert stats["arrival"] == {"walk_in": 5, "appointment": None}
    # a site of no QPV: fewer than 5 people there, every figure hidden
    north = await (await client.get("/v1/stats?from=2026-03-01&to=2026-04-01"
                                    "&site=centre-social-nord",
                                    headers=tokens.headers(*STATS))).json()
    assert north["qpv"] == {"people": None, "share": None}
    assert set(north["time_spent"].values()) == {None}

    csv = await (await client.get("/v1/stats.csv?from=2026-03-01&to=2026-04-01",
                                  headers=tokens.headers(*STATS))).text()
    assert "Temps passé avec les personnes,minutes_average,40.0" in csv
    assert "Temps passé avec les personnes,minutes_median,40.0" in csv
    assert "Personnes rencontrées en quartier prioritaire (QPV),share,83.3" in csv
    assert "Venues sans rendez-vous ou sur rendez-vous,walk_in,5" in csv
    assert "Venues sans rendez-vous ou sur rendez-vous,appointment,<5" in csv

    await funder(client)
    page = await (await client.get("/statistiques?du=2026-03-01&au=2026-03-31")).text()
    assert table(page, "time_spent") == {
        "Personnes dont la durée de l'échange est connue": "6",
        "Contacts dont la durée est connue": "7",
        "Durée moyenne d'un échange": "40 min",
        "Durée médiane d'un échange : la moitié durent moins": "40 min"}
    assert table(page, "qpv") == {
        "Personnes rencontrées sur un lieu en quartier prioritaire": "5",
        "Part des personnes rencontrées": "83,3 %"}
    assert table(page, "arrival") == {"Sans rendez-vous": "5",
                                      "Sur rendez-vous": "< 5"}


async def test_the_time_from_a_signal_to_the_first_contact(client: Client,
                                                           tokens: Tokens) -> None:
    pool = client.app[RUNTIME].pool
    now = datetime.now(UTC).isoformat(timespec="seconds")
    for _ in range(5):
        signalled = await client.post("/v1/signals", json={
            "relay_kind": "mayor", "relay_name": "Mairie de Saleux", "site": "qpv-etouvie",
            "needs": ["employment"]}, headers=tokens.headers(
            TEAM, "intake:write", **{"Idempotency-Key": str(uuid.uuid4())}))
        assert signalled.status == 201, await signalled.text()
        signal_id = (await signalled.json())["id"]
        await met(client, tokens, site="qpv-etouvie", channel="network_relay",
                  contacted_at=now, signal_id=signal_id)

    async def known() -> bool:
        return bool(await pool.fetchval(
            "SELECT count(*) = 5 FROM referral.signals s JOIN referral.intakes i"
            " USING (intake_id) WHERE s.received_at IS NOT NULL"))

    await wait_until(known, 30, "the answered signals known to the referral service")
    # as if the relays had signalled these people 10, 20, 30, 40 and 50 hours before
    await pool.execute(
        "UPDATE referral.signals s SET received_at = i.contacted_at - make_interval(hours =>"
        " 10 * n::int) FROM (SELECT intake_id, row_number() OVER (ORDER BY intake_id) AS n"
        " FROM referral.signals) o, referral.intakes i"
        " WHERE o.intake_id = s.intake_id AND i.intake_id = s.intake_id")
    stats = await (await client.get("/v1/stats", headers=tokens.headers(*STATS))).json()
    assert stats["signal_answered"] == {"mayor": 5}
    assert stats["signal_to_contact"] == {"answered": 5, "hours_median": 30.0,
                                          "hours_average": 30.0}
    await funder(client)
    page = await (await client.get("/statistiques")).text()
    assert table(page, "signal_to_contact") == {
        "Signalements suivis d'un contact": "5",
        "Délai dans lequel la moitié de ces signalements ont reçu un premier contact":
            "30 heures",
        "Délai moyen entre le signalement et le premier contact": "30 heures"}

    # four answered: every figure hidden
    await pool.execute("UPDATE referral.signals SET intake_id = NULL WHERE signal_id ="
                       " (SELECT min(signal_id::text)::uuid FROM referral.signals)")
    hidden = await (await client.get("/v1/stats", headers=tokens.headers(*STATS))).json()
    assert set(hidden["signal_to_contact"].values()) == {None}
