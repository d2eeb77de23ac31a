"""The funders' statistics page over real HTTP and PostgreSQL: the figures of GET /v1/stats
as charts and tables, filtered by period (the last day included) and site, the same CSV as
the API's, small cells shown as "< 5", and the page refused to a counsellor."""

from __future__ import annotations

import html
import re
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

from services.runtime.app import RUNTIME
from tests.conftest import wait_until
from tests.e2e.conftest import Tokens
from tests.integration.conftest import Client
from tests.integration.test_console import PASSWORD, account, invite, sign_in

TEAM = "equipe-aller-vers"
API = "intake:write consent:write referral:read"
MARCH = "du=2026-03-01&au=2026-03-31"


async def funder(client: Client, email: str = "alex@region.example.org") -> None:
    """A funder's account (only `stats:read`), signed in."""
    token = await invite(client, email, org="region-hauts-de-france", role="funder",
                         name="Alex Bernard")
    done = await client.post(f"/invitation/{token}", data={
        "password": PASSWORD, "confirmation": PASSWORD}, allow_redirects=False)
    assert done.status == 303, await done.text()
    signed = await client.post("/connexion", data={"email": email, "password": PASSWORD,
                                                   "suite": "/statistiques"},
                               allow_redirects=False)
    assert signed.status == 303 and signed.headers["Location"] == "/statistiques"


async def met(client: Client, tokens: Tokens, contacted_at: str, **body: Any) -> dict[str, Any]:
    payload = {"channel": "mobile_permanence", "contacted_at": contacted_at,
               "needs": ["employment"], "age_bracket": "18_25", "commune": "80021"} | body
    if "permanence" not in payload:
        payload.setdefault("site", "qpv-etouvie")
    response = await client.post("/v1/intakes", json=payload, headers=tokens.headers(
        TEAM, API, **{"Idempotency-Key": str(uuid.uuid4())}))
    assert response.status == 201, await response.text()
    result: dict[str, Any] = await response.json()
    return result


async def counted(client: Client, n: int) -> None:
    """Wait until the referral service has counted n intakes (it learns them from events)."""
    pool = client.app[RUNTIME].pool

    async def done() -> bool:
        return bool(await pool.fetchval("SELECT count(*) FROM referral.intakes") == n)

    await wait_until(done, 30, f"{n} intakes counted")


async def seed(client: Client, tokens: Tokens) -> None:
    """In March 2026: five women met on the Tuesday truck at Étouvie, one man at Amiens Nord
    on the 31st at 21:00 UTC (the last day); in April, one more at Étouvie."""
    for day in range(5):
        await met(client, tokens, f"2026-03-{10 + day}T10:00:00+01:00", gender="female",
                  permanence="camion-etouvie-mardi")
    await met(client, tokens, "2026-03-31T21:00:00+00:00", gender="male",
              site="qpv-amiens-nord", needs=["employment", "housing"])
    await met(client, tokens, "2026-04-01T10:00:00+02:00", gender="female")
    await counted(client, 7)


def table(page: str, key: str) -> dict[str, str]:
    """The rows of the figure's table: {category as written: figure as written}."""
    found = re.search(rf'id="tableau-{key}".*?<tbody>(.*?)</tbody>', page, re.S)
    assert found, f"no table for {key}"
    rows = re.findall(r'<th scope="row">(.*?)</th><td class="relais-figure">(.*?)</td>',
                      found.group(1))
    return {html.unescape(label): html.unescape(value).replace("\u202f", " ")
            .replace("\u00a0", " ") for label, value in rows}


def chart(page: str, key: str) -> str:
    found = re.search(rf'<svg class="relais-chart"[^>]*aria-labelledby="graphique-{key}".*?'
                      r'</svg>', page, re.S)
    assert found, f"no chart for {key}"
    return html.unescape(found.group(0))


def key_figure(page: str, what: str) -> str:
    found = re.search(rf'<span class="relais-key__figure">([^<]*)</span> {what}', page)
    assert found, what
    return html.unescape(found.group(1))


async def test_a_funder_reads_the_figures_of_a_period(client: Client, tokens: Tokens) -> None:
    await seed(client, tokens)
    await funder(client)
    response = await client.get(f"/statistiques?{MARCH}")
    assert response.status == 200
    assert "style-src 'self'" in response.headers["Content-Security-Policy"]
    page = await response.text()
    assert 'href="/statistiques" aria-current="page"' in page  # the menu entry
    assert "<script>" not in page and " style=" not in page
    assert 'value="2026-03-01"' in page and 'value="2026-03-31"' in page
    assert "au <strong>31/03/2026</strong> inclus" in page
    # the 31st is included (at 21:00 UTC), April 1st is not
    assert key_figure(page, "personnes rencontrées") == "6"
    assert table(page, "site") == {"Étouvie, place du marché": "5",
                                   "Amiens Nord, parking du centre commercial": "< 5 personnes"}
    assert table(page, "permanence") == {"Étouvie, place du marché, camion du mardi": "5"}
    assert table(page, "gender") == {"Femme": "83,3 %", "Homme": "< 5 personnes"}
    assert table(page, "age_bracket") == {"18-25 ans": "6"}
    assert table(page, "need") == {"Emploi": "6", "Logement": "< 5"}
    assert table(page, "status") == {"En attente de l'accord de la personne": "6"}
    # a shown figure is a bar, a hidden one only its "< 5"
    sites = chart(page, "site")
    assert sites.count("<rect") == 1 and 'width="80.00%"' in sites
    assert 'class="relais-chart__hidden" x="6" y="89">< 5 personnes</text>' in sites
    assert 'role="img"' in sites and "<title" in sites
    # the answers: nobody handed off yet, so every figure is hidden
    assert set(table(page, "answers").values()) == {"< 5", "< 5 personnes"}
    assert "dans le délai</li>" not in page  # nor is the key figure of a hidden share

    day_before = await (await client.get("/statistiques?du=2026-03-01&au=2026-03-30")).text()
    assert key_figure(day_before, "personnes rencontrées") == "5"
    april = await (await client.get("/statistiques?du=2026-04-01&au=2026-04-30")).text()
    assert key_figure(april, "personnes rencontrées") == "< 5"
    assert table(april, "site") == {"Étouvie, place du marché": "< 5 personnes"}
    assert chart(april, "site").count("<rect") == 0


async def test_the_site_filter_and_its_list(client: Client, tokens: Tokens) -> None:
    await seed(client, tokens)
    await funder(client)
    page = await (await client.get(f"/statistiques?{MARCH}&lieu=qpv-etouvie")).text()
    assert '<option value="qpv-etouvie" selected>Étouvie, place du marché</option>' in page
    assert '<option value="en-ligne">Portail en ligne et messagerie</option>' in page
    assert "pour le lieu <strong>Étouvie, place du marché</strong>" in page
    assert key_figure(page, "personnes rencontrées") == "5"
    assert table(page, "site") == {"Étouvie, place du marché": "5"}
    assert table(page, "gender") == {"Femme": "100 %"}
    north = await (await client.get(f"/statistiques?{MARCH}&lieu=qpv-amiens-nord")).text()
    assert key_figure(north, "personnes rencontrées") == "< 5"
    assert "Étouvie" not in re.sub(r"<select.*?</select>", "", north, flags=re.S)


async def test_the_csv_is_the_apis_for_the_same_filters(client: Client,
                                                         tokens: Tokens) -> None:
    await seed(client, tokens)
    await funder(client)
    page = await (await client.get(f"/statistiques?{MARCH}&lieu=qpv-etouvie")).text()
    link = '/statistiques.csv?du=2026-03-01&amp;au=2026-03-31&amp;lieu=qpv-etouvie'
    assert f'download href="{link}"' in page
    for query, api_query in ((f"{MARCH}&lieu=qpv-etouvie",
                              "from=2026-03-01&to=2026-04-01&site=qpv-etouvie"),
                             (MARCH, "from=2026-03-01&to=2026-04-01")):
        ours = await client.get(f"/statistiques.csv?{query}")
        theirs = await client.get(f"/v1/stats.csv?{api_query}",
                                  headers=tokens.headers("region-hauts-de-france",
                                                         "stats:read"))
        assert ours.status == theirs.status == 200
        assert ours.content_type == "text/csv"
        assert await ours.read() == await theirs.read()
        assert ours.headers["Content-Disposition"] == theirs.headers["Content-Disposition"] \
            == 'attachment; filename="relais-stats-2026-03-01-2026-04-01.csv"'
    body = await (await client.get(f"/statistiques.csv?{MARCH}")).text()
    assert "Contacts par lieu,qpv-amiens-nord,<5" in body
    assert "Contacts par lieu,qpv-etouvie,5" in body


async def test_wrong_dates_are_said_on_the_page(client: Client) -> None:
    await funder(client)
    backwards = await client.get("/statistiques?du=2026-04-01&au=2026-03-01")
    text = await backwards.text()
    assert backwards.status == 400
    assert "Le dernier jour doit être le premier jour ou un jour après." in text
    assert 'aria-describedby="au-erreur"' in text and "relais-keys" not in text
    garbled = await client.get("/statistiques?du=hier")
    assert garbled.status == 400 and 'id="du-erreur"' in await garbled.text()
    same_day = await client.get("/statistiques?du=2026-03-01&au=2026-03-01")
    assert same_day.status == 200  # one day, included
    csv = await client.get("/statistiques.csv?du=2026-04-01&au=2026-03-01")
    assert csv.status == 400 and "Période incorrecte" in await csv.text()


async def test_the_page_is_for_funders_only(client: Client) -> None:
    away = await client.get("/statistiques?du=2026-03-01", allow_redirects=False)
    assert away.status == 303
    location = urlsplit(away.headers["Location"])
    assert location.path == "/connexion"
    assert parse_qs(location.query)["suite"] == ["/statistiques?du=2026-03-01"]
    await account(client, "camille@ml.example.org")
    await sign_in(client, "camille@ml.example.org")
    for path in ("/statistiques", "/statistiques.csv"):
        refused = await client.get(path)
        assert refused.status == 403 and "Accès refusé" in await refused.text()
    inbox = await (await client.get("/orientations")).text()
    assert 'href="/statistiques"' not in inbox  # not in a counsellor's menu
