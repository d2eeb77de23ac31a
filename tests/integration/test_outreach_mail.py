"""The receipt and the card sent to the person (issue #11, points 3 and 6), over real HTTP,
PostgreSQL and SMTP (aiosmtpd), and an SMS gateway served over real HTTP: the same receipt as
on the screen, its link and code in the email or the SMS, and they work; the card's code by
email recognises the person at the next contact; no address, or a refused one, is said on the
page, and the receipt stays on the screen."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from email.message import Message
from html import unescape
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp import web
from aiohttp.test_utils import BaseTestServer, TestServer
from pydantic import SecretStr

from services.runtime import to_person
from services.runtime.app import RUNTIME
from services.runtime.settings import Settings
from tests.conftest import Mailbox, wait_until
from tests.e2e.conftest import Tokens
from tests.integration.conftest import Client
from tests.integration.test_console import csrf
from tests.integration.test_outreach_consent import ORAL, open_consent, referrals
from tests.integration.test_outreach_pages import (
    ANONYMOUS,
    form_data,
    intakes,
    open_form,
    pick,
    signed_in_counsellor,
)

ADDRESS = "lea.martin@example.org"


@pytest.fixture
def settings(settings: Settings, smtp_server: Mailbox) -> Settings:
    return settings.model_copy(update={"smtp_port": smtp_server.port})


def body_of(message: Message) -> str:
    payload = message.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode()


def to_the_person(mailbox: Mailbox) -> list[Message]:
    """The emails to the person (the Mission locale gets its own about the referral)."""
    return [m for m in mailbox.messages if m["To"] == ADDRESS]


async def named_contact(client: Client, tokens: Tokens, extra: dict[str, Any]) -> Any:
    """A contact of a person who gave their first name (and what `extra` adds), routed."""
    await signed_in_counsellor(client, tokens)
    await pick(client)
    sent = await client.post("/terrain/contact", allow_redirects=False, data=form_data(
        await open_form(client), ANONYMOUS | {"prenom": "Léa"} | extra))
    assert sent.status == 303, await sent.text()
    [intake] = await intakes(client, tokens)

    async def routed() -> bool:
        return bool(await referrals(client, tokens, intake["id"]))

    await wait_until(routed, 30, "the routing's proposal")
    return intake


async def confirmation(client: Client, intake: Any) -> tuple[str, str]:
    _html, fields = await open_consent(client, intake)
    sent = await client.post(f"/terrain/accord/{intake['id']}", allow_redirects=False,
                             data=form_data(fields, ORAL))
    assert sent.status == 303, await sent.text()
    where = sent.headers["Location"]
    return where, await (await client.get(where)).text()


async def test_the_receipt_goes_by_email_and_its_link_and_code_work(
        client: Client, tokens: Tokens, smtp_server: Mailbox) -> None:
    intake = await named_contact(client, tokens, {"courriel": ADDRESS})
    where, done = await confirmation(client, intake)
    assert "Montrer le reçu et l'envoyer par courriel" in done
    shown = await client.post(f"{where}/recu", data={"csrf": csrf(done), "envoi": "courriel"})
    html = await shown.text()
    assert shown.status == 200 and "Ce reçu est aussi parti par courriel à l***@example.org" \
        in html
    [message] = to_the_person(smtp_server)  # sent while the counsellor waits
    assert "Votre accord" in message["Subject"]
    text = body_of(message)
    code = re.search(r'id="code-retrait">([^<]+)<', html)
    link = re.search(r'id="lien-retrait">([^<]+)<', html)
    assert code and link
    assert code.group(1) in text and link.group(1) in text  # the receipt on the screen
    assert "vous orienter vers un partenaire" in text and "Mission locale" in text
    client.session.cookie_jar.clear()  # the person's phone, from the email
    mine = await client.get(urlsplit(link.group(1)).path)
    assert mine.status == 200 and "Mes accords" in await mine.text()
    logged = await client.app[RUNTIME].pool.fetchval(
        "SELECT count(*) FROM intake.access_log WHERE categories @> ARRAY['contact']")
    assert logged >= 1  # reading the address is a logged read of their contact data


async def test_no_address_or_a_refused_one_is_said_and_the_receipt_stays_on_screen(
        client: Client, tokens: Tokens, smtp_server: Mailbox) -> None:
    intake = await named_contact(client, tokens, {})  # a first name, no email
    where, done = await confirmation(client, intake)
    shown = unescape(await (await client.post(f"{where}/recu", data={
        "csrf": csrf(done), "envoi": "courriel"})).text())
    assert "pas donné d'adresse électronique" in shown and 'id="code-retrait"' in shown
    assert [m["To"] for m in smtp_server.messages if "mission-locale" not in m["To"]] == []


async def test_a_refused_address_is_said(client: Client, tokens: Tokens,
                                         smtp_server: Mailbox) -> None:
    smtp_server.refuse.add(ADDRESS)
    intake = await named_contact(client, tokens, {"courriel": ADDRESS})
    where, done = await confirmation(client, intake)
    shown = await (await client.post(f"{where}/recu", data={
        "csrf": csrf(done), "envoi": "courriel"})).text()
    assert "Le courriel à l***@example.org n'a pas pu partir" in shown
    assert 'id="code-retrait"' in shown


async def test_the_card_goes_by_email_and_its_code_recognises_the_person(
        client: Client, tokens: Tokens, smtp_server: Mailbox) -> None:
    intake = await named_contact(client, tokens, {"courriel": ADDRESS})
    proposal = await (await client.get(f"/terrain/contacts/{intake['id']}")).text()
    assert "Donner une carte et l'envoyer par courriel" in proposal
    given = await client.post(f"/terrain/contacts/{intake['id']}/carte",
                              data={"csrf": csrf(proposal), "envoi": "courriel"})
    html = await given.text()
    assert given.status == 200 and "Le code est aussi parti par courriel à l***@example.org" \
        in html
    code = re.search(r'id="code-carte">([^<]+)<', html)
    assert code
    [message] = to_the_person(smtp_server)
    assert code.group(1) in body_of(message)
    again = await client.post("/terrain/contact", allow_redirects=False, data=form_data(
        await open_form(client), ANONYMOUS | {"carte": code.group(1)}))
    assert again.status == 303, await again.text()
    people = {i["person_id"] for i in await intakes(client, tokens)}
    assert people == {intake["person_id"]}  # the same person, met twice


@pytest.fixture
async def gateway() -> AsyncIterator[tuple[BaseTestServer, list[tuple[str, dict[str, str]]]]]:
    """An SMS gateway over real HTTP: what it was asked to send, and with which token."""
    sent: list[tuple[str, dict[str, str]]] = []

    async def receive(request: web.Request) -> web.Response:
        sent.append((request.headers.get("Authorization", ""), await request.json()))
        return web.json_response({"id": len(sent)}, status=202)

    app = web.Application()
    app.router.add_post("/sms", receive)
    async with TestServer(app, host="127.0.0.1") as server:
        yield server, sent


async def test_the_receipt_and_the_card_go_by_sms_through_the_gateway(
        client: Client, tokens: Tokens, gateway: Any) -> None:
    server, sent = gateway
    client.app[RUNTIME].settings = client.app[RUNTIME].settings.model_copy(update={
        "sms_url": str(server.make_url("/sms")), "sms_token": SecretStr("jeton-sms")})
    intake = await named_contact(client, tokens, {"telephone": "06 12 34 56 78"})
    where, done = await confirmation(client, intake)
    assert "Montrer le reçu et l'envoyer par SMS" in done
    shown = unescape(await (await client.post(f"{where}/recu", data={
        "csrf": csrf(done), "envoi": "sms"})).text())
    assert "Ce reçu est aussi parti par SMS au +336 ** ** ** 78." in shown
    code = re.search(r'id="code-retrait">([^<]+)<', shown)
    assert code
    [(token, message)] = sent
    assert token == "Bearer jeton-sms" and message["to"] == "+33612345678"
    assert code.group(1) in message["text"] and "/mon-accord/" in message["text"]

    proposal = await (await client.get(f"/terrain/contacts/{intake['id']}")).text()
    card = unescape(await (await client.post(f"/terrain/contacts/{intake['id']}/carte", data={
        "csrf": csrf(proposal), "envoi": "sms"})).text())
    card_code = re.search(r'id="code-carte">([^<]+)<', card)
    assert card_code and "Le code est aussi parti par SMS" in card
    assert card_code.group(1) in sent[-1][1]["text"]


async def test_without_a_gateway_or_a_mobile_number_it_is_said(
        client: Client, tokens: Tokens) -> None:
    intake = await named_contact(client, tokens, {"telephone": "06 12 34 56 78"})
    where, done = await confirmation(client, intake)
    shown = unescape(await (await client.post(f"{where}/recu", data={
        "csrf": csrf(done), "envoi": "sms"})).text())
    assert "Le SMS au +336 ** ** ** 78 n'a pas pu partir" in shown  # no gateway configured
    assert 'id="code-retrait"' in shown


def test_only_french_mobile_numbers_are_texted() -> None:
    assert to_person.international("06 12 34 56 78") == "+33612345678"
    assert to_person.international("+33 7 12 34 56 78") == "+33712345678"
    assert to_person.international("01 23 45 67 89") is None  # a landline
    assert to_person.masked_email("lea.martin@example.org") == "l***@example.org"
