"""The person's card (issue #11, point 3) over real HTTP and PostgreSQL, without a browser: at
a first contact the counsellor gives the person a card whose code is shown once and kept only
as a keyed hash; at a later contact the code typed on the form attaches it to the same person
(the visit number follows); a wrong code, or the code of a person another organisation never
met, gets the same French words next to the field with nothing written; wrong codes are
throttled (429) and logged without the code; a new card replaces the earlier ones; erasing
the person deletes their cards (the browser journey is tests/browser/test_outreach.py)."""

from __future__ import annotations

import re
from html import unescape
from typing import Any

from structlog.testing import capture_logs

from services.intake import pages as outreach
from services.runtime import codes
from services.runtime.app import RUNTIME
from tests.e2e.conftest import Tokens
from tests.integration.conftest import Client
from tests.integration.test_console import PASSWORD, TEAM, account, csrf
from tests.integration.test_outreach_pages import (
    ANONYMOUS,
    form_data,
    intakes,
    open_form,
    pick,
    signed_in_counsellor,
)

CAMILLE = "camille@ml.example.org"


async def first_contact(client: Client, values: dict[str, Any] | None = None) -> str:
    """A contact recorded on the page: the proposal page's address."""
    fields = await open_form(client)
    sent = await client.post("/terrain/contact", allow_redirects=False,
                             data=form_data(fields, values or ANONYMOUS))
    assert sent.status == 303, await sent.text()
    where: str = sent.headers["Location"]
    return where


async def give_card(client: Client, where: str) -> tuple[str, str]:
    """The card given from the proposal page: its page and its code as shown."""
    proposal = await (await client.get(where)).text()
    assert f'action="{where}/carte"' in proposal
    assert "Donner une carte à la personne" in proposal
    given = await client.post(f"{where}/carte", data={"csrf": csrf(proposal)})
    html = unescape(await given.text())
    assert given.status == 200, html
    assert given.headers["Cache-Control"] == "no-store"
    found = re.search(r'id="code-carte">([^<]+)<', html)
    assert found, html
    return html, found.group(1)


def refused_next_to_the_field(html: str) -> bool:
    return bool(re.search(r'id="card-messages"[^>]*>\s*<p class="fr-message fr-message--error">'
                          + re.escape(outreach.CARD_REFUSED.replace("'", "&#39;")), html))


async def test_a_card_given_once_recognises_the_person_at_the_next_contact(
        client: Client, tokens: Tokens) -> None:
    await signed_in_counsellor(client, tokens)
    await pick(client)
    where = await first_contact(client, ANONYMOUS | {"prenom": "Léa",
                                                      "telephone": "06 12 34 56 78"})
    html, code = await give_card(client, where)
    assert re.fullmatch(rf"[{codes.ALPHABET}]{{5}} [{codes.ALPHABET}]{{5}}", code), code
    assert '<p class="relais-card__brand" id="carte-titre">Relais</p>' in html
    assert "Équipe mobile «\u00a0Le Camion\u00a0» (aller vers)" in html  # the team's name
    for personal in ("Léa", "06 12 34 56 78", "18-25", "80021"):  # nothing about the person
        assert personal not in html, personal
    assert "ne marchent plus" not in html  # no earlier card
    assert code not in unescape(await (await client.get(where)).text())  # shown once

    pool = client.app[RUNTIME].pool
    [intake] = await intakes(client, tokens)
    [stored] = await pool.fetch("SELECT * FROM intake.cards")
    assert str(stored["person_id"]) == intake["person_id"] and stored["org"] == TEAM
    assert stored["revoked_at"] is None
    for secret in (code, code.replace(" ", "")):  # nothing kept in clear, anywhere
        for table in ("cards", "intakes", "people", "outbox", "idempotency_keys"):
            assert await pool.fetchval(
                f"SELECT count(*) FROM intake.{table} t WHERE t::text LIKE $1",
                f"%{secret}%") == 0, (table, secret)
    assert len(bytes(stored["code_hash"])) == 32

    typed = code.lower().replace(" ", "-")  # as a counsellor may type it
    again = await first_contact(client, ANONYMOUS | {"carte": typed, "besoins": ["housing"]})
    page = await (await client.get(again)).text()
    assert "C'est sa 2<sup>e</sup> rencontre." in unescape(page)
    second = await (await client.get(f"/v1/intakes/{again.rsplit('/', 1)[1]}",
                                      headers=tokens.headers(TEAM, "intake:read"))).json()
    assert second["person_id"] == intake["person_id"] and second["visit_number"] == 2
    assert second["returning"] and second["needs"] == ["housing"]
    assert len(await intakes(client, tokens)) == 2

    lost_html, new_code = await give_card(client, again)  # a lost card: a new one
    assert new_code != code and "Les cartes données avant à cette personne ne marchent plus" \
        in lost_html
    old = await client.post("/terrain/contact", data=form_data(
        await open_form(client), ANONYMOUS | {"carte": code}))
    assert old.status == 422 and refused_next_to_the_field(await old.text())
    third = await first_contact(client, ANONYMOUS | {"carte": new_code})
    assert "C'est sa 3<sup>e</sup> rencontre." in unescape(await (await client.get(third)).text())

    erased = await client.delete(f"/v1/people/{intake['person_id']}",
                                 headers=tokens.headers(TEAM, "people:erase"))
    assert erased.status == 204
    assert await pool.fetchval("SELECT count(*) FROM intake.cards") == 0  # erased with them


async def test_wrong_codes_and_other_organisations_are_refused_then_throttled(
        client: Client, tokens: Tokens) -> None:
    await signed_in_counsellor(client, tokens)
    await pick(client)
    _html, code = await give_card(client, await first_contact(client))
    pool = client.app[RUNTIME].pool
    keys = await pool.fetchval("SELECT count(*) FROM intake.idempotency_keys")
    wrong = "".join(codes.ALPHABET[(codes.ALPHABET.index(c) + 1) % 30]
                    for c in code.replace(" ", ""))

    with capture_logs() as logs:
        for attempt in (wrong, "hello"):
            fields = await open_form(client)
            refused = await client.post("/terrain/contact", data=form_data(
                fields, ANONYMOUS | {"carte": attempt}))
            body = await refused.text()
            assert refused.status == 422, attempt
            assert refused_next_to_the_field(body), body
            assert "Le contact n&#39;est pas enregistré" in body
            assert f'value="{fields["cle"]}"' in body  # the same form, to correct
        assert len(await intakes(client, tokens)) == 1  # nothing written
        assert await pool.fetchval("SELECT count(*) FROM intake.idempotency_keys") == keys

        client.session.cookie_jar.clear()
        await account(client, CAMILLE)  # a partner's counsellor, who never met the person
        signed = await client.post("/connexion", data={"email": CAMILLE, "password": PASSWORD},
                                   allow_redirects=False)
        assert signed.status == 303
        assert (await pick(client)).status == 303
        other = await client.post("/terrain/contact", data=form_data(
            await open_form(client), ANONYMOUS | {"carte": code}))
        assert other.status == 422 and refused_next_to_the_field(await other.text())
        assert len(await intakes(client, tokens)) == 1

        for _ in range(2):  # 5 wrong codes a minute from one address
            await client.post("/terrain/contact", data=form_data(
                await open_form(client), ANONYMOUS | {"carte": wrong}))
        throttled = await client.post("/terrain/contact", data=form_data(
            await open_form(client), ANONYMOUS | {"carte": code}))  # not even checked
        body = await throttled.text()
        assert throttled.status == 429 and "Trop de codes erronés" in body
        assert int(throttled.headers["Retry-After"]) >= 1
        assert re.search(r'id="card-messages"[^>]*>\s*<p class="fr-message fr-message--error">'
                         r"Trop de codes", body)
    events = [e["event"] for e in logs]
    assert events.count("card_code_refused") == 5 and "card_code_throttled" in events
    assert code.replace(" ", "") not in repr(logs) and wrong not in repr(logs)
    assert len(await intakes(client, tokens)) == 1
