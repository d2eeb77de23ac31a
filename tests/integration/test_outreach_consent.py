"""The outreach team's consent page (`/terrain/accord/{intake}`) over real HTTP and
PostgreSQL, without a browser: the current notice on screen, what routing proposed pre-filled,
an oral consent before a named witness recorded through the same unit of work as
POST /v1/consents (once per form, at the time the person agreed, naming the notice shown) and
the referral handed off; bad input refused with nothing written; another organisation's
counsellor sees nothing (signatures and refusals: test_consent_evidence.py; the browser
journey is tests/browser/test_outreach.py)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from services.consent import outreach
from services.runtime.app import RUNTIME
from services.runtime.web import PARIS
from tests.conftest import wait_until
from tests.e2e.conftest import Tokens
from tests.integration.conftest import Client
from tests.integration.test_console import ML, PASSWORD, TEAM, account, csrf, invite
from tests.integration.test_outreach_pages import (
    ANONYMOUS,
    form_data,
    hidden,
    intakes,
    open_form,
    pick,
    signed_in_counsellor,
)

WITNESS = "Karim Diallo"
ML_NAME = "Mission locale du Grand Amiénois"


async def referrals(client: Client, tokens: Tokens, intake_id: str) -> list[dict[str, Any]]:
    page = await (await client.get(f"/v1/referrals?intake_id={intake_id}",
                                   headers=tokens.headers(TEAM, "referral:read"))).json()
    items: list[dict[str, Any]] = page["items"]
    return items


async def consents(client: Client, tokens: Tokens, person_id: str) -> list[dict[str, Any]]:
    listed = await (await client.get(f"/v1/consents?person_id={person_id}",
                                     headers=tokens.headers(TEAM, "consent:read"))).json()
    return [item["consent"] for item in listed["items"]]


async def proposed_contact(client: Client, tokens: Tokens) -> dict[str, Any]:
    """An anonymous contact recorded on the field by a signed-in counsellor, routed to the
    Mission locale and awaiting the person's consent."""
    await signed_in_counsellor(client, tokens)
    await pick(client)
    sent = await client.post("/terrain/contact",
                             data=form_data(await open_form(client), ANONYMOUS),
                             allow_redirects=False)
    assert sent.status == 303, await sent.text()
    [intake] = await intakes(client, tokens)

    async def routed() -> bool:
        return bool(await referrals(client, tokens, intake["id"]))

    await wait_until(routed, 30, "the routing's proposal")
    return intake


async def open_consent(client: Client, intake: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """The consent page and its hidden fields: CSRF, idempotency key, time, notice."""
    page = await client.get(f"/terrain/accord/{intake['id']}")
    html = await page.text()
    assert page.status == 200, html
    return html, {name: hidden(html, name) for name in ("csrf", "cle", "moment", "notice")}


ORAL: dict[str, Any] = {
    "destinataires": [ML], "finalites": ["referral_partner", "recontact"],
    "donnees": ["needs"], "methode": "oral_witnessed", "temoin": WITNESS,
    "decision": "accord",
}


async def test_an_oral_consent_is_recorded_once_and_hands_the_referral_off(
        client: Client, tokens: Tokens) -> None:
    intake = await proposed_contact(client, tokens)
    proposal = await (await client.get(f"/terrain/contacts/{intake['id']}")).text()
    assert f'href="/terrain/accord/{intake["id"]}"' in proposal
    assert "Recueillir l'accord de la personne" in proposal

    html, fields = await open_consent(client, intake)
    assert fields["notice"] == "2026-01"  # the current notice, on screen, in plain French
    served = await (await client.get("/v1/notices/2026-01", headers=tokens.headers(
        TEAM, "consent:read"))).json()
    title, paragraphs = outreach.paragraphs(served["text"])
    for line in (title, *paragraphs):
        assert line.replace("'", "&#39;") in html, line
    checked = set(re.findall(r'name="(\w+)" value="([^"]+)" checked', html))
    assert checked == {("destinataires", ML), ("finalites", "referral_partner"),
                       ("donnees", "needs"), ("donnees", "situation"),
                       ("methode", "signed_screen")}  # as routing proposed
    assert ML_NAME in html and "Nom du témoin" in html
    for label in outreach.METHODS.values():  # test_consent_evidence.py signs
        assert label.replace("'", "&#39;") in html

    sent = await client.post(f"/terrain/accord/{intake['id']}",
                             data=form_data(fields, ORAL), allow_redirects=False)
    assert sent.status == 303, await sent.text()
    where = sent.headers["Location"]
    twice = await client.post(f"/terrain/accord/{intake['id']}",
                              data=form_data(fields, ORAL), allow_redirects=False)
    assert twice.status == 303 and twice.headers["Location"] == where  # a double tap

    [listed] = await consents(client, tokens, intake["person_id"])
    assert where == f"/terrain/accord/{intake['id']}/{listed['id']}"
    consent = await (await client.get(f"/v1/consents/{listed['id']}", headers=tokens.headers(
        TEAM, "consent:read"))).json()
    assert {k: consent[k] for k in ("org", "purposes", "recipients", "categories", "method",
                                    "notice_version", "status")} == {
        "org": TEAM, "purposes": ["referral_partner", "recontact"], "recipients": [ML],
        "categories": ["needs"], "method": "oral_witnessed", "notice_version": "2026-01",
        "status": "active"}
    assert consent["notice_hash"] == served["hash"]
    assert datetime.fromisoformat(consent["granted_at"]) == datetime.fromisoformat(
        fields["moment"])  # when the person agreed, not when it was sent
    pool = client.app[RUNTIME].pool
    assert await pool.fetchval("SELECT witness FROM consent.consents") == WITNESS
    assert await pool.fetchval("SELECT count(*) FROM consent.consents") == 1

    async def handed_off() -> bool:
        found = await referrals(client, tokens, intake["id"])
        return [r["status"] for r in found] == ["requested"]

    await wait_until(handed_off, 30, "the referral handed off")
    [referral] = await referrals(client, tokens, intake["id"])
    assert referral["consent_id"] == consent["id"]
    done = await client.get(where)
    text = (await done.text()).replace("&#39;", "'")
    assert done.status == 200 and "<h1>Accord enregistré</h1>" in text
    assert "oral, devant un témoin (Karim Diallo)" in text
    assert "orientation vers un partenaire, être recontactée." in text
    assert f"À qui :</strong> {ML_NAME}." in text
    assert "Quelles informations :</strong> besoins." in text
    valid_until = datetime.fromisoformat(consent["valid_until"]).astimezone(PARIS)
    assert f"jusqu'au {valid_until:%d/%m/%Y}" in text
    assert f"L'orientation est transmise à {ML_NAME}, qui répond sous 3 jours ouvrés" in text
    assert 'href="/terrain/contact"' in text and 'href="/orientations/envoyees"' in text
    assert f'action="{where}/recu"' in text  # test_outreach_receipt.py


async def test_bad_input_comes_back_with_nothing_written(client: Client,
                                                        tokens: Tokens) -> None:
    intake = await proposed_contact(client, tokens)
    _html, fields = await open_consent(client, intake)
    url = f"/terrain/accord/{intake['id']}"
    no_witness = await client.post(url, data=form_data(fields, ORAL | {"temoin": "  "}))
    html = await no_witness.text()
    assert no_witness.status == 422
    assert re.search(r'id="witness-messages"[^>]*>\s*<p class="fr-message fr-message--error">'
                     r"Donnez le nom du témoin", html)  # next to the field
    assert "L&#39;accord n&#39;est pas enregistré" in html
    assert hidden(html, "cle") == fields["cle"] and hidden(html, "moment") == fields["moment"]
    assert 'name="donnees" value="needs" checked' in html  # the form as it was sent
    assert 'name="donnees" value="situation" checked' not in html

    nothing = await client.post(url, data=form_data(fields, ORAL | {
        "destinataires": [], "finalites": [], "donnees": ["tout"]}))
    text = (await nothing.text()).replace("&#39;", "'")
    assert nothing.status == 422
    for message in (outreach.ERRORS["recipients"], outreach.ERRORS["purposes"],
                    outreach.ERRORS["categories"]):
        assert message in text, message
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat(timespec="seconds")
    ahead = await client.post(url, data=form_data(fields | {"moment": future}, ORAL))
    assert ahead.status == 422 and outreach.EXPIRED.replace("'", "&#39;") in await ahead.text()
    pool = client.app[RUNTIME].pool
    assert await consents(client, tokens, intake["person_id"]) == []
    assert await pool.fetchval("SELECT count(*) FROM consent.idempotency_keys") == 0

    fixed = await client.post(url, data=form_data(fields, ORAL), allow_redirects=False)
    assert fixed.status == 303  # corrected: recorded under its key
    assert len(await consents(client, tokens, intake["person_id"])) == 1


async def test_other_organisations_and_roles_are_refused(client: Client,
                                                          tokens: Tokens) -> None:
    intake = await proposed_contact(client, tokens)
    _html, fields = await open_consent(client, intake)
    url = f"/terrain/accord/{intake['id']}"
    client.session.cookie_jar.clear()

    await account(client, "camille@ml.example.org")  # a partner's counsellor
    await client.post("/connexion", data={"email": "camille@ml.example.org",
                                          "password": PASSWORD})
    other = await client.get(url)
    assert other.status == 404 and "Contact introuvable" in await other.text()
    page = await (await client.get("/orientations")).text()
    forced = await client.post(url, data=form_data(fields | {"csrf": csrf(page)}, ORAL))
    assert forced.status == 404 and "Contact introuvable" in await forced.text()
    client.session.cookie_jar.clear()

    token = await invite(client, "alex@region.example.org", "coordination", role="funder")
    await client.post(f"/invitation/{token}", data={"password": PASSWORD,
                                                    "confirmation": PASSWORD})
    await client.post("/connexion", data={"email": "alex@region.example.org",
                                          "password": PASSWORD})
    refused = await client.get(url)
    assert refused.status == 403 and "Accès refusé" in await refused.text()
    assert await client.app[RUNTIME].pool.fetchval(
        "SELECT count(*) FROM consent.consents") == 0
