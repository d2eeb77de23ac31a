"""The relays of the network (issue #11, MiloMouv') over real HTTP and PostgreSQL, without a
browser: the coordination creates a relay for the mobile team and gets its personal link
once (only its keyed hash is kept); the relay signals a young person from it through the
same unit of work as POST /v1/signals (once per form, the hint sealed, a NIR refused in
French, its kind and name the relay's); a revoked link stops at once, an unknown one shows
nothing, and wrong links are throttled and logged without the token; the team sees the
signal on /terrain and answers it with a contact, which closes it; the funders count signals
per relay kind, never names (the browser journey is tests/browser/test_relays.py)."""

from __future__ import annotations

import re
import uuid
from html import unescape
from typing import Any
from urllib.parse import urlsplit

import pytest
from structlog.testing import capture_logs

from schemas.api import SignalIn
from services.intake import api
from services.runtime.app import RUNTIME
from services.runtime.problem import Problem
from tests.conftest import wait_until
from tests.e2e.conftest import Tokens
from tests.integration.conftest import Client
from tests.integration.test_console import ML, TEAM, csrf
from tests.integration.test_coordination_pages import coordinator, signed_in
from tests.integration.test_outreach_pages import (
    ANONYMOUS,
    form_data,
    hidden,
    open_form,
    pick,
    signed_in_counsellor,
)
from tests.integration.test_stats_pages import funder

SALEUX = "Mairie de Saleux"
LEA = {"qui": "Léa, la nièce de la secrétaire", "joindre": "06 12 34 56 78",
       "besoins": ["employment", "mobility"], "commune": "80710", "age": "18_25"}


async def read(response: Any) -> str:
    return unescape(await response.text())


async def new_relay(client: Client, name: str = SALEUX, kind: str = "mayor",
                    team: str = TEAM) -> tuple[str, str]:
    """A relay created from the coordination's page by a coordinator signed in: the page that
    shows its link, and the link's path (`/signalement/<token>`)."""
    page = await read(await client.get("/coordination/relais"))
    created = await client.post("/coordination/relais/nouveau", data={
        "csrf": csrf(page), "type": kind, "nom": name, "equipe": team})
    html = await read(created)
    assert created.status == 200, html
    assert created.headers["Cache-Control"] == "no-store"
    found = re.search(r'id="lien-relais" value="([^"]+)"', html)
    assert found, html
    return html, urlsplit(found.group(1)).path


async def relay_form(client: Client, path: str) -> dict[str, str]:
    """The relay's form's hidden fields (no session: its token is bound to the link)."""
    page = await client.get(path)
    html = await page.text()
    assert page.status == 200, html
    return {name: hidden(html, name) for name in ("csrf", "cle")}


async def signal(client: Client, path: str, values: dict[str, Any] | None = None,
                 fields: dict[str, str] | None = None) -> Any:
    fields = fields or await relay_form(client, path)
    return await client.post(path, data=form_data(fields, values or LEA),
                             allow_redirects=False)


async def a_relay_signals(client: Client) -> str:
    """A coordinator creates a relay, signs out; the relay signals Léa. The link's path."""
    await coordinator(client)
    _html, path = await new_relay(client)
    client.session.cookie_jar.clear()
    sent = await signal(client, path)
    assert sent.status == 303, await sent.text()
    return path


async def test_a_coordinator_gives_a_relay_a_link_that_signals_to_the_team(
        client: Client, tokens: Tokens) -> None:
    await coordinator(client)
    home = await read(await client.get("/coordination"))
    assert 'href="/coordination/relais"' in home
    html, path = await new_relay(client)
    assert "Mairie « Mairie de Saleux » : ses signalements iront à Équipe mobile" in html
    assert "n'est montré qu'une fois" in html
    token = path.rsplit("/", 1)[1]
    pool = client.app[RUNTIME].pool
    [relay] = await pool.fetch("SELECT * FROM intake.relays")
    assert (relay["org"], relay["kind"], relay["name"]) == (TEAM, "mayor", SALEUX)
    assert relay["created_by"] == "Claire Dubois (coordination)" and relay["revoked_at"] is None
    listed = await read(await client.get("/coordination/relais"))
    assert SALEUX in listed and "Actif" in listed and token not in listed  # shown once

    client.session.cookie_jar.clear()  # the relay: no account, no session
    form = await client.get(path)
    page = await read(form)
    assert form.status == 200 and "Signaler un jeune" in page and SALEUX in page
    assert form.headers["Cache-Control"] == "no-store" and form.headers["X-Robots-Tag"]
    assert 'name="type"' not in page and 'name="nom"' not in page  # the relay's, not typed
    fields = await relay_form(client, path)
    sent = await signal(client, path, fields=fields)
    assert sent.status == 303 and sent.headers["Location"] == f"{path}/merci"
    thanks = await read(await client.get(sent.headers["Location"]))
    assert "Merci, c'est envoyé" in thanks
    assert "Équipe mobile «\u00a0Le Camion\u00a0» (aller vers) va prendre contact" in thanks

    again = await signal(client, path, fields=fields)  # a double submit: recorded once
    assert again.status == 303
    [row] = await pool.fetch("SELECT * FROM intake.signals")
    assert (row["org"], row["relay_id"], row["relay_kind"], row["relay_name"]) == (
        TEAM, relay["id"], "mayor", SALEUX)
    assert row["needs"] == ["employment", "mobility"] and row["commune"] == "80710"
    assert row["age_bracket"] == "18_25" and row["status"] == "open"
    for secret in ("Léa", "06 12 34 56 78", token):  # nothing in clear, anywhere
        for table in ("relays", "signals", "outbox", "idempotency_keys"):
            assert await pool.fetchval(
                f"SELECT count(*) FROM intake.{table} t WHERE t::text LIKE $1",
                f"%{secret}%") == 0, (table, secret)
    assert len(bytes(relay["link_hash"])) == 32

    other = await signal(client, path, LEA | {"qui": "Karim"}, fields)  # the key, reused
    assert other.status == 422 and "déjà servi" in await read(other)
    assert await pool.fetchval("SELECT count(*) FROM intake.signals") == 1

    listed = await (await client.get("/v1/signals?status=open", headers=tokens.headers(
        TEAM, "intake:read"))).json()
    assert [s["relay_id"] for s in listed["items"]] == [str(relay["id"])]
    assert "hint" not in listed["items"][0]
    event = await pool.fetchval("SELECT count(*) FROM intake.outbox"
                                " WHERE headers::text LIKE '%intake.signal_received%'")
    assert event == 1
    nobody = await (await client.get("/v1/signals", headers=tokens.headers(
        ML, "intake:read"))).json()
    assert nobody["items"] == []  # the Mission locale sees none of the team's signals


async def test_bad_input_and_a_nir_are_refused_in_french_with_nothing_written(
        client: Client) -> None:
    await coordinator(client)
    refused = await client.post("/coordination/relais/nouveau", data={
        "csrf": csrf(await read(await client.get("/coordination/relais"))), "type": "bank",
        "nom": "", "equipe": ML})
    page = await read(refused)
    assert refused.status == 422 and "Relais non créé" in page
    assert "Choisissez le type de relais" in page and "Le nom du relais" in page
    assert "Choisissez l'équipe mobile" in page  # a partner is no mobile team
    _html, path = await new_relay(client)
    client.session.cookie_jar.clear()
    pool = client.app[RUNTIME].pool

    nir = await signal(client, path, LEA | {"joindre": "son n° 1 85 05 78 006 084 36"})
    page = await read(nir)
    assert nir.status == 422 and "Le signalement n'est pas envoyé" in page
    assert re.search(r'id="joindre-messages"[^>]*>\s*<p class="fr-message fr-message--error">'
                     r"N'écrivez pas de numéro de sécurité sociale", page)
    assert "06 12 34 56 78" not in page and "1 85 05 78 006 084 36" in page  # to correct
    empty = await signal(client, path, {"qui": " ", "commune": "Saleux", "age": "old",
                                        "besoins": ["money"]})
    page = await read(empty)
    assert empty.status == 422
    for said in ("Dites-nous son prénom", "Le code INSEE", "Choisissez une tranche d'âge",
                 "Choisissez ses besoins"):
        assert said in page, said
    foreign = await client.post(path, data=form_data(
        {"csrf": "x", "cle": str(uuid.uuid4())}, LEA))
    assert foreign.status == 403  # a form that does not come from the link's page
    assert await pool.fetchval("SELECT count(*) FROM intake.signals") == 0
    assert await pool.fetchval("SELECT count(*) FROM intake.idempotency_keys") == 0


async def test_revoked_and_unknown_links_show_nothing_and_wrong_ones_are_throttled(
        client: Client) -> None:
    await coordinator(client)
    _html, path = await new_relay(client)
    _html, kept = await new_relay(client, "Club de foot d'Étouvie", "sports_club")
    page = await read(await client.get("/coordination/relais"))
    [relay_id] = await client.app[RUNTIME].pool.fetch(
        "SELECT id FROM intake.relays WHERE name = $1", SALEUX)
    revoked = await client.post(f"/coordination/relais/{relay_id['id']}/retrait",
                                data={"csrf": csrf(page)}, allow_redirects=False)
    assert revoked.status == 303
    listed = await read(await client.get(revoked.headers["Location"]))
    assert f"Le lien de {SALEUX} est retiré" in listed and "Retiré" in listed
    missing = await client.post(f"/coordination/relais/{uuid.uuid4()}/retrait",
                                data={"csrf": csrf(page)})
    assert missing.status == 404
    body = SignalIn.model_validate({"relay_kind": "mayor", "relay_name": SALEUX})
    with pytest.raises(Problem) as raced:  # revoked while a form was on its way: not recorded
        await api.signal_once(client.app[RUNTIME].pool, TEAM, "relay:late", {}, body,
                              client.app[api.MASTER_KEY], relay_id["id"])
    assert raced.value.status == 410

    await signed_in(client, "nadia@camion.example.org", TEAM)  # a counsellor: not theirs
    assert (await client.get("/coordination/relais")).status == 403
    client.session.cookie_jar.clear()
    pool = client.app[RUNTIME].pool
    token = path.rsplit("/", 1)[1]
    with capture_logs() as logs:
        gone = await client.get(path)
        assert gone.status == 410 and "Lien retiré" in await read(gone)
        late = await client.post(path, data=form_data({"csrf": "x", "cle": "y"}, LEA))
        assert late.status == 410
        assert await pool.fetchval("SELECT count(*) FROM intake.signals") == 0
        assert (await client.get(f"{kept}/merci")).status == 200  # the other one works

        for wrong in (token[:-1] + ("A" if token[-1] != "A" else "B"), "abc", token + "x",
                      "x" * 43, "%C3%A9" * 10):
            unknown = await client.get(f"/signalement/{wrong}")
            page = await read(unknown)
            assert unknown.status == 404 and "Lien non valable" in page, wrong
            assert SALEUX not in page
        throttled = await client.get(kept)  # five wrong links a minute: this address waits
        assert throttled.status == 429 and "Trop d'essais" in await read(throttled)
        assert int(throttled.headers["Retry-After"]) >= 1
    events = [e["event"] for e in logs]
    assert events.count("relay_link_refused") == 5 and "relay_link_throttled" in events
    assert "relay_link_revoked" in events
    assert token not in repr(logs) and token[:20] not in repr(logs)
    assert all("address" in e for e in logs if e["event"].startswith("relay_link"))


async def test_the_team_sees_the_signal_and_answers_it_with_a_contact(
        client: Client, tokens: Tokens) -> None:
    path = await a_relay_signals(client)
    pool = client.app[RUNTIME].pool
    signal_id = str(await pool.fetchval("SELECT id FROM intake.signals"))

    await signed_in(client, "camille@ml.example.org", ML)  # another organisation: nothing
    assert "Léa" not in await read(await client.get("/terrain"))
    client.session.cookie_jar.clear()
    await signed_in_counsellor(client, tokens)
    day = await read(await client.get("/terrain"))
    assert "Signalements du réseau à traiter (1)" in day
    assert "Léa, la nièce de la secrétaire" in day and "Pour la joindre : 06 12 34 56 78" in day
    assert f"Signalé par {SALEUX} (mairie)" in day and "emploi, mobilité" in day
    assert "Choisissez d'abord votre lieu du jour" in day  # the day starts with its place
    await pick(client)
    day = await read(await client.get("/terrain"))
    assert f'href="/terrain/contact?signalement={signal_id}"' in day
    form = await read(await client.get(f"/terrain/contact?signalement={signal_id}"))
    assert re.search(rf'value="{signal_id}" checked', form), form
    assert "Ce contact répond-il à un signalement du réseau ?" in form

    fields = await open_form(client)
    wrong = await client.post("/terrain/contact", data=form_data(
        fields, ANONYMOUS | {"signalement": str(uuid.uuid4())}))
    assert wrong.status == 422
    assert "Ce signalement n'est pas, ou plus, parmi ceux de votre structure" in await read(
        wrong)
    answered = await client.post("/terrain/contact", allow_redirects=False, data=form_data(
        fields, ANONYMOUS | {"signalement": signal_id}))
    assert answered.status == 303, await answered.text()
    again = await client.post("/terrain/contact", allow_redirects=False, data=form_data(
        fields, ANONYMOUS | {"signalement": signal_id}))  # a double submit: the same contact
    assert again.headers["Location"] == answered.headers["Location"]
    intake_id = answered.headers["Location"].rsplit("/", 1)[1]
    row = await pool.fetchrow("SELECT * FROM intake.signals")
    assert (row["status"], row["outcome"], str(row["intake_id"])) == ("closed", "reached",
                                                                      intake_id)
    [intake] = await pool.fetch("SELECT signal_id FROM intake.intakes")
    assert str(intake["signal_id"]) == signal_id
    assert "Signalements du réseau à traiter" not in await read(await client.get("/terrain"))
    assert await pool.fetchval("SELECT count(*) FROM intake.outbox"
                               " WHERE headers::text LIKE '%intake.signal_closed%'") == 1
    assert (await client.get(path)).status == 200  # the relay may signal someone else


async def test_the_funders_count_signals_per_relay_kind_never_names(
        client: Client, tokens: Tokens) -> None:
    await coordinator(client)
    _html, mayor = await new_relay(client)
    _html, club = await new_relay(client, "US Étouvie football", "sports_club")
    client.session.cookie_jar.clear()
    for i in range(6):
        assert (await signal(client, mayor, LEA | {"qui": f"Jeune {i}"})).status == 303
    for i in range(2):
        assert (await signal(client, club, LEA | {"qui": f"Joueur {i}"})).status == 303
    pool = client.app[RUNTIME].pool
    write = tokens.headers(TEAM, "intake:write")
    for signal_id in await pool.fetch("SELECT id FROM intake.signals WHERE relay_kind ="
                                      " 'mayor' ORDER BY created_at LIMIT 5"):
        contact = await client.post("/v1/intakes", headers=write | {
            "Idempotency-Key": str(uuid.uuid4())}, json={
            "site": "qpv-etouvie", "channel": "network_relay",
            "contacted_at": "2026-03-10T10:00:00+01:00", "needs": ["employment"],
            "signal_id": str(signal_id["id"])})
        assert contact.status == 201, await contact.text()
    closed = await pool.fetchval("SELECT id FROM intake.signals WHERE relay_kind ="
                                 " 'sports_club' LIMIT 1")
    not_found = await client.post(f"/v1/signals/{closed}/close", json={
        "outcome": "not_found"}, headers=write)
    assert not_found.status == 200

    async def counted() -> bool:
        return bool(await pool.fetchval(
            "SELECT count(*) = 8 AND count(closed_at) = 6 FROM referral.signals"))

    await wait_until(counted, 30, "the signals counted by the referral service")
    stats = await (await client.get("/v1/stats", headers=tokens.headers(
        "region-hauts-de-france", "stats:read"))).json()
    assert stats["signal"] == {"mayor": 6, "sports_club": None}  # under 5: not shown
    assert stats["signal_answered"] == {"mayor": 5, "sports_club": None}
    stored = await pool.fetch("SELECT * FROM referral.signals")
    assert SALEUX not in repr(stored) and "Jeune" not in repr(stored)

    await funder(client)
    page = await read(await client.get("/statistiques"))
    assert "Les signalements du réseau" in page
    assert re.search(r'<th scope="row">Mairie</th><td class="relais-figure">6</td>', page)
    assert re.search(r'<th scope="row">Club de sport</th><td class="relais-figure">< 5 '
                     r"personnes</td>", page.replace("\u00a0", " "))
    assert SALEUX not in page and "US Étouvie" not in page
    csv = await (await client.get("/statistiques.csv")).text()
    assert '"Signalements des relais du réseau, par type de relais",mayor,6' in csv
    assert '"Signalements suivis d\'un contact, par type de relais",mayor,5' in csv
    assert "Saleux" not in csv
