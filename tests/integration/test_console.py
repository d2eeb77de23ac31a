"""The console over real HTTP and PostgreSQL, without a browser: accounts, invitation,
sign-in and lock-out, sessions ended everywhere, CSRF, and a partner counsellor answering a
referral from the pages (the browser journeys are in tests/browser/)."""

from __future__ import annotations

import argparse
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote

import pytest

from services.auth import accounts
from services.auth import store as auth_store
from services.cli import user_command
from services.runtime.app import RUNTIME
from services.runtime.settings import Settings
from tests.conftest import Mailbox, wait_until
from tests.e2e.conftest import Tokens
from tests.integration.conftest import Client

TEAM, ML = "equipe-aller-vers", "mission-locale"
PASSWORD = "un long mot de passe"
API = "intake:write consent:write referral:read"


async def invite(client: Client, email: str, org: str = ML, role: str = "counsellor",
                 name: str = "Camille Martin") -> str:
    """What `relais user create` does: the account and its invitation link's token."""
    pool = client.app[RUNTIME].pool
    user_id = uuid.uuid4()
    token, digest = accounts.new_token()
    await auth_store.insert_user(pool, user_id, email, name, org, role)
    await auth_store.insert_invitation(pool, digest, user_id,
                                       datetime.now(UTC) + timedelta(days=7))
    return token


async def account(client: Client, email: str, org: str = ML,
                  name: str = "Camille Martin") -> None:
    token = await invite(client, email, org, name=name)
    done = await client.post(f"/invitation/{token}", data={
        "password": PASSWORD, "confirmation": PASSWORD}, allow_redirects=False)
    assert done.status == 303, await done.text()


async def sign_in(client: Client, email: str, password: str = PASSWORD) -> Any:
    return await client.post("/connexion", data={"email": email, "password": password,
                                                 "suite": "/orientations"},
                             allow_redirects=False)


def csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF field on the page"
    return found.group(1)


async def handed_off(client: Client, tokens: Tokens) -> str:
    """An intake met by the outreach team, consented to the Mission locale: the referral."""
    headers = tokens.headers(TEAM, API, **{"Idempotency-Key": str(uuid.uuid4())})
    intake = await (await client.post("/v1/intakes", headers=headers, json={
        "site": "qpv-etouvie", "channel": "mobile_permanence",
        "contacted_at": "2026-11-20T10:00:00+01:00", "needs": ["employment"],
        "age_bracket": "18_25", "commune": "80021",
        "identity": {"first_name": "Léa", "phone": "06 12 34 56 78"}})).json()
    await client.post("/v1/consents", headers=tokens.headers(
        TEAM, API, **{"Idempotency-Key": str(uuid.uuid4())}), json={
        "person_id": intake["person_id"], "purposes": ["referral_partner"],
        "recipients": [ML], "categories": ["identity", "contact", "needs", "situation"],
        "notice_version": "2026-01", "method": "signed_screen", "captured_by": "x"})
    return await requested(client, tokens, intake["id"])


async def requested(client: Client, tokens: Tokens, intake_id: str) -> str:
    """The id of the intake's referral, once a consent has handed it off."""
    found: list[str] = []

    async def arrived() -> bool:
        response = await client.get(f"/v1/referrals?intake_id={intake_id}&status=requested",
                                    headers=tokens.headers(TEAM, API))
        found.extend(r["id"] for r in (await response.json())["items"])
        return bool(found)

    await wait_until(arrived, 30, "the hand-off")
    return found[0]


async def test_an_invited_counsellor_signs_in_and_out(client: Client) -> None:
    token = await invite(client, "camille@ml.example.org")
    page = await client.get(f"/invitation/{token}")
    assert page.status == 200 and "Camille Martin" in await page.text()
    short = await client.post(f"/invitation/{token}", data={"password": "court",
                                                            "confirmation": "court"})
    assert short.status == 422 and "au moins 12 caractères" in await short.text()
    done = await client.post(f"/invitation/{token}", data={
        "password": PASSWORD, "confirmation": PASSWORD}, allow_redirects=False)
    assert done.status == 303
    again = await client.get(f"/invitation/{token}")
    assert again.status == 404 and "plus valable" in await again.text()

    assert (await client.get("/orientations", allow_redirects=False)).status == 303
    signed = await sign_in(client, "Camille@ML.example.org")
    assert signed.status == 303 and signed.headers["Location"] == "/orientations"
    cookie = signed.cookies["relais_session"]
    assert cookie["httponly"] and cookie["samesite"] == "Lax"
    inbox = await client.get("/orientations")
    assert inbox.status == 200
    html = await inbox.text()
    assert "Camille Martin" in html and 'lang="fr"' in html
    assert "default-src 'self'" in inbox.headers["Content-Security-Policy"]

    out = await client.post("/deconnexion", data={"csrf": csrf(html)}, allow_redirects=False)
    assert out.status == 303
    client.session.cookie_jar.update_cookies({"relais_session": cookie.value})

    async def refused() -> bool:  # the ended session, even replayed, is refused
        response = await client.get("/orientations", allow_redirects=False)
        return response.status == 303

    await wait_until(refused, 10, "the ended session to be refused")


async def test_wrong_passwords_lock_the_account_with_the_same_words(client: Client) -> None:
    await account(client, "lou@ml.example.org")
    unknown = await sign_in(client, "personne@ml.example.org", "peu importe")
    wrong = await sign_in(client, "lou@ml.example.org", "mauvais mot de passe")
    assert unknown.status == wrong.status == 401
    assert accounts.GENERIC_REFUSAL in await unknown.text()
    assert accounts.GENERIC_REFUSAL in await wrong.text()
    for _ in range(accounts.MAX_FAILURES - 1):
        await sign_in(client, "lou@ml.example.org", "mauvais mot de passe")
    locked = await sign_in(client, "lou@ml.example.org")  # the right password, refused
    assert locked.status == 401 and accounts.GENERIC_REFUSAL in await locked.text()
    for _ in range(accounts.MAX_FAILURES):  # an unknown address: the very same answer
        again = await sign_in(client, "personne@ml.example.org", "peu importe")
    assert again.status == 401 and accounts.GENERIC_REFUSAL in await again.text()


async def test_a_form_from_another_site_is_refused(client: Client) -> None:
    await account(client, "sam@ml.example.org")
    await sign_in(client, "sam@ml.example.org")
    html = await (await client.get("/orientations")).text()
    forged = await client.post("/deconnexion", data={"csrf": "x" * 43})
    assert forged.status == 403 and "Formulaire expiré" in await forged.text()
    cross = await client.post("/deconnexion", data={"csrf": csrf(html)},
                              headers={"Origin": "https://attaquant.example"})
    assert cross.status == 403
    assert (await client.get("/orientations")).status == 200  # still signed in


async def test_a_counsellor_answers_a_referral_from_the_pages(client: Client,
                                                              tokens: Tokens) -> None:
    referral_id = await handed_off(client, tokens)
    await account(client, "camille@ml.example.org")
    await sign_in(client, "camille@ml.example.org")

    inbox = await (await client.get("/orientations")).text()
    assert f"/orientations/{referral_id}" in inbox
    assert "besoin emploi, 18-25 ans, commune 80021" in inbox
    page = await (await client.get(f"/orientations/{referral_id}")).text()
    assert "Léa" not in page  # not before the deliberate read
    opened = await client.post(f"/orientations/{referral_id}/dossier",
                               data={"csrf": csrf(page)})
    dossier = await opened.text()
    assert opened.status == 200 and "Léa" in dossier and "06 12 34 56 78" in dossier
    pool = client.app[RUNTIME].pool

    async def read_on_the_trail() -> bool:  # the dossier, and the identity
        reads: int = await pool.fetchval(
            "SELECT count(*) FROM consent.trail WHERE convert_from(entry, 'UTF8')::jsonb"
            " ->> 'kind' = 'personal_data.read'")
        return reads >= 2

    await wait_until(read_on_the_trail, 30, "both reads on the consent trail")
    session_reads = await pool.fetchval(
        "SELECT count(*) FROM intake.access_log WHERE client_id LIKE 'session:%'")
    assert session_reads == 1
    named = await pool.fetch(
        "SELECT convert_from(entry, 'UTF8')::jsonb ->> 'read_by' AS who"
        " FROM consent.trail WHERE convert_from(entry, 'UTF8')::jsonb ->> 'kind'"
        " = 'personal_data.read'")
    assert {r["who"] for r in named} == {"Camille Martin (mission-locale)"}  # in their name

    token = csrf(page)
    rejected = await client.post(f"/orientations/{referral_id}/reject", data={"csrf": token})
    assert rejected.status == 422 and "choisissez un motif" in await rejected.text()
    for action, fields in (("accept", {}), ("start", {"milestone": "first_appointment"}),
                           ("complete", {"outcome": "contrat_engagement_jeune"})):
        done = await client.post(f"/orientations/{referral_id}/{action}",
                                 data={"csrf": token} | fields, allow_redirects=False)
        assert done.status == 303, (action, await done.text())
    final = await (await client.get(f"/orientations/{referral_id}")).text()
    assert "Terminée" in final and "Contrat d&#39;engagement jeune" in final
    assert "Par Camille Martin (mission-locale)" in final
    late = await client.post(f"/orientations/{referral_id}/accept", data={"csrf": token})
    assert late.status == 409 and "n&#39;est plus possible" in await late.text()

    history = await (await client.get(f"/v1/referrals/{referral_id}",
                                      headers=tokens.headers(TEAM, API))).json()
    assert history["history"][-1]["detail"]["by"] == "Camille Martin (mission-locale)"


async def test_another_organisation_sees_nothing_by_changing_the_url(
    client: Client, tokens: Tokens
) -> None:
    referral_id = await handed_off(client, tokens)
    await account(client, "dom@ccas.example.org", org="ccas")
    await sign_in(client, "dom@ccas.example.org")
    page = await client.get(f"/orientations/{referral_id}")
    assert page.status == 404 and "introuvable" in await page.text()
    html = await (await client.get("/orientations")).text()
    assert referral_id not in html
    forced = await client.post(f"/orientations/{referral_id}/dossier",
                               data={"csrf": csrf(html)})
    assert forced.status == 404 and "Léa" not in await forced.text()


async def test_the_outreach_team_sees_where_each_person_stands(client: Client,
                                                               tokens: Tokens) -> None:
    referral_id = await handed_off(client, tokens)
    waiting = await client.post("/v1/intakes", headers=tokens.headers(
        TEAM, API, **{"Idempotency-Key": str(uuid.uuid4())}), json={
        "site": "qpv-etouvie", "channel": "mobile_permanence",
        "contacted_at": "2026-11-21T10:00:00+01:00", "needs": ["housing"]})
    assert waiting.status == 201
    await client.post(f"/v1/referrals/{referral_id}/reject", json={
        "reason": "no_place", "text": "Plus de place avant janvier."},
        headers=tokens.headers(ML, "referral:write"))
    await account(client, "nadia@camion.example.org", org=TEAM)
    await sign_in(client, "nadia@camion.example.org")

    async def both_listed() -> bool:
        html = await (await client.get("/orientations/envoyees")).text()
        return html.count("<tr>") == 3  # the header and two referrals

    await wait_until(both_listed, 30, "both referrals in the sent list")
    html = await (await client.get("/orientations/envoyees")).text()
    assert "n'a pas encore donné son accord" in html
    assert "Motif : Plus de place disponible (« Plus de place avant janvier. »)" in html
    assert 'aria-current="page">Orientations envoyées' in html
    only = await (await client.get("/orientations/envoyees?statut=rejected")).text()
    assert only.count("<tr>") == 2 and f"/orientations/{referral_id}" in only
    received = await (await client.get("/orientations")).text()
    assert f"/orientations/{referral_id}" not in received  # sent, not received


async def commission_referral(client: Client, tokens: Tokens) -> str:
    """A person with three needs: the rules send them to the commission."""
    headers = tokens.headers(TEAM, API, **{"Idempotency-Key": str(uuid.uuid4())})
    intake = await (await client.post("/v1/intakes", headers=headers, json={
        "site": "qpv-etouvie", "channel": "mobile_permanence",
        "contacted_at": "2026-11-20T10:00:00+01:00",
        "needs": ["employment", "housing", "health"], "age_bracket": "18_25",
        "commune": "80021"})).json()
    await client.post("/v1/consents", headers=tokens.headers(
        TEAM, API, **{"Idempotency-Key": str(uuid.uuid4())}), json={
        "person_id": intake["person_id"], "purposes": ["referral_commission"],
        "recipients": ["commission-remobilisation"], "categories": ["needs", "situation"],
        "notice_version": "2026-01", "method": "signed_screen", "captured_by": "x"})
    return await requested(client, tokens, intake["id"])


async def test_a_member_runs_a_commission_session(client: Client, tokens: Tokens) -> None:
    referral_id = await commission_referral(client, tokens)
    await account(client, "ines@ml.example.org", name="Inès Robert")
    await sign_in(client, "ines@ml.example.org")
    home = await client.get("/commission")
    html = await home.text()
    assert home.status == 200 and "1 orientation</strong> en attente" in html
    form = {"csrf": csrf(html), "cle": "double-clic", "commission": "commission-remobilisation",
            "date": "2026-12-03", "members": ["mission-locale", "france-travail"]}
    first = await client.post("/commission/seances", data=form, allow_redirects=False)
    again = await client.post("/commission/seances", data=form, allow_redirects=False)
    assert first.status == again.status == 303
    assert first.headers["Location"] == again.headers["Location"]  # one session, not two
    page = await (await client.get(first.headers["Location"])).text()
    assert "besoin emploi, logement, santé" in page

    vague = await client.post(f"{first.headers['Location']}/decisions", data={
        "csrf": csrf(page), "referral_id": referral_id, "decision": "refer_partner",
        "text": "CEJ"})
    assert vague.status == 422 and "choisissez le partenaire" in await vague.text()
    decided = await client.post(f"{first.headers['Location']}/decisions", data={
        "csrf": csrf(page), "referral_id": referral_id, "decision": "refer_partner",
        "partner": "mission-locale", "text": "Orientation vers la Mission locale pour un CEJ."},
        allow_redirects=False)
    assert decided.status == 303
    after = await (await client.get(first.headers["Location"])).text()
    assert "une nouvelle orientation a été créée" in after
    listed = await client.get("/commission")  # the session, with its count of decisions
    assert listed.status == 200 and "1 décision sur 1 orientation" in await listed.text()
    follow_ups = await (await client.get("/v1/referrals?role=sender", headers=tokens.headers(
        "commission-remobilisation", API))).json()
    assert [r["part_of"] for r in follow_ups["items"]] == [referral_id]
    twice = await client.post(f"{first.headers['Location']}/decisions", data={
        "csrf": csrf(page), "referral_id": referral_id, "decision": "close", "text": "x"})
    assert twice.status == 409 and "déjà été prise" in await twice.text()


async def test_an_organisation_off_the_commission_cannot_act_for_it(
    client: Client, tokens: Tokens
) -> None:
    await commission_referral(client, tokens)
    await account(client, "leo@boussole.example.org", org="asso-boussole", name="Léo Petit")
    await sign_in(client, "leo@boussole.example.org")
    home = await client.get("/commission")
    assert home.status == 403 and "ne siège à aucune" in await home.text()
    html = await (await client.get("/orientations")).text()
    forced = await client.post("/commission/seances", data={
        "csrf": csrf(html), "cle": "k", "commission": "commission-remobilisation",
        "date": "2026-12-03", "members": ["asso-boussole"]})
    assert forced.status == 403


async def test_the_coordination_sees_what_is_late_and_sets_places(
    client: Client, tokens: Tokens
) -> None:
    await handed_off(client, tokens)
    pool = client.app[RUNTIME].pool
    await pool.execute("INSERT INTO auth.users (id, email, name, org, role) VALUES"
                       " ($1, 'coord@amiens.example.org', 'Claire Dubois', 'coordination',"
                       " 'coordinator')", uuid.uuid4())
    token, digest = accounts.new_token()
    user_id = await pool.fetchval("SELECT id FROM auth.users WHERE email = $1",
                                  "coord@amiens.example.org")
    await auth_store.insert_invitation(pool, digest, user_id,
                                       datetime.now(UTC) + timedelta(days=1))
    await client.post(f"/invitation/{token}", data={"password": PASSWORD,
                                                    "confirmation": PASSWORD})
    await sign_in(client, "coord@amiens.example.org")
    html = await (await client.get("/coordination")).text()
    assert "Aucune orientation en retard" in html
    client.app[RUNTIME].clock = lambda: datetime.now(UTC) + timedelta(days=15)
    late = await (await client.get("/coordination")).text()
    assert "Mission locale du Grand Amiénois" in late and "jours" in late

    wrong = await client.post("/coordination/places/mission-locale",
                              data={"csrf": csrf(late), "open_places": "trois"})
    assert wrong.status == 422 and "nombre entier" in await wrong.text()
    saved = await client.post("/coordination/places/mission-locale", data={
        "csrf": csrf(late), "open_places": "3", "waiting_list": "oui"}, allow_redirects=False)
    assert saved.status == 303
    partners = await (await client.get("/v1/partners", headers=tokens.headers(
        TEAM, API))).json()
    ml = next(p for p in partners["items"] if p["id"] == ML)
    assert (ml["open_places"], ml["waiting_list"]) == (3, True)

    await account(client, "sam@ml.example.org")
    await sign_in(client, "sam@ml.example.org")
    assert (await client.get("/coordination")).status == 403


async def test_each_role_lands_on_its_first_page(client: Client) -> None:
    for email, org, role, first in (
            ("a@ml.example.org", ML, "counsellor", "/orientations"),
            ("f@region.example.org", "coordination", "funder", "/statistiques"),
            ("d@dpo.example.org", "coordination", "auditor", "/audit")):
        token = await invite(client, email, org, role=role)
        await client.post(f"/invitation/{token}", data={"password": PASSWORD,
                                                        "confirmation": PASSWORD})
        signed = await client.post("/connexion", data={"email": email, "password": PASSWORD},
                                   allow_redirects=False)
        assert signed.headers["Location"] == "/"
        home = await client.get("/", allow_redirects=False)
        assert home.headers["Location"] == first, role
        page = await (await client.get(first)).text()
        assert page.count('aria-current="page"') == 1, role
        client.session.cookie_jar.clear()


async def test_what_a_review_found_gets_an_answer_not_a_500(client: Client,
                                                           tokens: Tokens) -> None:
    referral_id = await handed_off(client, tokens)
    await account(client, "camille@ml.example.org")
    await sign_in(client, "camille@ml.example.org")
    page = await (await client.get(f"/orientations/{referral_id}")).text()
    nir = await client.post(f"/orientations/{referral_id}/accept", data={
        "csrf": csrf(page), "text": "NIR 2 84 05 75 123 456 78"})
    assert nir.status == 422 and "sécurité sociale" in await nir.text()
    behind_proxy = await client.post(f"/orientations/{referral_id}/receive", data={
        "csrf": csrf(page)}, headers={"Origin": "http://127.0.0.1:8080"},  # the base URL
        allow_redirects=False)
    assert behind_proxy.status == 303
    places = await client.post("/coordination/places/ccas", data={"csrf": csrf(page),
                                                                 "open_places": "²"})
    assert places.status in (403, 422)  # a counsellor: no coordination; never a 500

    client.session.cookie_jar.clear()  # the session is gone: a form sends to sign-in, then home
    expired = await client.post(f"/orientations/{referral_id}/accept",
                                data={"csrf": "x"}, allow_redirects=False)
    assert unquote(expired.headers["Location"]) == "/connexion?suite=/"

    edge = await client.get("/v1/stats?from=0001-01-01&to=0001-01-01",
                            headers=tokens.headers(TEAM, "stats:read"))
    assert edge.status == 400
    absent = await client.post("/v1/commission/sessions", json={
        "held_on": "2026-12-03", "members": ["mission-locale"]},
        headers=tokens.headers("france-travail", "referral:write",
                               **{"Idempotency-Key": str(uuid.uuid4())}))
    assert absent.status == 403  # a member not present does not open the session


async def test_territory_roles_go_to_the_coordination_only(
    client: Client, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """`relais user create`: a coordinator or an administrator acts for the whole territory
    (directory, recipients, places), so a partner's staff cannot be one."""
    def create(org: str, role: str, email: str) -> argparse.Namespace:
        return argparse.Namespace(action="create", org=org, role=role, email=email,
                                  name="Claire Dubois")

    assert await user_command(settings, create(ML, "coordinator", "c@ml.example.org")) == 2
    assert "coordination" in capsys.readouterr().err
    assert await user_command(settings, create(ML, "counsellor", "c@ml.example.org")) == 0
    assert "/invitation/" in capsys.readouterr().out
    assert await user_command(settings, create(
        "coordination", "coordinator", "claire@coordination.example.org")) == 0
    roles = await client.app[RUNTIME].pool.fetch("SELECT role FROM auth.users ORDER BY role")
    assert [r["role"] for r in roles] == ["coordinator", "counsellor"]


async def test_an_invitation_goes_by_email(
    client: Client, settings: Settings, smtp_server: Mailbox,
    capsys: pytest.CaptureFixture[str]
) -> None:
    """`relais user create` emails the link (real SMTP); without a server, it says so and
    prints the link to send by hand."""
    create = argparse.Namespace(action="create", org=ML, role="counsellor",
                                email="camille@ml.example.org", name="Camille Martin")
    assert await user_command(settings, create) == 0  # no SMTP server on the settings' port
    said = capsys.readouterr().out
    assert "could not be emailed" in said and "/invitation/" in said

    to_smtp = settings.model_copy(update={"smtp_port": smtp_server.port})
    create.email = "lou@ml.example.org"
    assert await user_command(to_smtp, create) == 0
    [message] = await smtp_server.wait_for(1)
    assert message["To"] == "lou@ml.example.org"
    assert message["Subject"] == "[Relais] Votre compte : choisissez votre mot de passe"
    payload = message.get_payload(decode=True)
    assert isinstance(payload, bytes)
    text = payload.decode()
    link = re.search(r"http://\S+/invitation/(\S+)", text)
    assert link and "Bonjour Camille Martin" in text
    page = await client.get(f"/invitation/{link.group(1)}")
    assert page.status == 200  # the emailed link is the account's
