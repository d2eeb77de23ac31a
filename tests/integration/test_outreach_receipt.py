"""The receipt of a consent and the person's own page (issue #11, point 6) over real HTTP and
PostgreSQL, without a browser: the counsellor shows the receipt (a QR code of a link, and a
code); the link opens the person's page without an account, listing their consent; the person
withdraws one recipient there, through the same unit of work as POST
/v1/consents/{id}/withdraw (requested by the person, online), and the recipient's referral is
cancelled and told to stop; the code typed at /mon-accord opens the same page; wrong codes get
the same French words, then 429; an altered link shows nothing; neither link nor code is kept
in clear (the browser journey is tests/browser/test_outreach.py)."""

from __future__ import annotations

import re
import uuid
from html import unescape
from typing import Any
from urllib.parse import urlsplit

from structlog.testing import capture_logs

from services.consent import person_pages, receipt
from services.runtime.app import RUNTIME
from tests.conftest import wait_until
from tests.e2e.conftest import Tokens
from tests.integration.conftest import Client
from tests.integration.test_console import ML, TEAM, csrf
from tests.integration.test_outreach_consent import (
    ML_NAME,
    ORAL,
    consents,
    open_consent,
    proposed_contact,
    referrals,
)
from tests.integration.test_outreach_pages import form_data, hidden

FT, FT_NAME = "france-travail", "France Travail Amiens Nord"


def text_of(html: str) -> str:
    return unescape(html)


async def consented(client: Client, tokens: Tokens,
                    recipients: list[str]) -> tuple[dict[str, Any], str, str]:
    """A contact, its oral consent recorded on the page and its referral handed off: the
    intake, the consent's id and the confirmation page's address."""
    intake = await proposed_contact(client, tokens)
    _html, fields = await open_consent(client, intake)
    sent = await client.post(f"/terrain/accord/{intake['id']}", allow_redirects=False,
                             data=form_data(fields, ORAL | {"destinataires": recipients}))
    assert sent.status == 303, await sent.text()
    where = sent.headers["Location"]

    async def handed_off() -> bool:
        found = await referrals(client, tokens, intake["id"])
        return [r["status"] for r in found] == ["requested"]

    await wait_until(handed_off, 30, "the referral handed off")
    return intake, where.rsplit("/", 1)[1], where


async def receipt_of(client: Client, where: str) -> tuple[str, str, str]:
    """The receipt shown from the confirmation page: its HTML, link and code."""
    done = await (await client.get(where)).text()
    assert f'action="{where}/recu"' in done and "Montrer le reçu à la personne" in done
    shown = await client.post(f"{where}/recu", data={"csrf": csrf(done)})
    html = await shown.text()
    assert shown.status == 200, html
    assert shown.headers["Cache-Control"] == "no-store"
    link = re.search(r'id="lien-retrait">([^<]+)<', html)
    code = re.search(r'id="code-retrait">([^<]+)<', html)
    assert link and code, html
    return html, link.group(1), code.group(1)


async def as_the_person(client: Client) -> None:
    """Nobody signed in: the person's phone."""
    client.session.cookie_jar.clear()


async def test_the_person_withdraws_one_recipient_from_the_receipts_link(
        client: Client, tokens: Tokens) -> None:
    intake, consent_id, where = await consented(client, tokens, [ML, FT])
    html, link, code = await receipt_of(client, where)
    text = text_of(html)
    assert "<h1>Reçu de votre accord</h1>" in text
    assert re.search(r'<img class="relais-qr" src="data:image/svg\+xml[^"]+" alt="QR code', html)
    assert f"À qui :</strong> {ML_NAME}, {FT_NAME}." in text
    assert "Pour quoi faire :</strong> vous orienter vers un partenaire, vous recontacter." \
        in text
    assert "Quelles informations :</strong> vos besoins." in text
    assert re.fullmatch(rf"[{receipt.ALPHABET}]{{5}} [{receipt.ALPHABET}]{{5}}", code), code
    assert link.startswith(f"{client.app[RUNTIME].settings.base_url}/mon-accord/")
    assert urlsplit(link).path.removeprefix("/mon-accord/") not in await (
        await client.get(where)).text()  # shown once, on the receipt only

    pool = client.app[RUNTIME].pool
    token = urlsplit(link).path.removeprefix("/mon-accord/")
    [stored] = await pool.fetch("SELECT * FROM consent.receipts")
    assert stored["consent_id"] == uuid.UUID(consent_id)
    assert str(stored["person_id"]) == intake["person_id"]
    for secret in (code, code.replace(" ", ""), token):  # nothing kept in clear, anywhere
        for table in ("receipts", "consents", "consent_changes", "trail", "outbox"):
            assert await pool.fetchval(
                f"SELECT count(*) FROM consent.{table} t WHERE t::text LIKE $1",
                f"%{secret}%") == 0, (table, secret)
    assert bytes(stored["code_hash"]) != code.replace(" ", "").encode()

    await as_the_person(client)
    page = await client.get(urlsplit(link).path)
    mine = text_of(await page.text())
    assert page.status == 200, mine
    assert page.headers["Cache-Control"] == "no-store"
    assert "<h1>Mes accords</h1>" in mine and "Se déconnecter" not in mine
    assert "donné à Équipe mobile «\u00a0Le Camion\u00a0» (aller vers)" in mine
    assert "En cours" in mine and f"À qui :</strong> {ML_NAME}, {FT_NAME}." in mine
    assert f"Ne plus rien transmettre à {ML_NAME}" in mine
    assert "Retirer tout cet accord" in mine
    fields = {"csrf": hidden(mine, "csrf"), "accord": hidden(mine, "accord")}
    assert fields["accord"] == consent_id

    forged = await client.post(urlsplit(link).path, data=fields | {
        "csrf": "x" * 43, "retrait": f"destinataire:{ML}"}, allow_redirects=False)
    assert forged.status == 403  # the form's token is bound to the link
    withdrawn = await client.post(urlsplit(link).path, allow_redirects=False,
                                  data=fields | {"retrait": f"destinataire:{ML}"})
    assert withdrawn.status == 303, await withdrawn.text()
    assert withdrawn.headers["Location"] == f"{urlsplit(link).path}?retrait=fait"
    after = text_of(await (await client.get(withdrawn.headers["Location"])).text())
    assert "C'est fait : votre retrait est enregistré" in after
    assert "En partie retiré" in after and f"Déjà retiré :</strong> {ML_NAME}." in after
    assert f"À qui :</strong> {FT_NAME}." in after

    consent = await (await client.get(f"/v1/consents/{consent_id}", headers=tokens.headers(
        TEAM, "consent:read"))).json()
    assert consent["status"] == "active" and consent["recipients"] == [FT]
    [listed] = (await (await client.get(
        f"/v1/consents?person_id={intake['person_id']}",
        headers=tokens.headers(TEAM, "consent:read"))).json())["items"]
    change = listed["changes"][-1]
    assert {k: change[k] for k in ("kind", "recipients", "purposes", "requested_by", "channel",
                                   "org")} == {
        "kind": "withdrawn", "recipients": [ML], "purposes": [], "requested_by": "person",
        "channel": "online", "org": person_pages.BY_THE_PERSON}
    [entry] = await pool.fetch(
        "SELECT convert_from(entry, 'UTF8') AS e FROM consent.trail"
        " WHERE convert_from(entry, 'UTF8')::jsonb ->> 'kind' = 'consent.withdrawn'")
    assert '"requested_by":"person"' in entry["e"].replace(" ", "")  # on the trail

    async def cancelled() -> bool:
        found = await referrals(client, tokens, intake["id"])
        return [r["status"] for r in found] == ["cancelled"]

    await wait_until(cancelled, 30, "the referral cancelled")
    stops = await pool.fetchval(
        "SELECT count(*) FROM referral.outbox WHERE headers::text LIKE '%stop_processing%'"
        " AND key = $1::text::bytea", intake["person_id"])
    assert stops == 1  # the Mission locale is told to stop processing

    again = await client.post(urlsplit(link).path, allow_redirects=False,
                              data=fields | {"retrait": f"destinataire:{ML}"})
    assert again.headers["Location"].endswith("?retrait=deja")  # a second tap changes nothing
    whole = await client.post(urlsplit(link).path, allow_redirects=False,
                              data=fields | {"retrait": "tout"})
    assert whole.status == 303
    assert (await consents(client, tokens, intake["person_id"]))[0]["status"] == "withdrawn"
    ended = text_of(await (await client.get(urlsplit(link).path)).text())
    assert "Vous avez retiré cet accord" in ended and "Retirer tout cet accord" not in ended


async def test_the_code_opens_the_same_page_and_wrong_codes_are_throttled(
        client: Client, tokens: Tokens) -> None:
    _intake, consent_id, where = await consented(client, tokens, [ML])
    pool = client.app[RUNTIME].pool

    async def named() -> bool:  # the names of the person's page, from the directory's event
        return bool(await pool.fetchval(
            "SELECT name = $2 FROM consent.organisations WHERE id = $1", ML, ML_NAME))

    await wait_until(named, 30, "the directory's names kept by the consent service")
    _html, _link, code = await receipt_of(client, where)
    await as_the_person(client)
    form = await client.get("/mon-accord")
    assert form.status == 200 and "Code de votre reçu" in await form.text()

    typed = code.lower().replace(" ", "-")  # as a person may type it
    opened = await client.post("/mon-accord", data={"code": typed}, allow_redirects=False)
    assert opened.status == 303, await opened.text()
    page = text_of(await (await client.get(opened.headers["Location"])).text())
    assert hidden(page, "accord") == consent_id and f"À qui :</strong> {ML_NAME}." in page
    assert "Ne plus rien transmettre" not in page  # one recipient: the whole consent only

    other_site = await client.post("/mon-accord", data={"code": code},
                                   headers={"Origin": "https://ailleurs.example"})
    assert other_site.status == 403

    refusal = person_pages.REFUSED.replace("'", "&#39;")
    wrong = "".join(receipt.ALPHABET[(receipt.ALPHABET.index(c) + 1) % 30]
                    for c in code.replace(" ", ""))
    with capture_logs() as logs:
        for attempt in (wrong, "hello", "", code[:-1]):
            refused = await client.post("/mon-accord", data={"code": attempt})
            body = await refused.text()
            assert refused.status == 401 and refusal in body, attempt
            assert consent_id not in body and ML_NAME not in body
        location = opened.headers["Location"]
        at = len("/mon-accord/") + 10  # one sign changed (not the last: it has spare bits)
        altered = await client.get(location[:at] + ("A" if location[at] != "A" else "Q")
                                   + location[at + 1:])
        body = await altered.text()
        assert altered.status == 404 and "Lien non valable" in body and ML_NAME not in body
        throttled = await client.post("/mon-accord", data={"code": code})  # even the right one
        assert throttled.status == 429 and "Trop d&#39;essais" in await throttled.text()
        assert int(throttled.headers["Retry-After"]) >= 1
    events = [e["event"] for e in logs]
    assert events.count("receipt_code_refused") == 4
    assert "receipt_link_refused" in events and "receipt_code_throttled" in events
    assert code.replace(" ", "") not in repr(logs)  # logged, never with the code
