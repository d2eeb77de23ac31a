"""Magic links over real HTTP, PostgreSQL and SMTP: the email's recipient opens and answers
its referral without an account; a link forwarded, altered, expired, revoked or pointed at
anything else shows no data (the browser journey is in tests/browser/test_links.py)."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from email.header import decode_header, make_header
from typing import Any
from urllib.parse import unquote

import pytest
from aiohttp import ClientSession, CookieJar

from services.auth import store as auth_store
from services.runtime import links
from services.runtime.app import RUNTIME
from services.runtime.settings import Settings
from tests.conftest import Mailbox, wait_until
from tests.e2e.conftest import Tokens
from tests.integration.conftest import Client
from tests.integration.test_console import ML, TEAM, account, csrf, handed_off, sign_in

ADDRESS = "accueil@mission-locale.example.org"
COLLEAGUE = "c.dupont@mission-locale.example.org"
LINK = re.compile(r"https?://\S+(/lien/[A-Za-z0-9_-]+)")


@pytest.fixture
def settings(settings: Settings, smtp_server: Mailbox) -> Settings:
    """The integration tests' settings, with the test's SMTP server (the emails' links)."""
    return settings.model_copy(update={"smtp_port": smtp_server.port})


async def link_for(smtp_server: Mailbox, referral: str, address: str = ADDRESS) -> str:
    """The path of the magic link in the email this address received for the referral."""
    found: list[str] = []

    def arrived() -> bool:
        for message, (_, rcpts) in zip(smtp_server.messages, smtp_server.envelopes,
                                       strict=True):
            payload = message.get_payload(decode=True)
            assert isinstance(payload, bytes)
            text = payload.decode()
            if rcpts == [address] and referral[:8] in message["Subject"]:
                match = LINK.search(text)
                assert match, text
                found.append(match.group(1))
        return bool(found)

    await wait_until(arrived, 30, f"the email to {address}")
    return found[0]


async def open_link(http: Client | ClientSession, path: str) -> Any:
    """What a person does: the email's link shows a button, which opens the referral."""
    shown = await http.get(path, allow_redirects=False)
    assert shown.status == 200, await shown.text()
    assert "Ouvrir l'orientation" in await shown.text()
    return await http.post(path, allow_redirects=False)


def payload_text(message: Any) -> str:
    payload = message.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode()


def device(client: Client) -> ClientSession:
    """Another browser: its own cookies."""
    return ClientSession(base_url=client.make_url(""), cookie_jar=CookieJar(unsafe=True))


async def test_a_recipient_answers_from_the_link_without_an_account(
        client: Client, tokens: Tokens, smtp_server: Mailbox) -> None:
    referral = await handed_off(client, tokens)
    path = await link_for(smtp_server, referral)
    [message] = [m for m in smtp_server.messages if referral[:8] in m["Subject"]]
    text = message.get_payload(decode=True).decode()  # type: ignore[union-attr]
    assert "sans compte" in text and "valable 14 jours" in text and "Léa" not in text

    scanned = await client.head(path, allow_redirects=False)  # a mailbox's link scanner
    assert scanned.status == 200 and links.COOKIE not in scanned.cookies
    opened = await open_link(client, path)
    assert opened.status == 303 and opened.headers["Location"] == f"/orientations/{referral}"
    session = opened.cookies[links.COOKIE]
    assert session["httponly"] and session["path"] == f"/orientations/{referral}"
    page = await client.get(f"/orientations/{referral}")
    html = await page.text()
    assert page.status == 200 and "Consulter le dossier" in html and ADDRESS in html
    assert 'href="/orientations"' not in html, "no menu: the link opens this referral only"

    read = await client.post(f"/orientations/{referral}/dossier", data={"csrf": csrf(html)})
    assert read.status == 200 and "Léa" in await read.text()
    pool = client.app[RUNTIME].pool

    async def read_logged() -> bool:  # the dossier, and the identity, in the address's name
        return bool(await pool.fetchval(
            "SELECT count(*) FROM consent.trail WHERE convert_from(entry, 'UTF8')::jsonb"
            " ->> 'read_by' = $1", f"{ADDRESS} ({ML})") >= 2)

    await wait_until(read_logged, 30, "the read on the trail, by the email's address")
    for action, fields in (("receive", {}), ("accept", {}),
                           ("start", {"milestone": "first_appointment"}),
                           ("complete", {"outcome": "job"})):
        html = await (await client.get(f"/orientations/{referral}")).text()
        done = await client.post(f"/orientations/{referral}/{action}",
                                 data={"csrf": csrf(html), **fields}, allow_redirects=False)
        assert done.status == 303, (action, await done.text())
    history = await (await client.get(f"/v1/referrals/{referral}",
                                      headers=tokens.headers(TEAM, "referral:read"))).json()
    assert history["status"] == "completed"
    assert history["history"][-1]["detail"]["by"] == f"{ADDRESS} ({ML})"

    closed = await client.get(f"/orientations/{referral}")
    assert closed.status == 410 and "Lien plus valable" in await closed.text()
    assert "Léa" not in await closed.text()


async def test_a_forwarded_altered_or_expired_link_shows_nothing(
        client: Client, tokens: Tokens, smtp_server: Mailbox, settings: Settings) -> None:
    referral = await handed_off(client, tokens)
    path = await link_for(smtp_server, referral)
    async with device(client) as scanner:  # follows the link first: uses nothing up
        assert (await scanner.get(path, allow_redirects=False)).status == 200
    assert (await open_link(client, path)).status == 303
    async with device(client) as elsewhere:
        forwarded = await open_link(elsewhere, path)
        assert forwarded.status == 403
        assert "déjà été ouvert sur un autre appareil" in await forwarded.text()
        assert links.COOKIE not in forwarded.cookies
        page = await elsewhere.get(f"/orientations/{referral}", allow_redirects=False)
        assert page.status == 303 and page.headers["Location"].startswith("/connexion")

        token = path.removeprefix("/lien/")
        altered = token[:20] + ("A" if token[20] != "A" else "B") + token[21:]
        for bad in (altered, token[:-3], "nimporte-quoi"):
            answer = await elsewhere.get(f"/lien/{bad}")
            assert answer.status == 404 and "Lien non valable" in await answer.text()

        key = links.key(client.app[RUNTIME].keyring())
        made = links.open_link(key, token)
        old = links.make(key, links.Link(uuid.uuid4(), made.referral, made.person, made.org,
                                         made.email, datetime.now(UTC) - timedelta(minutes=1)))
        expired = await elsewhere.get(f"/lien/{old}")
        assert expired.status == 410 and "Lien expiré" in await expired.text()

    pool = client.app[RUNTIME].pool
    row = await pool.fetchrow("SELECT opened, refused FROM auth.links WHERE referral_id = $1",
                              uuid.UUID(referral))
    assert (row["opened"], row["refused"]) == (1, 1), "the forwarded opening is on record"


async def test_a_link_opens_its_one_referral_and_nothing_else(
        client: Client, tokens: Tokens, smtp_server: Mailbox) -> None:
    first = await handed_off(client, tokens)
    second = await handed_off(client, tokens)
    path = await link_for(smtp_server, first)
    opened = await open_link(client, path)
    token = opened.cookies[links.COOKIE].value
    other = await client.get(f"/orientations/{second}", allow_redirects=False)
    assert other.status == 303 and other.headers["Location"].startswith("/connexion")
    for page in ("/orientations", "/orientations/envoyees", "/statistiques", "/audit"):
        client.session.cookie_jar.update_cookies({links.COOKIE: token})
        answer = await client.get(page, allow_redirects=False)
        assert answer.status in (303, 403), page
    bearer = {"Authorization": f"Bearer {token}"}
    listed = await client.get("/v1/referrals", headers=bearer)
    assert listed.status == 403, "the link's session is no API token"
    detail = await client.get(f"/v1/referrals/{first}", headers=bearer)
    assert detail.status == 403
    person = await (await client.get(f"/v1/referrals/{second}",
                                     headers=tokens.headers(ML, "referral:read"))).json()
    someone_else = await client.get(f"/v1/people/{person['person_id']}", headers=bearer)
    assert someone_else.status == 404, "the intake service reads the link's person only"


async def test_a_link_is_revoked_with_its_address_or_the_consent(
        client: Client, tokens: Tokens, smtp_server: Mailbox) -> None:
    coordination = tokens.headers("coordination", "directory:write notification:write")
    changed = await client.put(f"/v1/recipients/{ML}", headers=coordination, json={
        "email": ADDRESS, "counsellors": [COLLEAGUE], "channels": ["email", "inbox"]})
    assert changed.status == 200, await changed.text()
    referral = await handed_off(client, tokens)
    mine = await link_for(smtp_server, referral, COLLEAGUE)
    team = await link_for(smtp_server, referral, ADDRESS)
    assert mine != team, "one link per address"

    async with device(client) as colleague:  # opened before the address is removed
        assert (await open_link(colleague, mine)).status == 303
        assert (await colleague.get(f"/orientations/{referral}")).status == 200
        removed = await client.put(f"/v1/recipients/{ML}", headers=coordination, json={
            "email": ADDRESS, "counsellors": [], "channels": ["email", "inbox"]})
        assert removed.status == 200
        cut = await colleague.get(f"/orientations/{referral}")  # at once, not in 30 minutes
        assert cut.status == 410 and "ne reçoit plus" in await cut.text()
        assert "Léa" not in await cut.text()
        gone = await colleague.post(mine, allow_redirects=False)
        assert gone.status == 410 and "ne reçoit plus" in await gone.text()

    assert (await open_link(client, team)).status == 303
    detail = await (await client.get(f"/v1/referrals/{referral}",
                                     headers=tokens.headers(TEAM, "referral:read"))).json()
    withdrawn = await client.post(
        f"/v1/consents/{detail['consent_id']}/withdraw",
        headers=tokens.headers(TEAM, "consent:write", **{"Idempotency-Key": str(uuid.uuid4())}),
        json={"requested_by": "person", "channel": "phone"})
    assert withdrawn.status in (200, 201), await withdrawn.text()

    async def closed() -> bool:
        page = await client.get(f"/orientations/{referral}")
        return page.status == 410

    await wait_until(closed, 30, "the link closed with the consent")
    assert "Léa" not in await (await client.get(f"/orientations/{referral}")).text()


async def test_an_address_with_an_account_signs_in_and_a_disabled_one_is_cut_off(
        client: Client, tokens: Tokens, smtp_server: Mailbox) -> None:
    """A person with an account signs in (their second factor, their lock-out); disabling
    the account cuts the links already opened with its address."""
    referral = await handed_off(client, tokens)
    path = await link_for(smtp_server, referral)
    opened = await open_link(client, path)
    assert opened.status == 303
    assert (await client.get(f"/orientations/{referral}")).status == 200

    await account(client, ADDRESS)  # the team's address gets an account of its own
    async with device(client) as other:
        asked = await other.get(path, allow_redirects=False)
        assert asked.status == 303
        assert unquote(asked.headers["Location"]) == (
            f"/connexion?message=compte&suite=/orientations/{referral}")
        page = await other.get(asked.headers["Location"])
        assert "Votre adresse a un compte Relais" in await page.text()

    assert await auth_store.disable_user(client.app[RUNTIME].pool, ADDRESS)

    async def cut_off() -> bool:  # the open link's session too, within seconds
        page = await client.get(f"/orientations/{referral}", allow_redirects=False)
        return page.status == 401 and "Accès par lien terminé" in await page.text()

    await wait_until(cut_off, 15, "the link's session refused")
    again = await client.get(path)
    assert again.status == 410 and "désactivé" in await again.text()


async def test_a_link_opens_in_a_browser_signed_in_elsewhere(
        client: Client, tokens: Tokens, smtp_server: Mailbox) -> None:
    """Someone signed in for another organisation in the same browser: the link's own
    session wins on its referral's pages."""
    referral = await handed_off(client, tokens)
    path = await link_for(smtp_server, referral)
    await account(client, "nadia@camion.example.org", org=TEAM, name="Nadia Benali")
    assert (await sign_in(client, "nadia@camion.example.org")).status == 303
    assert (await open_link(client, path)).status == 303
    page = await client.get(f"/orientations/{referral}")
    html = await page.text()
    assert page.status == 200 and "Consulter le dossier" in html and ADDRESS in html
    read = await client.post(f"/orientations/{referral}/dossier", data={"csrf": csrf(html)})
    assert read.status == 200 and "Léa" in await read.text()
    mine = await client.get("/orientations/envoyees")  # her own pages, as herself
    assert mine.status == 200 and "Nadia Benali" in await mine.text()


async def test_the_live_list_refuses_a_time_out_of_range(client: Client) -> None:
    await account(client, "camille@ml.example.org")
    assert (await sign_in(client, "camille@ml.example.org")).status == 303
    for depuis in ("-62135596800", "1e300", "nan", "x"):
        answer = await client.get(f"/flux/orientations?depuis={depuis}")
        assert answer.status == 400, depuis


async def test_an_address_outside_the_organisation_s_domain_gets_no_link(
        client: Client, tokens: Tokens, smtp_server: Mailbox) -> None:
    """Whoever sets an organisation's addresses cannot give themself its dossiers: an
    address outside the domain of the directory's team mailbox gets the console's page (sign
    in) and never a magic link; the team mailbox is told of every change, and by whom."""
    outsider = "quelquun@exterieur.example.net"
    coordination = tokens.headers("coordination", "directory:write notification:write")
    changed = await client.put(f"/v1/recipients/{ML}", headers=coordination, json={
        "email": ADDRESS, "counsellors": [outsider, COLLEAGUE], "channels": ["email"]})
    assert changed.status == 200, await changed.text()

    def notice() -> list[Any]:
        return [m for m in smtp_server.messages
                if "ont changé" in str(make_header(decode_header(m["Subject"])))]

    await wait_until(lambda: bool(notice()), 30, "the notice to the team mailbox")
    [told] = notice()
    assert told["To"] == ADDRESS
    text = payload_text(told)
    assert outsider in text and COLLEAGUE in text and "coordination" in text

    referral = await handed_off(client, tokens)
    assert (await link_for(smtp_server, referral, COLLEAGUE)).startswith("/lien/")

    def to_outsider() -> list[Any]:
        return [m for m, (_, to) in zip(smtp_server.messages, smtp_server.envelopes,
                                        strict=True)
                if to == [outsider] and referral[:8] in m["Subject"]]

    await wait_until(lambda: bool(to_outsider()), 30, "the email to the outside address")
    body = payload_text(to_outsider()[0])
    assert "/lien/" not in body and f"/orientations/{referral}" in body


async def test_the_outreach_team_follows_an_open_referral_from_its_email(
        client: Client, tokens: Tokens, smtp_server: Mailbox) -> None:
    """The sending team's email about an answer links to the referral while it is open (the
    team sees where the person stands, not the recipient's dossier); once closed, the email
    links to the console."""
    referral = await handed_off(client, tokens)
    ml = tokens.headers(ML, "referral:write referral:read")
    assert (await client.post(f"/v1/referrals/{referral}/accept", headers=ml,
                              json={})).status == 200
    path = await link_for(smtp_server, referral, "equipe@camion.example.org")
    assert (await open_link(client, path)).status == 303
    page = await client.get(f"/orientations/{referral}")
    html = await page.text()
    assert page.status == 200 and "Acceptée" in html and "Consulter le dossier" not in html

    for action, body in (("start", {"milestone": "first_appointment"}),
                         ("complete", {"outcome": "job"})):
        done = await client.post(f"/v1/referrals/{referral}/{action}", headers=ml, json=body)
        assert done.status == 200, await done.text()

    def closed_email() -> list[Any]:
        return [m for m, (_, to) in zip(smtp_server.messages, smtp_server.envelopes,
                                        strict=True)
                if to == ["equipe@camion.example.org"] and referral[:8] in m["Subject"]
                and "termin" in str(make_header(decode_header(m["Subject"])))]

    await wait_until(lambda: bool(closed_email()), 30, "the email saying it is completed")
    text = payload_text(closed_email()[0])
    assert "/lien/" not in text and f"/orientations/{referral}" in text
