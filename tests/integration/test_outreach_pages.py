"""The outreach team's pages (`/terrain`) over real HTTP and PostgreSQL, without a browser:
the day's permanence picked and remembered, a contact recorded through the same unit of work
as POST /v1/intakes (once per form, however often it is sent), bad input refused with
nothing written, the identity sealed in the vault, and what routing proposes (the browser
journey, timed, is tests/browser/test_outreach.py)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from schemas.vocab import AgeBracket
from services.directory import Weekday
from services.intake import pages as outreach
from services.runtime.app import RUNTIME
from services.runtime.web import PARIS
from tests.conftest import wait_until
from tests.e2e.conftest import Tokens
from tests.integration.conftest import Client
from tests.integration.test_console import ML, PASSWORD, TEAM, account, csrf, invite

TODAY = "camion-du-jour"
NADIA = "nadia@camion.example.org"


async def permanence_today(client: Client, tokens: Tokens) -> None:
    """The demo directory, with the truck at Étouvie today, all day (Paris time), with the
    Mission locale."""
    directory = await (await client.get("/v1/directory",
                                        headers=tokens.headers(TEAM, "intake:read"))).json()
    # the demo's own truck at Étouvie (on Tuesdays) would be a second "Je suis ici" there
    directory["permanences"] = [p for p in directory["permanences"]
                                if p["site"] != "qpv-etouvie"]
    directory["permanences"].append({
        "id": TODAY, "site": "qpv-etouvie", "mobile": True,
        # every day of the week: today whatever the date when the page is asked (no race
        # with midnight in Paris between this and the request)
        "schedule": [{"weekday": day.value, "start": "00:00", "end": "23:59"} for day in Weekday],
        "organisations": [TEAM, ML]})
    put = await client.put("/v1/directory", json=directory,
                           headers=tokens.headers("coordination", "directory:write"))
    assert put.status == 200, await put.text()


async def signed_in_counsellor(client: Client, tokens: Tokens, email: str = NADIA) -> None:
    """An outreach counsellor, signed in, on a day with a permanence."""
    await permanence_today(client, tokens)
    await account(client, email, org=TEAM, name="Nadia Benali")
    signed = await client.post("/connexion", data={"email": email, "password": PASSWORD},
                               allow_redirects=False)
    assert signed.status == 303


async def pick(client: Client, place: str = f"permanence:{TODAY}") -> Any:
    page = await (await client.get("/terrain")).text()
    return await client.post("/terrain", data={"csrf": csrf(page), "lieu": place},
                             allow_redirects=False)


def hidden(html: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert found, f"no {name} field on the page"
    return found.group(1)


async def open_form(client: Client) -> dict[str, str]:
    """The contact form's hidden fields: CSRF, idempotency key, opening time."""
    html = await (await client.get("/terrain/contact")).text()
    return {name: hidden(html, name) for name in ("csrf", "cle", "moment")}


ANONYMOUS: dict[str, Any] = {
    "canal": "mobile_permanence", "besoins": ["employment", "mobility"],
    "situation": ["known_mission_locale"], "age": "18_25", "commune": "80021", "duree": "15",
}


def form_data(fields: dict[str, str], values: dict[str, Any]) -> list[tuple[str, str]]:
    data = list(fields.items())
    for name, value in values.items():
        data += [(name, v) for v in value] if isinstance(value, list) else [(name, value)]
    return data


async def intakes(client: Client, tokens: Tokens) -> list[dict[str, Any]]:
    page = await (await client.get("/v1/intakes", headers=tokens.headers(
        TEAM, "intake:read"))).json()
    items: list[dict[str, Any]] = page["items"]
    return items


async def test_the_day_s_permanence_is_picked_and_remembered(client: Client,
                                                              tokens: Tokens) -> None:
    await signed_in_counsellor(client, tokens)
    home = await client.get("/", allow_redirects=False)
    assert home.headers["Location"] == "/terrain"  # an outreach team starts on the field
    day = await client.get("/terrain")
    html = await day.text()
    assert day.status == 200 and 'aria-current="page">Sur le terrain' in html
    assert "Les permanences du jour" in html and "Étouvie, place du marché" in html
    assert "0\u00a0h\u00a0–\u00a023\u00a0h\u00a059" in html  # its hours, Paris time
    assert "Avec : Mission locale du Grand Amiénois" in html  # the partner present
    assert "Portail en ligne et messagerie" in html  # the other sites
    assert "Vous êtes à" not in html
    assert (await client.get("/terrain/contact", allow_redirects=False)).headers[
        "Location"] == "/terrain"  # the day starts with its place

    days = {datetime.now(PARIS).date()}
    picked = await pick(client)
    days.add(datetime.now(PARIS).date())  # (one of the two: midnight may pass meanwhile)
    assert picked.status == 303 and picked.headers["Location"] == "/terrain/contact"
    cookie = picked.cookies[outreach.COOKIE]
    assert cookie["httponly"] and cookie["path"] == "/terrain"
    assert cookie.value in {f"{day.isoformat()}|permanence:{TODAY}" for day in days}
    again = await (await client.get("/terrain")).text()
    assert "Vous êtes à : Étouvie, place du marché" in again
    assert "Lieu choisi pour aujourd'hui" in again
    form = await (await client.get("/terrain/contact")).text()
    assert "Étouvie, place du marché · camion" in form and "avec Mission locale" in form

    unknown = await pick(client, "permanence:nulle-part")
    assert unknown.status == 422 and "Lieu inconnu" in await unknown.text()
    yesterday = (datetime.now(PARIS) - timedelta(days=1)).date().isoformat()
    client.session.cookie_jar.clear(lambda kept: kept.key == outreach.COOKIE)
    client.session.cookie_jar.update_cookies(
        {outreach.COOKIE: f"{yesterday}|permanence:{TODAY}"})
    stale = await client.get("/terrain/contact", allow_redirects=False)
    assert stale.status == 303 and stale.headers["Location"] == "/terrain"  # a new day


async def test_an_anonymous_contact_is_recorded_once_and_routed(client: Client,
                                                                tokens: Tokens) -> None:
    await signed_in_counsellor(client, tokens)
    await pick(client)
    fields = await open_form(client)
    sent = await client.post("/terrain/contact", data=form_data(fields, ANONYMOUS),
                             allow_redirects=False)
    assert sent.status == 303, await sent.text()
    where = sent.headers["Location"]
    assert where.startswith("/terrain/contacts/")
    twice = await client.post("/terrain/contact", data=form_data(fields, ANONYMOUS),
                              allow_redirects=False)  # a double tap: the same contact
    assert twice.status == 303 and twice.headers["Location"] == where

    [intake] = await intakes(client, tokens)
    assert where == f"/terrain/contacts/{intake['id']}"
    assert {k: intake[k] for k in ("org", "site", "permanence", "channel", "needs", "flags",
                                   "age_bracket", "commune", "has_identity", "has_note",
                                   "visit_number")} == {
        "org": TEAM, "site": "qpv-etouvie", "permanence": TODAY,
        "channel": "mobile_permanence", "needs": ["employment", "mobility"],
        "flags": ["known_mission_locale"], "age_bracket": AgeBracket.from_18_to_25.value,
        "commune": "80021", "has_identity": False, "has_note": False, "visit_number": 1}
    assert datetime.fromisoformat(intake["contacted_at"]) == datetime.fromisoformat(
        fields["moment"])  # when the form was opened
    duration = await client.app[RUNTIME].pool.fetchval(
        "SELECT duration_minutes FROM intake.intakes WHERE id = $1::uuid", intake["id"])
    assert duration == 15

    async def proposed() -> bool:
        return "Vers Mission locale du Grand Amiénois" in await (await client.get(where)).text()

    await wait_until(proposed, 30, "the routing's proposal")
    html = await (await client.get(where)).text()
    assert "Contact anonyme." in html
    assert "Pour :</strong> orientation vers un partenaire." in html
    assert "Mission locale du Grand Amiénois : Le partenaire qui couvre le plus" in html
    assert "ses besoins (emploi, mobilité)" in html
    assert "sa situation (18-25 ans, commune 80021, déjà connue de la Mission locale)" in html
    assert "En attente du consentement" in html
    assert "Rien n'est transmis à Mission locale du Grand Amiénois sans l'accord" in html
    assert "sous 3 jours ouvrés" in html
    assert 'href="/terrain/contact"' in html and 'href="/orientations/envoyees"' in html
    referrals = await (await client.get(f"/v1/referrals?intake_id={intake['id']}",
                                        headers=tokens.headers(TEAM, "referral:read"))).json()
    assert [(r["target"], r["status"]) for r in referrals["items"]] == [
        (ML, "awaiting_consent")]


async def test_bad_input_comes_back_with_nothing_written(client: Client,
                                                        tokens: Tokens) -> None:
    await signed_in_counsellor(client, tokens)
    await pick(client)
    fields = await open_form(client)
    nir = await client.post("/terrain/contact", data=form_data(fields, ANONYMOUS | {
        "note": "Son numéro : 1 85 05 78 006 084 36"}))
    html = await nir.text()
    assert nir.status == 422
    assert outreach.NIR_REFUSED in html.replace("&#39;", "'")
    assert re.search(r'id="note-messages"[^>]*>\s*<p class="fr-message fr-message--error">'
                     r"La note ne doit pas contenir", html)  # next to the field
    assert hidden(html, "cle") == fields["cle"]  # the same form, corrected, is sent again
    empty = await client.post("/terrain/contact", data=form_data(fields, {
        "canal": "mobile_permanence", "commune": "Amiens", "telephone": "appelez-moi",
        "annee": "deux mille"}))
    text = await empty.text()
    assert empty.status == 422
    for message in ("Choisissez au moins un besoin.", "Le code INSEE de la commune",
                    "Un numéro de téléphone", "Une année à 4 chiffres"):
        assert message in text, message
    assert 'aria-expanded="true" aria-controls="identite"' in text  # the identity shown
    assert await intakes(client, tokens) == []
    assert await client.app[RUNTIME].pool.fetchval(
        "SELECT count(*) FROM intake.idempotency_keys") == 0

    fixed = await client.post("/terrain/contact", data=form_data(fields, ANONYMOUS),
                              allow_redirects=False)  # corrected: recorded under its key
    assert fixed.status == 303
    assert len(await intakes(client, tokens)) == 1


async def test_an_identity_given_is_sealed_in_the_vault(client: Client,
                                                        tokens: Tokens) -> None:
    await signed_in_counsellor(client, tokens)
    await pick(client)
    fields = await open_form(client)
    sent = await client.post("/terrain/contact", data=form_data(fields, ANONYMOUS | {
        "prenom": "Léa", "telephone": "06 12 34 56 78", "courriel": "lea@exemple.fr",
        "note": "Cherche un apprentissage en cuisine."}), allow_redirects=False)
    assert sent.status == 303, await sent.text()
    [intake] = await intakes(client, tokens)
    assert intake["has_identity"] and intake["has_note"]
    person = await (await client.get(f"/v1/people/{intake['person_id']}",
                                      headers=tokens.headers(TEAM, "people:read"))).json()
    assert person["identity"]["first_name"] == "Léa"
    assert person["identity"]["phone"] == "06 12 34 56 78"
    assert person["identity"]["email"] == "lea@exemple.fr"
    assert person["notes"] == ["Cherche un apprentissage en cuisine."]
    sealed = await client.app[RUNTIME].pool.fetchval(
        "SELECT identity FROM intake.people WHERE person_id = $1::uuid", intake["person_id"])
    assert sealed is not None and "Léa".encode() not in sealed  # only ciphertext
    page = await (await client.get(sent.headers["Location"])).text()
    assert "Léa" not in page and "Son prénom et ses coordonnées sont chiffrés." in page
    assert "son identité et ses coordonnées, telles qu&#39;elle les a données" in page


async def test_other_roles_and_organisations_are_refused(client: Client,
                                                         tokens: Tokens) -> None:
    await signed_in_counsellor(client, tokens)
    await pick(client)
    fields = await open_form(client)
    sent = await client.post("/terrain/contact", data=form_data(fields, ANONYMOUS),
                             allow_redirects=False)
    where = sent.headers["Location"]
    client.session.cookie_jar.clear()

    token = await invite(client, "alex@region.example.org", "coordination", role="funder")
    await client.post(f"/invitation/{token}", data={"password": PASSWORD,
                                                    "confirmation": PASSWORD})
    await client.post("/connexion", data={"email": "alex@region.example.org",
                                          "password": PASSWORD})
    refused = await client.get("/terrain")
    assert refused.status == 403 and "Accès refusé" in await refused.text()
    assert (await client.get(where)).status == 403
    page = await (await client.get("/statistiques")).text()
    assert "/terrain" not in page  # not in the funder's menu
    forced = await client.post("/terrain/contact", data=form_data(
        fields | {"csrf": csrf(page)}, ANONYMOUS))
    assert forced.status == 403
    client.session.cookie_jar.clear()

    await account(client, "camille@ml.example.org")  # a partner's counsellor
    await client.post("/connexion", data={"email": "camille@ml.example.org",
                                          "password": PASSWORD})
    assert (await client.get("/", allow_redirects=False)).headers[
        "Location"] == "/orientations"  # a partner still starts with what it received
    other = await client.get(where)
    assert other.status == 404 and "Contact introuvable" in await other.text()
    assert len(await intakes(client, tokens)) == 1
