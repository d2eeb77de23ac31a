"""Issue #16, points 11 and 12, over real HTTP and PostgreSQL: two programmes share one
instance (the truck of the outreach team at the four priority neighbourhoods, funded by the
Region; the CCAS's permanence at the social centre, funded by the Département). Each funder
reads its programme's figures and no other's (the territory's coordination reads all); the
directory is changed one site, organisation or permanence at a time, validated with the whole,
with `If-Match` against lost updates; a programme's coordination changes only its part."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from services.runtime.app import RUNTIME
from tests.conftest import wait_until
from tests.e2e.conftest import Tokens
from tests.integration.conftest import Client
from tests.integration.test_stats_pages import funder

TEAM, CCAS = "equipe-aller-vers", "ccas"
KEEPER = "directory:write"
CAMION_SITES = ["qpv-etouvie", "qpv-amiens-nord", "qpv-pierre-rollin", "qpv-marcel-paul"]
PROGRAMMES = [
    {"id": "le-camion", "name": "Le Camion dans les quartiers", "organisations": [TEAM],
     "sites": CAMION_SITES, "funders": ["region-hauts-de-france"],
     "coordinators": [TEAM]},
    {"id": "permanence-ccas", "name": "Permanence du CCAS au centre social",
     "organisations": [CCAS], "sites": ["centre-social-nord"],
     "funders": ["departement-somme"], "coordinators": [CCAS]},
]
PERIOD = {"from": "2026-03-01", "to": "2026-04-01"}


async def directory(client: Client, tokens: Tokens) -> tuple[dict[str, Any], str]:
    response = await client.get("/v1/directory", headers=tokens.headers(CCAS, "intake:read"))
    assert response.status == 200
    return await response.json(), response.headers["ETag"]


async def with_programmes(client: Client, tokens: Tokens) -> None:
    """The demo directory and its two programmes, once every service follows it."""
    current, _ = await directory(client, tokens)
    response = await client.put("/v1/directory", json=current | {"programmes": PROGRAMMES},
                                headers=tokens.headers("coordination", KEEPER))
    assert response.status == 200, await response.text()
    pool = client.app[RUNTIME].pool

    async def followed() -> bool:
        return bool(await pool.fetchval("SELECT count(*) FROM referral.programmes") == 2)

    await wait_until(followed, 30, "the referral service follows the programmes")


async def meet(client: Client, tokens: Tokens, org: str, site: str, n: int) -> None:
    for day in range(n):
        response = await client.post("/v1/intakes", json={
            "site": site, "channel": "mobile_permanence", "needs": ["employment"],
            "contacted_at": f"2026-03-{10 + day:02d}T10:00:00+01:00"},
            headers=tokens.headers(org, "intake:write", **{
                "Idempotency-Key": str(uuid.uuid4())}))
        assert response.status == 201, await response.text()


async def people(client: Client, tokens: Tokens, org: str, **query: str) -> Any:
    response = await client.get("/v1/stats", params=PERIOD | query,
                                headers=tokens.headers(org, "stats:read"))
    return (await response.json())["people"] if response.status == 200 else response.status


# --- point 11: statistics per programme ------------------------------------------------------

async def test_a_funder_reads_the_programmes_it_funds_and_no_other(client: Client,
                                                                    tokens: Tokens) -> None:
    await with_programmes(client, tokens)
    await meet(client, tokens, TEAM, "qpv-etouvie", 6)
    await meet(client, tokens, CCAS, "centre-social-nord", 7)
    await meet(client, tokens, TEAM, "centre-social-nord", 5)  # the team, off its programme
    pool = client.app[RUNTIME].pool

    async def counted() -> bool:
        return bool(await pool.fetchval("SELECT count(*) FROM referral.intakes") == 18)

    for org in (TEAM, CCAS):  # signals given no site: they count for their organisation
        for _ in range(5):
            signal = await client.post("/v1/signals", json={
                "relay_kind": "shop" if org == TEAM else "mayor", "relay_name": "Relais"},
                headers=tokens.headers(org, "intake:write", **{
                    "Idempotency-Key": str(uuid.uuid4())}))
            assert signal.status == 201, await signal.text()
    await wait_until(counted, 30, "18 intakes counted")

    async def signals() -> bool:
        return bool(await pool.fetchval("SELECT count(*) FROM referral.signals") == 10)

    await wait_until(signals, 30, "10 signals counted")
    assert await people(client, tokens, "region-hauts-de-france") == 6
    assert await people(client, tokens, "departement-somme") == 7
    assert await people(client, tokens, "coordination") == 18  # the territory's coordination
    assert await people(client, tokens, "coordination", programme="permanence-ccas") == 7
    assert await people(client, tokens, TEAM) == 6  # it runs and coordinates le-camion
    assert await people(client, tokens, "region-hauts-de-france",
                        programme="permanence-ccas") == 403
    assert await people(client, tokens, "region-hauts-de-france", programme="nulle-part") == 404
    assert await people(client, tokens, "ville-inconnue") == 403
    figures = await (await client.get("/v1/stats", params=PERIOD, headers=tokens.headers(
        "departement-somme", "stats:read"))).json()
    assert figures["period"]["programmes"] == "permanence-ccas"
    assert set(figures["site"]) == {"centre-social-nord"}
    for org, kind in (("departement-somme", "mayor"), ("region-hauts-de-france", "shop")):
        this_year = await (await client.get("/v1/stats", headers=tokens.headers(
            org, "stats:read"))).json()  # the signals came today
        assert this_year["signal"] == {kind: 5}, this_year["signal"]
    region = await (await client.get("/v1/stats", params=PERIOD | {"site": "centre-social-nord"},
                                     headers=tokens.headers("region-hauts-de-france",
                                                            "stats:read"))).json()
    assert region["people"] is None and region["site"] == {}  # another programme's site
    csv = await (await client.get("/v1/stats.csv", params=PERIOD, headers=tokens.headers(
        "departement-somme", "stats:read"))).text()
    assert "Période,programmes,permanence-ccas" in csv
    assert "Personnes rencontrées,people,7" in csv

    await funder(client)  # the Region's person, on the statistics page
    page = await (await client.get("/statistiques", params={
        "du": "2026-03-01", "au": "2026-03-31"})).text()
    assert "Le Camion dans les quartiers" in page
    assert "Permanence du CCAS" not in page
    forbidden = await client.get("/statistiques", params={"programme": "permanence-ccas"})
    assert forbidden.status == 403
    assert "ne finance, ne coordonne ni ne mène ce programme" in await forbidden.text()


async def test_without_programmes_every_reader_sees_the_whole_instance(
        client: Client, tokens: Tokens) -> None:
    await meet(client, tokens, CCAS, "centre-social-nord", 5)
    pool = client.app[RUNTIME].pool

    async def counted() -> bool:
        return bool(await pool.fetchval("SELECT count(*) FROM referral.intakes") == 5)

    await wait_until(counted, 30, "5 intakes counted")
    assert await people(client, tokens, "ville-inconnue") == 5


# --- point 12: the directory changed one item at a time ---------------------------------------

async def test_one_site_at_a_time_with_if_match(client: Client, tokens: Tokens) -> None:
    before, etag = await directory(client, tokens)
    site = {"id": "gare-routiere", "name": "Gare routière", "kind": "public_space",
            "commune": "80021"}
    headers = tokens.headers("coordination", KEEPER)
    created = await client.put("/v1/directory/sites/gare-routiere", json=site,
                               headers=headers | {"If-Match": etag})
    assert created.status == 201, await created.text()
    assert created.headers["ETag"] != etag
    stale = await client.put("/v1/directory/sites/gare-routiere",
                             json=site | {"name": "Gare"}, headers=headers | {"If-Match": etag})
    assert stale.status == 412
    assert stale.headers["ETag"] == created.headers["ETag"]  # what to read again
    after, _ = await directory(client, tokens)
    assert after["organisations"] == before["organisations"]
    assert after["permanences"] == before["permanences"]
    assert [s["id"] for s in after["sites"]] == [s["id"] for s in before["sites"]] + [
        "gare-routiere"]
    assert next(s for s in after["sites"] if s["id"] == "gare-routiere")["name"] == \
        "Gare routière"  # the stale change was not made

    dangling = await client.put(
        "/v1/directory/permanences/gare-lundi", headers=headers,
        json={"id": "gare-lundi", "site": "nulle-part", "mobile": True,
              "schedule": [{"weekday": "monday", "start": "09:00", "end": "12:00"}],
              "organisations": [TEAM]})
    assert dangling.status == 422
    assert "unknown site nulle-part" in await dangling.text()
    refers = await client.delete("/v1/directory/sites/qpv-etouvie", headers=headers)
    assert refers.status == 422
    assert "permanence camion-etouvie-mardi: unknown site qpv-etouvie" in await refers.text()
    mismatch = await client.put("/v1/directory/sites/autre", json=site, headers=headers)
    assert mismatch.status == 422
    assert (await client.delete("/v1/directory/sites/nulle-part", headers=headers)).status == 404
    unchanged, _ = await directory(client, tokens)
    assert unchanged == after  # nothing half-written
    assert (await client.delete("/v1/directory/sites/gare-routiere",
                                headers=headers)).status == 204
    assert (await directory(client, tokens))[0]["sites"] == before["sites"]
    assert (await client.put("/v1/directory/sites/gare-routiere", json=site, headers=tokens.headers(
        CCAS, "intake:write"))).status == 403


async def test_two_concurrent_edits_from_the_same_version_one_wins(client: Client,
                                                                 tokens: Tokens) -> None:
    current, etag = await directory(client, tokens)
    headers = tokens.headers("coordination", KEEPER) | {"If-Match": etag}
    sites = [{"id": f"lieu-{n}", "name": f"Lieu {n}", "kind": "other"} for n in range(2)]
    answers = await asyncio.gather(*(client.put(f"/v1/directory/sites/{s['id']}", json=s,
                                                headers=headers) for s in sites))
    assert sorted(a.status for a in answers) == [201, 412]
    after, _ = await directory(client, tokens)
    assert len(after["sites"]) == len(current["sites"]) + 1
    for n in range(2):  # without If-Match, neither wipes the other
        other = {"id": f"autre-{n}", "name": f"Autre {n}", "kind": "other"}
        assert (await client.put(f"/v1/directory/sites/autre-{n}", json=other,
                                 headers=tokens.headers("coordination", KEEPER))).status == 201
    ids = {s["id"] for s in (await directory(client, tokens))[0]["sites"]}
    assert {"autre-0", "autre-1"} <= ids


async def test_a_programme_coordination_changes_only_its_part(client: Client,
                                                              tokens: Tokens) -> None:
    await with_programmes(client, tokens)
    ccas = tokens.headers(CCAS, "programme:write")
    bus = {"id": "bus-place-mairie", "name": "Bus, place de la mairie", "kind": "public_space",
           "commune": "80021"}
    unnamed = await client.put("/v1/directory/sites/bus-place-mairie", json=bus, headers=ccas)
    assert unnamed.status == 403
    assert "programme" in (await unnamed.json())["detail"]
    not_mine = await client.put("/v1/directory/sites/bus-place-mairie", json=bus, headers=ccas,
                                params={"programme": "le-camion"})
    assert not_mine.status == 403
    created = await client.put("/v1/directory/sites/bus-place-mairie", json=bus, headers=ccas,
                               params={"programme": "permanence-ccas"})
    assert created.status == 201, await created.text()
    current, _ = await directory(client, tokens)
    ours = next(g for g in current["programmes"] if g["id"] == "permanence-ccas")
    assert ours["sites"] == ["centre-social-nord", "bus-place-mairie"]
    permanence = {"id": "bus-mairie-jeudi", "site": "bus-place-mairie", "mobile": True,
                  "schedule": [{"weekday": "thursday", "start": "09:00", "end": "12:00"}],
                  "organisations": [CCAS]}
    assert (await client.put("/v1/directory/permanences/bus-mairie-jeudi", json=permanence,
                             headers=ccas)).status == 201
    elsewhere = await client.put("/v1/directory/permanences/bus-mairie-jeudi",
                                 json=permanence | {"site": "qpv-etouvie"}, headers=ccas)
    assert elsewhere.status == 403
    assert "le-camion" in (await elsewhere.json())["detail"]
    etouvie = next(s for s in current["sites"] if s["id"] == "qpv-etouvie")
    assert (await client.put("/v1/directory/sites/qpv-etouvie", json=etouvie | {
        "name": "Repris"}, headers=ccas)).status == 403
    unowned = next(o for o in current["organisations"] if o["id"] == "mission-locale")
    assert (await client.put("/v1/directory/organisations/mission-locale", json=unowned | {
        "email": "ailleurs@example.org"}, headers=ccas)).status == 403
    own = next(o for o in current["organisations"] if o["id"] == CCAS)
    changed = await client.put("/v1/directory/organisations/ccas", json=own | {
        "answer_days": 4}, headers=ccas)
    assert changed.status == 200, await changed.text()
    assert (await client.put("/v1/directory/organisations/ccas", json=own | {
        "kind": "coordination"}, headers=ccas)).status == 403
    assert (await client.delete("/v1/directory/permanences/bus-mairie-jeudi",
                                headers=ccas)).status == 204
    assert (await client.delete("/v1/directory/sites/bus-place-mairie",
                                headers=ccas)).status == 204
    final, _ = await directory(client, tokens)
    assert next(g for g in final["programmes"] if g["id"] == "permanence-ccas")["sites"] == [
        "centre-social-nord"]
    assert next(o for o in final["organisations"] if o["id"] == CCAS)["answer_days"] == 4
    assert final["sites"] == current["sites"][:-1]
    pool = client.app[RUNTIME].pool

    async def followed() -> bool:  # the referral service follows a partial change too
        return bool(await pool.fetchval(
            "SELECT answer_days FROM referral.partners WHERE id = 'ccas'") == 4)

    await wait_until(followed, 30, "the referral service follows the change")
    outsider = await client.put("/v1/directory/sites/bus-place-mairie", json=bus,
                                headers=tokens.headers("plie", "programme:write"),
                                params={"programme": "permanence-ccas"})
    assert outsider.status == 403
