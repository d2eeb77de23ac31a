"""The audit page over real HTTP and PostgreSQL, as a data-protection officer uses it: a
person's consents and their history, their trail entries with proofs checked by the server,
the access log, the checkpoints; the export downloaded from the page, identical to the API's,
verified offline with the command the page shows; a tampered entry found; who may see it."""

from __future__ import annotations

import asyncio
import html as html_lib
import re
import shlex
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from services.runtime.app import RUNTIME
from services.runtime.settings import Settings
from tests.conftest import wait_until
from tests.e2e.conftest import Tokens
from tests.integration.conftest import Client
from tests.integration.test_console import PASSWORD, account, csrf, invite, sign_in

TEAM, ML, FT = "equipe-aller-vers", "mission-locale", "france-travail"
SCOPES = "intake:write consent:write consent:read people:read"
AUDITOR = "dpo@coordination.example.org"


@pytest.fixture
def settings(database: str, tmp_path: Path) -> Settings:
    """Checkpoints and expiries within a second, so that a test sees them."""
    return Settings.model_validate({"data_dir": tmp_path, "database_url": database,
                                    "poll_interval": 0.3, "checkpoint_interval": 0.3,
                                    "expiry_interval": 0.3})


async def auditor(client: Client, email: str = AUDITOR, role: str = "auditor") -> None:
    """An account with the auditor role (`audit:read` only), or another, signed in."""
    token = await invite(client, email, "coordination", role, "Dominique Petit")
    done = await client.post(f"/invitation/{token}", data={
        "password": PASSWORD, "confirmation": PASSWORD}, allow_redirects=False)
    assert done.status == 303
    assert (await sign_in(client, email)).status == 303


async def post(client: Client, tokens: Tokens, path: str, body: dict[str, Any],
               org: str = TEAM) -> Any:
    response = await client.post(path, json=body, headers=tokens.headers(
        org, SCOPES, **{"Idempotency-Key": str(uuid.uuid4())}))
    assert response.status in (200, 201), await response.text()
    return await response.json()


async def story(client: Client, tokens: Tokens) -> dict[str, str]:
    """A person met by the outreach team: a consent for the Mission locale and France
    Travail, withdrawn for France Travail by phone; a second consent that expires; their data
    read by the team (who met them) and by the Mission locale (under the consent). Returns
    once the six trail entries are in and signed."""
    intake = await post(client, tokens, "/v1/intakes", {
        "site": "qpv-etouvie", "channel": "mobile_permanence",
        "contacted_at": "2026-11-20T10:00:00+01:00", "needs": ["employment"],
        "identity": {"first_name": "Léa"}})
    person = intake["person_id"]
    common = {"person_id": person, "notice_version": "2026-01", "captured_by": "conseillere-camion"}
    kept = await post(client, tokens, "/v1/consents", common | {
        "purposes": ["referral_partner", "share_dossier"], "recipients": [ML, FT],
        "categories": ["identity"], "method": "signed_screen"})
    await post(client, tokens, f"/v1/consents/{kept['id']}/withdraw", {
        "recipients": [FT], "requested_by": "person", "channel": "phone"})
    soon = (datetime.now(UTC) + timedelta(seconds=4)).isoformat()  # still ahead when posted
    short = await post(client, tokens, "/v1/consents", common | {
        "purposes": ["recontact"], "recipients": ["ccas"], "categories": ["contact"],
        "method": "oral_witnessed", "witness": "Mme Diallo, animatrice", "valid_until": soon})
    pool = client.app[RUNTIME].pool

    async def ml_reads() -> bool:  # once the consent reached the intake service
        response = await client.get(f"/v1/people/{person}", headers=tokens.headers(ML, SCOPES))
        return response.status == 200

    await wait_until(ml_reads, 30, "the Mission locale to read under the consent")
    team = await client.get(f"/v1/people/{person}", headers=tokens.headers(TEAM, SCOPES))
    assert team.status == 200

    async def all_in_and_signed() -> bool:
        mine = await pool.fetchval("SELECT count(*) FROM consent.trail WHERE person_id = $1",
                                   uuid.UUID(person))
        size = await pool.fetchval("SELECT count(*) FROM consent.trail")
        signed = await pool.fetchval("SELECT max(size) FROM consent.checkpoints")
        return bool(mine == 6 and signed == size)

    await wait_until(all_in_and_signed, 30, "six entries (the expiry too), all signed")
    return {"person": person, "kept": kept["id"], "short": short["id"]}


def part(html: str, element_id: str) -> str:
    """The element with this id, up to the end of its table (or section)."""
    start = html.index(f'id="{element_id}"')
    ends = [html.find(end, start) for end in ("</table>", "</section>")]
    return html[start:min(e for e in ends if e != -1)]


def text(html: str) -> str:
    """What a reader sees of some HTML: no tags, one space between words."""
    return " ".join(html_lib.unescape(re.sub(r"<[^>]+>", " ", html)).split())


def rows(table: str) -> list[list[str]]:
    """The body rows of a table: each cell's text."""
    body = table[table.index("<tbody>"):]
    return [[text(cell) for cell in re.findall(r"<td>(.*?)</td>", row, re.S)]
            for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)]


async def test_an_auditor_sees_consents_history_proven_entries_reads_and_checkpoints(
    client: Client, tokens: Tokens
) -> None:
    facts = await story(client, tokens)
    await auditor(client)
    response = await client.get(f"/audit?personne={facts['person']}")
    assert response.status == 200
    html = await response.text()
    assert 'href="/audit" aria-current="page"' in html, "the menu entry, current"
    assert f"Personne {facts['person']}" in html
    assert "Léa" not in html, "no personal data on the audit page"

    # columns: date, change, what changes, asked by (and how), recorded by
    first, second = rows(part(html, "historique-1")), rows(part(html, "historique-2"))
    assert [r[1] for r in first] == ["Donné", "Retiré"]
    assert first[1][2:] == ["destinataires retirés : france-travail",
                            "la personne elle-même, par téléphone", TEAM]
    assert [r[1] for r in second] == ["Donné", "Arrivé à échéance"]
    assert second[1][3:] == ["aucune demande : échéance atteinte", "Relais, automatiquement"]
    assert ("Permet aujourd'hui : orientation vers un partenaire, partage du dossier, vers "
            "mission-locale.") in text(html)
    assert "témoin : Mme Diallo, animatrice" in html

    # columns: number, date, event, proof, detail
    journal = rows(part(html, "journal"))
    assert [r[2] for r in journal].count("Données consultées") == 2
    assert [r[3] for r in journal] == ["Preuve vérifiée"] * 6, journal
    assert "Journal intact pour cette personne" in html

    # columns: date, organisation, account or application, data read, under which consent
    reads = {r[1]: r for r in rows(part(html, "acces"))}
    assert set(reads) == {ML, TEAM}
    assert reads[ML][2:] == ["dev", "identité", f"accord {facts['kept']}"]
    assert reads[TEAM][4] == "aucun : la structure a rencontré la personne"

    # columns: signed at, entries, root, key, signature, consistent with the one before
    heads = rows(part(html, "points"))
    assert heads, "signed checkpoints are listed"
    assert [r[4] for r in heads] == ["valide"] * len(heads)
    assert [r[5] for r in heads] == ["oui"] * (len(heads) - 1) + ["premier point de contrôle"]
    assert len(heads) > 1, "at least one consistency proof checked"


async def test_the_export_from_the_page_is_the_apis_and_verifies_with_the_command_shown(
    client: Client, tokens: Tokens, tmp_path: Path
) -> None:
    await story(client, tokens)
    await auditor(client)
    html = await (await client.get("/audit")).text()
    links = dict(re.findall(r'download="([^"]+)" href="([^"]+)"', html))
    assert set(links) == {"keys.json", "trail.jsonl"}

    from_page = await client.get(links["trail.jsonl"])
    assert from_page.status == 200
    assert from_page.headers["Content-Disposition"] == 'attachment; filename="trail.jsonl"'
    from_api = await client.get("/v1/audit/consent-trail/export",
                                headers=tokens.headers("cnil", "audit:read"))
    exported = await from_page.read()
    assert exported == await from_api.read() and exported.count(b"\n") > 6
    keys = await (await client.get(links["keys.json"])).read()
    assert keys == await (await client.get("/v1/audit/keys")).read()
    (tmp_path / "trail.jsonl").write_bytes(exported)
    (tmp_path / "keys.json").write_bytes(keys)

    shown = re.search(r'<code id="commande"[^>]*>(.*?)</code>', html)
    assert shown and text(shown.group(1)) == "relais audit verify trail.jsonl --key keys.json"
    command = shlex.split(text(shown.group(1)))
    run = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli", *command[1:], cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    said = (await run.communicate())[0].decode()
    assert run.returncode == 0 and said.startswith("OK: "), said
    for answer in ("<strong>OK</strong>", "<strong>FAILED</strong>",
                   "<strong>NOT VERIFIED</strong>"):
        assert answer in html

    client.session.cookie_jar.clear()
    anonymous = await client.get("/audit/export.jsonl", allow_redirects=False)
    assert anonymous.status == 303 and anonymous.headers["Location"].startswith("/connexion")


async def _tamper(client: Client, statement: str, *args: Any) -> None:
    """What someone with the database's superuser could do behind the application's back."""
    async with client.app[RUNTIME].pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")  # triggers off
        await conn.execute(statement, *args)


async def test_a_tampered_entry_shows_an_invalid_proof(client: Client,
                                                       tokens: Tokens) -> None:
    facts = await story(client, tokens)
    person = uuid.UUID(facts["person"])
    pool = client.app[RUNTIME].pool
    granted = await pool.fetchrow(
        "SELECT seq, entry FROM consent.trail WHERE person_id = $1 ORDER BY seq LIMIT 1",
        person)
    forged = granted["entry"].replace(ML.encode(), b"asso-boussole")
    assert forged != granted["entry"]
    await _tamper(client, "UPDATE consent.trail SET entry = $1 WHERE seq = $2", forged,
                  granted["seq"])
    await auditor(client)
    html = await (await client.get(f"/audit?personne={person}")).text()
    journal = rows(part(html, "journal"))
    assert [r[3] for r in journal] == ["Preuve invalide"] + ["Preuve vérifiée"] * 5, journal
    assert "asso-boussole" in journal[0][4], "the entry as it is now, shown with its verdict"
    assert "1 entrée du journal ne correspond plus au point de contrôle signé" in html

    last = await pool.fetchval("SELECT max(seq) FROM consent.trail WHERE person_id = $1",
                               person)
    await _tamper(client, "UPDATE consent.trail SET entry = $1 WHERE seq = $2",
                  b"\xff not even JSON", last)
    broken = await client.get(f"/audit?personne={person}")
    assert broken.status == 200
    journal = rows(part(await broken.text(), "journal"))
    assert [r[3] for r in journal] == (["Preuve invalide"] + ["Preuve vérifiée"] * 4
                                       + ["Preuve invalide"]), journal
    assert (journal[5][2], journal[5][4]) == ("Illisible",
                                              "Entrée illisible ou d'un type inconnu.")


async def test_a_counsellor_is_refused(client: Client, tokens: Tokens) -> None:
    facts = await story(client, tokens)
    await account(client, "camille@ml.example.org")
    await sign_in(client, "camille@ml.example.org")
    assert 'href="/audit"' not in await (await client.get("/orientations")).text()
    for path in (f"/audit?personne={facts['person']}", "/audit/export.jsonl"):
        refused = await client.get(path)
        assert refused.status == 403, path
        text = await refused.text()
        assert "Accès refusé" in text and facts["person"] not in text


@pytest.mark.parametrize(("typed", "status", "said"), [
    ("pas-un-identifiant", 422, "« pas-un-identifiant » n'est pas un identifiant de personne"),
    ("", 422, "Indiquez l'identifiant de la personne."),
    ("<b>5d0c</b>", 422, "« <b>5d0c</b> » n'est pas un identifiant"),
    (str(uuid.UUID(int=7)), 404, "Relais ne connaît aucun accord ni aucune trace pour "
                                 "l'identifiant 00000000-0000-0000-0000-000000000007"),
])
async def test_a_wrong_or_unknown_id_is_said_next_to_the_field(
    client: Client, typed: str, status: int, said: str
) -> None:
    await auditor(client)
    response = await client.get("/audit", params={"personne": typed})
    assert response.status == status
    html = await response.text()
    assert "<title>Erreur : Audit du consentement" in html
    group = re.search(r'<div class="fr-input-group fr-input-group--error">(.*?)</div>', html,
                      re.S)
    assert group, "the field's group is marked in error"
    field = group.group(1)
    assert 'aria-describedby="personne-erreur"' in field
    assert f'value="{html_lib.escape(typed)}"' in field, "what was typed is given back"
    error = re.search(r'<p class="fr-error-text" id="personne-erreur">(.*?)</p>', field, re.S)
    assert error and said in html_lib.unescape(error.group(1))
    assert "<b>" not in html, "what was typed is escaped"
    assert "Journal signé de cette personne" not in html


async def test_the_officer_answers_the_person_s_rights_from_the_page(
    client: Client, tokens: Tokens
) -> None:
    """Issue #14 in the console: the access document, a stop (objection) and its lifting,
    the register; through the intake service's API, as the signed-in officer."""
    facts = await story(client, tokens)
    person = facts["person"]
    await auditor(client)
    html = await (await client.get(f"/audit?personne={person}")).text()
    assert 'id="droits"' not in html, "an auditor has no access to the person's data"
    assert (await client.get(f"/audit/personne/{person}/donnees")).status == 403
    client.session.cookie_jar.clear()
    await auditor(client, "delegue@coordination.example.org", "dpo")
    html = await (await client.get(f"/audit?personne={person}")).text()
    assert 'id="droits"' in html and f'href="/audit/personne/{person}/donnees"' in html

    document = await client.get(f"/audit/personne/{person}/donnees")
    assert document.status == 200 and document.content_type == "text/html"
    assert "Vos données dans Relais" in (said := await document.text()) and "Léa" in said
    pool = client.app[RUNTIME].pool
    assert await pool.fetchval("SELECT org FROM intake.access_log WHERE person_id = $1"
                               " ORDER BY id DESC LIMIT 1", uuid.UUID(person)) == "coordination"

    stop = await client.post(f"/audit/personne/{person}/limitation", data={
        "csrf": csrf(html), "droit": "objection", "canal": "letter"}, allow_redirects=False)
    assert stop.status == 303, await stop.text()
    assert stop.headers["Location"] == f"/audit?personne={person}#droits"

    async def shown_stopped() -> bool:
        page = await (await client.get(f"/audit?personne={person}")).text()
        return "Traitement arrêté à sa demande depuis le" in page and "/reprise" in page

    await wait_until(shown_stopped, 30, "the page to say processing is stopped")
    assert (await client.get(f"/v1/people/{person}", headers=tokens.headers(
        TEAM, SCOPES))).status == 403
    page = await (await client.get(f"/audit?personne={person}")).text()
    resume = await client.post(f"/audit/personne/{person}/reprise",
                               data={"csrf": csrf(page)}, allow_redirects=False)
    assert resume.status == 303

    async def resumed() -> bool:
        page = await (await client.get(f"/audit?personne={person}")).text()
        return "/reprise" not in page and 'value="objection"' in page

    await wait_until(resumed, 30, "the page to offer the stop again")
    incomplete = await client.post(f"/audit/personne/{person}/limitation", data={
        "csrf": csrf(page), "droit": "forget me"})
    assert incomplete.status == 422 and "Demande incomplète" in await incomplete.text()

    register = await client.get("/audit/registre")
    assert register.status == 200
    assert "Registre des traitements (article 30 du RGPD)" in await register.text()
