"""The coordination's directory and notification pages over real HTTP and PostgreSQL: the
directory as the API serves it (permanences with their weekly schedule, places), how an
organisation is told (saved as through `PUT /v1/recipients/{org}`, refused in French with
nothing written), who may change it, and webhook endpoints added (the secret shown once),
refused at a private address, and stopped."""

from __future__ import annotations

from html import unescape
from typing import Any

from tests.e2e.conftest import Tokens
from tests.integration.conftest import Client
from tests.integration.test_console import PASSWORD, csrf, invite, sign_in

ML, FT, COORDINATION = "mission-locale", "france-travail", "coordination"
NBSP = "\u00a0"


async def read(response: Any) -> str:
    """A page's text, its entities (an escaped apostrophe) read."""
    return unescape(await response.text())


async def signed_in(client: Client, email: str, org: str, role: str = "counsellor",
                    name: str = "Claire Dubois") -> str:
    """A person with an account, signed in (alone: the client's cookies are cleared first);
    a page's CSRF token."""
    client.session.cookie_jar.clear()
    token = await invite(client, email, org, role=role, name=name)
    done = await client.post(f"/invitation/{token}", data={
        "password": PASSWORD, "confirmation": PASSWORD}, allow_redirects=False)
    assert done.status == 303, await read(done)
    assert (await sign_in(client, email)).status == 303
    return csrf(await read(await client.get("/orientations")))


async def coordinator(client: Client) -> str:
    return await signed_in(client, "claire@coordination.example.org", COORDINATION,
                           role="coordinator")


async def recipient(client: Client, tokens: Tokens, org: str) -> dict[str, Any]:
    response = await client.get(f"/v1/recipients/{org}",
                                headers=tokens.headers(org, "notification:read"))
    assert response.status == 200
    found: dict[str, Any] = await response.json()
    return found


async def test_the_directory_shows_permanences_with_their_schedule(client: Client) -> None:
    token = await coordinator(client)
    home = await read(await client.get("/coordination"))
    assert 'href="/coordination/annuaire"' in home
    assert 'href="/coordination/organisations/coordination/notifications"' in home
    saved = await client.post(f"/coordination/places/{ML}", data={
        "csrf": token, "open_places": "3", "waiting_list": "oui"}, allow_redirects=False)
    assert saved.status == 303

    page = await client.get("/coordination/annuaire")
    assert page.status == 200
    html = (await read(page)).replace(NBSP, " ")  # a time is never cut across two lines
    for said in ("mardi 9 h 30 – 12 h 30",  # the truck at Étouvie, on Tuesday mornings
                 "lundi 14 h – 17 h", "jeudi 14 h – 17 h",
                 "Étouvie, place du marché", "Centre social Nord (permanence fixe)",
                 "en quartier prioritaire (QN08001M)", "Missions locales", "Associations",
                 "Réseau d'insertion des jeunes du Grand Amiénois",
                 "3 places libres", "liste d'attente", "de 16 à 25 ans"):
        assert said in html, said
    assert html.index("lundi 14") < html.index("jeudi 14")  # Monday first
    assert f'href="/coordination/organisations/{ML}/notifications"' in html

    await signed_in(client, "sam@ml.example.org", ML, name="Sam Petit")
    read_only = await client.get("/coordination/annuaire")
    assert read_only.status == 200
    text = await read(read_only)
    assert f"mardi{NBSP}9{NBSP}h{NBSP}30" in text and "Réglages" not in text
    assert f'href="/coordination/organisations/{ML}/notifications"' in text
    await signed_in(client, "f@region.example.org", COORDINATION, role="funder")
    assert (await client.get("/coordination/annuaire")).status == 403


async def test_the_coordination_sets_how_an_organisation_is_told(client: Client,
                                                                 tokens: Tokens) -> None:
    token = await coordinator(client)
    page = await client.get(f"/coordination/organisations/{ML}/notifications")
    assert page.status == 200
    assert "accueil@mission-locale.example.org" in await read(page)

    saved = await client.post(f"/coordination/organisations/{ML}/notifications", data=[
        ("csrf", token), ("email", "equipe@ml.example.org"),
        ("counsellors", "a.martin@ml.example.org\r\nb.durand@ml.example.org\r\n"),
        ("channels", "email"), ("channels", "inbox"), ("muted", "reminder"),
        ("muted", "expired")], allow_redirects=False)
    assert saved.status == 303, await read(saved)
    shown = await read(await client.get(saved.headers["Location"]))
    assert "Réglages des notifications enregistrés" in shown
    assert "b.durand@ml.example.org" in shown
    expected = {"org": ML, "name": "Mission locale du Grand Amiénois",
                "email": "equipe@ml.example.org",
                "counsellors": ["a.martin@ml.example.org", "b.durand@ml.example.org"],
                "channels": ["email", "inbox"], "muted": ["expired", "reminder"]}
    assert await recipient(client, tokens, ML) == expected

    wrong = await client.post(f"/coordination/organisations/{ML}/notifications", data=[
        ("csrf", token), ("email", "pas une adresse"),
        ("counsellors", "c.roux@ml.example.org\nnon valide"), ("channels", "email"),
        ("muted", "inconnu")])
    assert wrong.status == 422
    html = await read(wrong)
    for said in ("Rien n'a été enregistré", "Saisissez une adresse électronique valide",
                 "Cette adresse n'est pas une adresse électronique valide : « non valide »",
                 "Type de message inconnu : inconnu"):
        assert said in html, said
    assert 'aria-describedby="email-erreur"' in html and 'value="pas une adresse"' in html
    mandatory = await client.post(f"/coordination/organisations/{ML}/notifications", data=[
        ("csrf", token), ("email", "equipe@ml.example.org"), ("muted", "new_referral")])
    assert mandatory.status == 422
    assert "Ces messages sont toujours envoyés : nouvelle orientation" in \
        await read(mandatory)
    assert await recipient(client, tokens, ML) == expected  # nothing written

    # the API says no alike (the same unit of work)
    refused = await client.put(f"/v1/recipients/{ML}", json={
        "email": "x@ml.example.org", "muted": ["stop_processing"]},
        headers=tokens.headers(COORDINATION, "directory:write"))
    assert refused.status == 422 and "stop_processing" in (await refused.json())["detail"]
    unknown = await client.get("/coordination/organisations/nulle-part/notifications")
    assert unknown.status == 404 and "pas dans l'annuaire" in await read(unknown)
    forged = await client.post(f"/coordination/organisations/{ML}/notifications",
                               data={"csrf": "faux", "email": "x@ml.example.org"})
    assert forged.status == 403 and await recipient(client, tokens, ML) == expected


async def test_a_counsellor_of_another_organisation_cannot_edit(client: Client,
                                                               tokens: Tokens) -> None:
    before = await recipient(client, tokens, FT)
    token = await signed_in(client, "sam@ml.example.org", ML, name="Sam Petit")
    other = await client.get(f"/coordination/organisations/{FT}/notifications")
    assert other.status == 403 and "Accès refusé" in await read(other)
    edit = await client.post(f"/coordination/organisations/{FT}/notifications", data={
        "csrf": token, "email": "pirate@example.org"})
    assert edit.status == 403 and "Accès refusé" in await read(edit)
    assert await recipient(client, tokens, FT) == before

    own = await client.get(f"/coordination/organisations/{ML}/notifications")
    assert own.status == 200
    html = await read(own)
    assert "accueil@mission-locale.example.org" in html and 'name="email"' not in html
    assert "Seule la coordination du territoire modifie ces réglages" in html
    assert (await client.post(f"/coordination/organisations/{ML}/notifications", data={
        "csrf": token, "email": "x@ml.example.org"})).status == 403
    hook = await client.post(f"/coordination/organisations/{ML}/webhooks", data={
        "csrf": token, "url": "https://93.184.215.14/hooks"})
    assert hook.status == 403


async def test_webhooks_are_added_once_refused_inside_and_stopped(client: Client,
                                                                  tokens: Tokens) -> None:
    token = await coordinator(client)
    base = f"/coordination/organisations/{COORDINATION}"
    api = tokens.headers(COORDINATION, "notification:read")

    async def listed() -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = (await (await client.get(
            "/v1/webhooks/endpoints", headers=api)).json())["items"]
        return items

    for url in ("http://10.1.2.3/relais", "http://127.0.0.1:9/relais"):
        inside = await client.post(f"{base}/webhooks", data={"csrf": token, "url": url})
        assert inside.status == 422
        html = await read(inside)
        assert "Relais n'envoie les webhooks qu'à des adresses publiques" in html
        assert f"« {url.split('/')[2].split(':')[0]} » mène à une adresse privée" in html
    not_web = await client.post(f"{base}/webhooks", data={"csrf": token, "url": "ftp://x"})
    assert not_web.status == 422 and "commence par https://" in await read(not_web)
    odd = await client.post(f"{base}/webhooks", data={
        "csrf": token, "url": "https://93.184.215.14/relais", "kinds": "rien"})
    assert odd.status == 422 and "Type de message inconnu : rien" in await read(odd)
    assert await listed() == []

    added = await client.post(f"{base}/webhooks", data=[
        ("csrf", token), ("url", "https://93.184.215.14/relais/webhooks"),
        ("kinds", "escalation"), ("kinds", "expired")])
    assert added.status == 201
    assert added.headers["Cache-Control"] == "no-store"
    html = await read(added)
    assert "elle ne sera plus jamais affichée" in html
    secret = html.split('id="cle-secrete" value="')[1].split('"')[0]
    assert secret.startswith("whsec_")
    [endpoint] = await listed()
    assert endpoint["url"] == "https://93.184.215.14/relais/webhooks"
    assert endpoint["kinds"] == ["escalation", "expired"] and endpoint["secret"] is None
    again = await read(await client.get(f"{base}/notifications"))
    assert secret not in again and "https://93.184.215.14/relais/webhooks" in again
    assert "Aucun envoi pour l'instant" in again

    elsewhere = await client.post(f"/coordination/organisations/{ML}/webhooks", data={
        "csrf": token, "url": "https://93.184.215.14/ailleurs"})
    assert elsewhere.status == 403  # an organisation's own endpoints only, as in the API

    stopped = await client.post(f"{base}/webhooks/{endpoint['id']}/desactiver",
                                data={"csrf": token}, allow_redirects=False)
    assert stopped.status == 303
    assert await listed() == []
    page = await read(await client.get(stopped.headers["Location"]))
    assert "Webhook désactivé" in page and "Désactivé" in page
    twice = await client.post(f"{base}/webhooks/{endpoint['id']}/desactiver",
                              data={"csrf": token})
    assert twice.status == 404
    garbled = await client.post(f"{base}/webhooks/pas-un-id/desactiver", data={"csrf": token})
    assert garbled.status == 404
