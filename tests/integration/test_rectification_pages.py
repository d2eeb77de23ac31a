"""Issue #14, rectification (GDPR art. 16) in the console, over real HTTP and PostgreSQL: the
data-protection officer opens the person's identity from the audit page (a logged read),
corrects it, and the intake service's API has replaced it; the trail says which fields, never
their values; invalid input is said next to its field, keeping what was typed; an auditor
without `people:rectify` is refused; an unknown, erased or unreachable person gets a French
page, never a 500."""

from __future__ import annotations

import html as html_lib
import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest

from services.runtime import peers
from services.runtime.app import RUNTIME
from services.runtime.settings import Settings
from tests.conftest import wait_until
from tests.e2e.conftest import Tokens
from tests.e2e.test_skeleton import consent_body
from tests.integration.conftest import Client
from tests.integration.test_audit_pages import auditor, part, text
from tests.integration.test_console import csrf
from tests.integration.test_intake import IDENTITY, INTAKE, SCOPES, TEAM, get, post

OFFICER = "delegue@coordination.example.org"


@pytest.fixture
def settings(database: str, tmp_path: Path) -> Settings:
    """Events and checkpoints within a second, so that a test sees the trail entry."""
    return Settings.model_validate({"data_dir": tmp_path, "database_url": database,
                                    "poll_interval": 0.3, "checkpoint_interval": 0.3})


async def met(client: Client, tokens: Tokens) -> str:
    """A person met by the outreach team, with their identity, who gave a consent (so the
    audit page knows them)."""
    person = str((await post(client, tokens, "/v1/intakes",
                             INTAKE | {"identity": IDENTITY}))["person_id"])
    await post(client, tokens, "/v1/consents", consent_body(person))
    return person


def field_group(html: str, name: str) -> str:
    """The DSFR input group of the form's field `name`."""
    found = re.search(rf'<div class="fr-input-group[^"]*">\s*<label class="fr-label" '
                      rf'for="{name}">.*?id="{name}-messages".*?</div>', html, re.S)
    assert found, f"no field {name}"
    return found.group(0)


def before(html: str) -> str:
    """The identity the form was opened with (its hidden field)."""
    found = re.search(r'name="avant" value="([^"]*)"', html)
    assert found, "no hidden field with the values the form was opened with"
    return html_lib.unescape(found.group(1))


async def identity_of(client: Client, tokens: Tokens, person: str) -> dict[str, Any]:
    identity: dict[str, Any] = (await (await get(client, tokens, f"/v1/people/{person}")
                                       ).json())["identity"]
    return identity


async def test_the_officer_corrects_an_identity_from_the_audit_page(
        client: Client, tokens: Tokens) -> None:
    person = await met(client, tokens)
    await auditor(client, OFFICER, "dpo")
    audit = await (await client.get(f"/audit?personne={person}")).text()
    assert f'href="/audit/personne/{person}/identite"' in part(audit, "droits")

    opened = await client.get(f"/audit/personne/{person}/identite")
    assert opened.status == 200
    form = await opened.text()
    for name, value in (("prenom", "Léa"), ("nom", "Martin"), ("naissance", "02/04/2006"),
                        ("telephone", "06 12 34 56 78"), ("courriel", "lea.martin@example.org")):
        assert f'value="{value}"' in field_group(form, name), name
    said = text(form)
    assert "les anciennes valeurs sont effacées" in said
    assert "les champs corrigés et par qui, jamais leurs valeurs" in said
    pool = client.app[RUNTIME].pool
    assert await pool.fetchval("SELECT org FROM intake.access_log WHERE person_id = $1"
                               " ORDER BY id DESC LIMIT 1", uuid.UUID(person)) == "coordination"

    typed = {"csrf": csrf(form), "avant": before(form), "prenom": "Léa", "nom": "Martin-Dubois",
             "naissance": "2/4/2006", "telephone": " 06 12 34 56 78 ", "courriel": ""}
    done = await client.post(f"/audit/personne/{person}/identite", data=typed,
                             allow_redirects=False)
    assert done.status == 303, await done.text()
    assert done.headers["Location"] == f"/audit?personne={person}&corrige=email,last_name#droits"
    assert await identity_of(client, tokens, person) == {
        "first_name": "Léa", "last_name": "Martin-Dubois", "birth_date": "2006-04-02",
        "phone": "06 12 34 56 78", "email": None}, "what was typed, an empty field removed"

    confirmed = await client.get(done.headers["Location"])
    assert "Identité corrigée : courriel, nom" in text(part(await confirmed.text(), "droits"))

    async def on_the_trail() -> list[dict[str, Any]]:
        return [json.loads(bytes(r["entry"])) for r in await pool.fetch(
            "SELECT entry FROM consent.trail WHERE person_id = $1 AND"
            " convert_from(entry, 'UTF8') LIKE '%personal_data.rectified%'", uuid.UUID(person))]

    await wait_until(on_the_trail, 30, "the correction on the consent trail")
    [entry] = await on_the_trail()
    assert entry["fields"] == ["email", "last_name"]
    assert entry["rectified_by"] == "Dominique Petit (coordination)"
    assert "Dubois" not in json.dumps(entry) and "example.org" not in json.dumps(entry)
    journal = text(part(await (await client.get(f"/audit?personne={person}")).text(),
                        "journal"))
    assert "Dominique Petit (coordination) a corrigé, à la demande de la personne : " \
           "courriel, nom." in journal

    reopened = await (await client.get(f"/audit/personne/{person}/identite")).text()
    again = await client.post(f"/audit/personne/{person}/identite", allow_redirects=False,
                              data=typed | {"avant": before(reopened)})
    assert again.headers["Location"] == f"/audit?personne={person}&corrige=rien#droits"
    unchanged = await (await client.get(again.headers["Location"])).text()
    assert "Identité inchangée : rien n'a changé" in text(part(unchanged, "droits"))


async def test_invalid_input_is_said_next_to_its_field_and_kept(
        client: Client, tokens: Tokens) -> None:
    person = await met(client, tokens)
    await auditor(client, OFFICER, "dpo")
    form = await (await client.get(f"/audit/personne/{person}/identite")).text()
    refused = await client.post(f"/audit/personne/{person}/identite", data={
        "csrf": csrf(form), "avant": "{}", "prenom": "Léa", "nom": "<b>Martin</b>",
        "naissance": "31/02/2006", "telephone": "pas un numéro", "courriel": "lea@"})
    assert refused.status == 422
    html = await refused.text()
    assert "<title>Erreur : Corriger l'identité de la personne" in html
    assert "L'identité n'est pas corrigée" in text(html)
    phone, email = field_group(html, "telephone"), field_group(html, "courriel")
    assert 'value="pas un numéro"' in phone and 'value="lea@"' in email, "what was typed"
    assert "fr-input-group--error" in phone and 'aria-invalid="true"' in phone
    assert "Un numéro de téléphone : des chiffres" in text(phone)
    assert "Une adresse électronique valable" in text(email)
    born = field_group(html, "naissance")
    assert 'value="31/02/2006"' in born and "au format jj/mm/aaaa" in text(born)
    name = field_group(html, "nom")
    assert "fr-input-group--error" not in name and "&lt;b&gt;Martin&lt;/b&gt;" in name
    assert "<b>" not in html
    assert await identity_of(client, tokens, person) == IDENTITY, "nothing written"
    forged = await client.post(f"/audit/personne/{person}/identite", data={"prenom": "Autre"})
    assert forged.status == 403 and "Formulaire expiré" in text(await forged.text())
    assert await identity_of(client, tokens, person) == IDENTITY, "no CSRF token, nothing"


async def test_without_people_rectify_the_officer_page_is_refused(
        client: Client, tokens: Tokens) -> None:
    person = await met(client, tokens)
    await auditor(client)  # the auditor role: audit:read only
    audit = await (await client.get(f"/audit?personne={person}")).text()
    assert "/identite" not in audit
    opened = await client.get(f"/audit/personne/{person}/identite")
    assert opened.status == 403 and "Accès refusé" in text(await opened.text())
    sent = await client.post(f"/audit/personne/{person}/identite", data={
        "csrf": csrf(audit), "prenom": "Autre"})
    assert sent.status == 403 and "Accès refusé" in text(await sent.text())
    assert await identity_of(client, tokens, person) == IDENTITY


async def test_unknown_erased_or_unreachable_people_get_a_french_page(
        client: Client, tokens: Tokens, monkeypatch: pytest.MonkeyPatch) -> None:
    person = await met(client, tokens)
    await auditor(client, OFFICER, "dpo")
    form = await (await client.get(f"/audit/personne/{person}/identite")).text()
    token = csrf(form)
    unknown = str(uuid.UUID(int=7))
    opened = await client.get(f"/audit/personne/{unknown}/identite")
    assert opened.status == 404
    assert "Aucune rencontre n'est enregistrée" in text(await opened.text())
    sent = await client.post(f"/audit/personne/{unknown}/identite",
                             data={"csrf": token, "prenom": "Léa"})
    assert sent.status == 404
    assert "aucune rencontre n'est enregistrée pour cette personne" in text(await sent.text())

    erased = await client.delete(f"/v1/people/{person}", headers=tokens.headers(TEAM, SCOPES))
    assert erased.status == 204
    sent = await client.post(f"/audit/personne/{person}/identite",
                             data={"csrf": token, "prenom": "Léa"})
    assert sent.status == 410 and "cette personne a été effacée" in text(await sent.text())
    opened = await client.get(f"/audit/personne/{person}/identite")
    assert opened.status == 410 and "Personne effacée" in text(await opened.text())

    monkeypatch.setattr(peers, "intake_base", lambda request: "http://127.0.0.1:9")
    for answered in (await client.get(f"/audit/personne/{person}/identite"),
                     await client.post(f"/audit/personne/{person}/identite",
                                       data={"csrf": token, "prenom": "Léa"})):
        assert answered.status == 503
        assert "Le service d'accueil ne répond pas" in text(await answered.text())


async def test_a_change_made_meanwhile_is_not_overwritten(client: Client,
                                                          tokens: Tokens) -> None:
    """The form was opened, then a contact changed the phone: saving the form would erase the
    new phone without anyone seeing it. The API's If-Match refuses it (412); the page shows
    the identity as it is now, with what was typed beside each field, and saves nothing."""
    person = await met(client, tokens)
    await auditor(client, OFFICER, "dpo")
    form = await (await client.get(f"/audit/personne/{person}/identite")).text()
    read = await get(client, tokens, f"/v1/people/{person}")
    tag = read.headers["ETag"]
    changed = await client.put(f"/v1/people/{person}/identity", headers=tokens.headers(
        "coordination", "people:rectify") | {"If-Match": tag},
        json=IDENTITY | {"phone": "07 98 76 54 32"})
    assert changed.status == 200 and changed.headers["ETag"] != tag
    stale = await client.put(f"/v1/people/{person}/identity", headers=tokens.headers(
        "coordination", "people:rectify") | {"If-Match": tag}, json=IDENTITY)
    assert stale.status == 412 and stale.headers["ETag"] == changed.headers["ETag"]

    typed = {"csrf": csrf(form), "avant": before(form), "prenom": "Léa", "nom": "Martin-Dubois",
             "naissance": "02/04/2006", "telephone": "06 12 34 56 78",
             "courriel": "lea.martin@example.org"}
    refused = await client.post(f"/audit/personne/{person}/identite", data=typed,
                                allow_redirects=False)
    page = await refused.text()
    assert refused.status == 409, page
    assert "L'identité a changé depuis l'ouverture de ce formulaire" in text(page)
    assert 'value="07 98 76 54 32"' in field_group(page, "telephone")
    assert "Vous aviez saisi : « 06 12 34 56 78 »." in text(field_group(page, "telephone"))
    assert "Martin-Dubois" in text(field_group(page, "nom"))
    assert (await identity_of(client, tokens, person))["phone"] == "07 98 76 54 32", (
        "nothing saved")
    again = await client.post(f"/audit/personne/{person}/identite", allow_redirects=False,
                              data=typed | {"csrf": csrf(page), "avant": before(page)})
    assert again.status == 303, await again.text()
    assert (await identity_of(client, tokens, person))["last_name"] == "Martin-Dubois"
