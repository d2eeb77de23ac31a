"""The search by name (issue #11, point 3) over real HTTP and PostgreSQL, without a browser: a
keyed blind index written with the identity (never for an anonymous contact), in the same
transaction, corrected with it and deleted on erasure; a search limited to the people the
counsellor's organisation met, exact whatever the accents and the case, one equality on the
indexed column (EXPLAIN), unsealing only the matches and logging each as a read; the visits,
the last one and the remobilisation path shown; a new contact attached from it (the visit
number follows); too-short queries and too many searches refused in French; the backfill of
people sealed before the index (the browser journey is tests/browser/test_outreach_search.py)."""

from __future__ import annotations

import argparse
import json
import re
import uuid
from html import unescape
from typing import Any

import pytest
from structlog.testing import capture_logs

from services import cli
from services.intake import api, names, search, store, vault
from services.intake import pages as outreach
from services.runtime import sealing
from services.runtime.app import RUNTIME
from services.runtime.settings import Settings
from tests.conftest import wait_until
from tests.e2e.conftest import Tokens
from tests.integration.conftest import Client
from tests.integration.test_console import ML, PASSWORD, TEAM, account, csrf
from tests.integration.test_outreach_card import CAMILLE, first_contact
from tests.integration.test_outreach_pages import (
    ANONYMOUS,
    TODAY,
    form_data,
    hidden,
    intakes,
    open_form,
    pick,
    signed_in_counsellor,
)

LEA = ANONYMOUS | {"prenom": "Léa", "nom": "Martin-Dupré"}


async def search_for(client: Client, typed: str) -> tuple[int, str]:
    """The search page's answer to what was typed: its status and its text (unescaped)."""
    page = await (await client.get("/terrain/recherche")).text()
    found = await client.post("/terrain/recherche", data={"csrf": csrf(page), "nom": typed})
    return found.status, unescape(await found.text())


def shown(html: str) -> list[str]:
    """The people the result page shows, by their heading."""
    return re.findall(r'<h3 class="fr-h5 fr-mb-1v">([^<]+)</h3>', html)


async def post_intake(client: Client, tokens: Tokens, body: dict[str, Any],
                      org: str = TEAM) -> dict[str, Any]:
    sent = await client.post("/v1/intakes", json={
        "site": "qpv-etouvie", "channel": "mobile_permanence",
        "contacted_at": "2026-11-17T10:15:00+01:00", "needs": ["employment"]} | body,
        headers=tokens.headers(org, "intake:write", **{"Idempotency-Key": str(uuid.uuid4())}))
    assert sent.status == 201, await sent.text()
    created: dict[str, Any] = await sent.json()
    return created


async def terms_of(client: Client, person_id: str) -> set[bytes]:
    rows = await client.app[RUNTIME].pool.fetch(
        "SELECT term FROM intake.name_index WHERE person_id = $1::uuid", person_id)
    return {bytes(r["term"]) for r in rows}


def index_key(client: Client) -> bytes:
    return names.key(client.app[api.MASTER_KEY])


async def test_the_index_is_written_with_the_identity_only(client: Client,
                                                           tokens: Tokens) -> None:
    await signed_in_counsellor(client, tokens)
    await pick(client)
    await first_contact(client)  # anonymous: nothing to index
    pool = client.app[RUNTIME].pool
    assert await pool.fetchval("SELECT count(*) FROM intake.name_index") == 0
    await first_contact(client, ANONYMOUS | {"telephone": "06 12 34 56 78"})  # no name
    assert await pool.fetchval("SELECT count(*) FROM intake.name_index") == 0

    await first_contact(client, LEA)
    lea = (await intakes(client, tokens))[-1]
    key = index_key(client)
    terms = await terms_of(client, lea["person_id"])
    assert terms == {names.term(key, s) for s in ("lea", "martindupre", "leamartindupre",
                                                   "martinduprelea")}
    assert await pool.fetchval("SELECT count(*) FROM intake.name_index") == 4
    for term in terms:  # nothing readable
        assert len(term) == 32 and not any(name in term.lower() for name in (
            b"lea", "léa".encode(), b"martin", b"dupr"))

    # The API writes it too, and a correction of the identity replaces it, in its unit of work
    created = await post_intake(client, tokens, {"identity": {"first_name": "Yanis"}})
    assert await terms_of(client, created["person_id"]) == {names.term(key, "yanis")}
    await post_intake(client, tokens, {"person_id": created["person_id"],
                                       "identity": {"last_name": "Bensaïd"}})
    assert await terms_of(client, created["person_id"]) == {
        names.term(key, s) for s in ("yanis", "bensaid", "yanisbensaid", "bensaidyanis")}
    await post_intake(client, tokens, {"person_id": created["person_id"],
                                       "identity": {"first_name": "Yannis"}})
    assert names.term(key, "yanis") not in await terms_of(client, created["person_id"])
    await post_intake(client, tokens, {"person_id": created["person_id"]})  # no identity
    assert len(await terms_of(client, created["person_id"])) == 4  # unchanged


async def test_a_person_met_is_found_whatever_the_accents_and_a_contact_attached(
        client: Client, tokens: Tokens, monkeypatch: pytest.MonkeyPatch) -> None:
    await signed_in_counsellor(client, tokens)
    await pick(client)
    lea = await post_intake(client, tokens, {"permanence": TODAY, "identity": {
        "first_name": "Léa", "last_name": "Martin-Dupré", "birth_date": "2006-03-01"}})
    await post_intake(client, tokens, {"identity": {"first_name": "Léa",
                                                    "last_name": "Moreau"}})
    await post_intake(client, tokens, {"identity": {"first_name": "Karim",
                                                    "last_name": "Martin"}})
    pool = client.app[RUNTIME].pool

    async def routed() -> bool:
        return bool(await pool.fetchval("SELECT count(*) FROM referral.referrals"
                                        " WHERE intake_id = $1::uuid", lea["id"]))

    await wait_until(routed, 30, "the routing of the first contact")

    opened: list[str] = []
    real_open = vault.open_sealed

    def counted(key: bytes, sealed: bytes, context: str) -> bytes:
        opened.append(context)
        return real_open(key, sealed, context)

    monkeypatch.setattr(vault, "open_sealed", counted)
    monkeypatch.setattr(sealing, "open_sealed", counted)  # under the keyring: a person's key
    with capture_logs() as logs:
        status, html = await search_for(client, "  MARTIN-dupre  ")
    monkeypatch.undo()
    assert status == 200, html
    assert shown(html) == ["Léa Martin-Dupré"]
    assert opened == [f"person-key/{lea['person_id']}",  # only the match was unsealed
                      f"identity/{lea['person_id']}"]
    assert "Année de naissance : 2006" in html
    assert "1 rencontre</strong> avec votre structure, la dernière le 17/11/2026." in html
    assert "vers Mission locale du Grand Amiénois (orientation vers un partenaire)" in html
    assert "En attente du consentement" in html  # its remobilisation path
    assert f'href="/terrain/contact?personne={lea["person_id"]}"' in html
    assert "Martin" not in repr(logs) and "Léa" not in repr(logs)  # never the name in logs

    status, html = await search_for(client, "MARTIN DUPRÉ léa")  # either order, any case
    assert status == 200 and shown(html) == ["Léa Martin-Dupré"]
    status, html = await search_for(client, "lea")  # the first name alone
    assert sorted(shown(html)) == ["Léa Martin-Dupré", "Léa Moreau"]
    status, html = await search_for(client, "Martin")  # a last name, or a first name
    assert shown(html) == ["Karim Martin"]  # "Martin-Dupré" is another name: exact
    assert "1 personne trouvée" in html

    # Each person shown is a read of their identity, logged as the API's reads are
    reads = await pool.fetch("SELECT person_id::text, org, client_id, consent_id, categories"
                             " FROM intake.access_log ORDER BY id")
    assert len(reads) == 5 and {r["org"] for r in reads} == {TEAM}
    assert all(r["categories"] == ["identity"] and r["consent_id"] is None
               and r["client_id"].startswith("session:") for r in reads)
    assert [r["person_id"] for r in reads][:2] == [lea["person_id"]] * 2
    events = await pool.fetch("SELECT value FROM intake.outbox WHERE headers::text LIKE"
                              " '%personal_data_read%' ORDER BY id")
    assert len(events) == 5
    assert json.loads(events[0]["value"])["read_by"] == f"Nadia Benali ({TEAM})"

    # Picking her starts a contact attached to her, through the contact form's own path
    form = await client.get(f"/terrain/contact?personne={lea['person_id']}")
    page = unescape(await form.text())
    assert form.status == 200
    assert "Votre structure l'a rencontrée 1 fois, la dernière le 17/11/2026" in page
    assert "ce sera sa 2<sup>e</sup> rencontre avec vous" in page
    assert hidden(page, "personne") == lea["person_id"]
    assert 'name="carte"' not in page
    sent = await client.post("/terrain/contact", allow_redirects=False, data=form_data(
        {n: hidden(page, n) for n in ("csrf", "cle", "moment", "personne")},
        ANONYMOUS | {"besoins": ["housing"]}))
    assert sent.status == 303, await sent.text()
    proposal = unescape(await (await client.get(sent.headers["Location"])).text())
    assert "C'est sa 2<sup>e</sup> rencontre." in proposal
    second = await pool.fetchrow("SELECT * FROM intake.intakes WHERE id = $1::uuid",
                                 sent.headers["Location"].rsplit("/", 1)[1])
    assert str(second["person_id"]) == lea["person_id"] and second["visit_number"] == 2
    assert second["basis"] == "met" and second["needs"] == ["housing"]
    status, html = await search_for(client, "Léa Martin-Dupré")
    assert "2 rencontres</strong> avec votre structure" in html


async def test_only_the_people_the_organisation_met_are_found(client: Client,
                                                              tokens: Tokens) -> None:
    await signed_in_counsellor(client, tokens)
    await pick(client)
    theirs = await post_intake(client, tokens, {"identity": {"first_name": "Inès",
                                                             "last_name": "Roux"}}, org=ML)
    status, html = await search_for(client, "Inès Roux")  # met by the Mission locale only
    assert status == 200 and shown(html) == []
    assert "Personne ne porte ce nom" in html
    assert "Aucune personne rencontrée par votre structure ne porte ce nom." in html
    pool = client.app[RUNTIME].pool
    assert await pool.fetchval("SELECT count(*) FROM intake.access_log") == 0

    # Nor by its id, on the contact form: the same refusal as for an unknown person
    for given in (theirs["person_id"], str(uuid.uuid4()), "pas-un-id"):
        refused = await client.get(f"/terrain/contact?personne={given}")
        assert refused.status == 404 and "Personne introuvable" in await refused.text()
    fields = await open_form(client)
    forced = await client.post("/terrain/contact", data=form_data(
        fields, ANONYMOUS | {"personne": theirs["person_id"]}))
    body = unescape(await forced.text())
    assert forced.status == 422 and outreach.PERSON_REFUSED in body
    assert await pool.fetchval("SELECT count(*) FROM intake.intakes") == 1  # nothing written

    client.session.cookie_jar.clear()  # the Mission locale's own counsellor finds her
    await account(client, CAMILLE)
    await client.post("/connexion", data={"email": CAMILLE, "password": PASSWORD})
    assert (await pick(client)).status == 303
    status, html = await search_for(client, "ines roux")
    assert shown(html) == ["Inès Roux"]


async def test_erasure_removes_the_person_from_the_search(client: Client,
                                                         tokens: Tokens) -> None:
    await signed_in_counsellor(client, tokens)
    await pick(client)
    lea = await post_intake(client, tokens, {"identity": {"first_name": "Léa",
                                                          "last_name": "Martin"}})
    assert shown((await search_for(client, "Léa Martin"))[1]) == ["Léa Martin"]
    erased = await client.delete(f"/v1/people/{lea['person_id']}",
                                 headers=tokens.headers(TEAM, "people:erase"))
    assert erased.status == 204
    assert await terms_of(client, lea["person_id"]) == set()
    status, html = await search_for(client, "Léa Martin")
    assert status == 200 and shown(html) == [] and "Personne ne porte ce nom" in html
    fields = await open_form(client)  # a form opened before the erasure attaches nothing
    sent = await client.post("/terrain/contact", data=form_data(
        fields, ANONYMOUS | {"personne": lea["person_id"]}))
    assert sent.status == 422 and outreach.PERSON_REFUSED in unescape(await sent.text())


async def test_the_lookup_is_one_equality_on_the_indexed_term(client: Client,
                                                             tokens: Tokens) -> None:
    await post_intake(client, tokens, {"identity": {"first_name": "Léa",
                                                    "last_name": "Martin"}})
    pool = client.app[RUNTIME].pool
    await pool.execute(  # a territory's worth of other people's terms
        "INSERT INTO intake.name_index (term, person_id) SELECT decode(md5(i::text) ||"
        " md5((i + 1)::text), 'hex'), gen_random_uuid() FROM generate_series(1, 20000) i")
    await pool.execute("ANALYZE intake.name_index")
    term = names.query_term(index_key(client), "Léa Martin")
    assert term is not None
    plan = json.loads(await pool.fetchval("EXPLAIN (FORMAT JSON) " + store.PEOPLE_NAMED,
                                          term, TEAM, search.SHOWN + 1))

    def nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
        return [node] + [n for child in node.get("Plans", []) for n in nodes(child)]

    on_index = [n for n in nodes(plan[0]["Plan"]) if n.get("Relation Name") == "name_index"
                or n.get("Index Name", "").startswith("name_index")]
    assert on_index, plan
    assert all(n["Node Type"] != "Seq Scan" for n in on_index), plan
    assert any(n.get("Index Name") == "name_index_pkey"
               and "term = " in n.get("Index Cond", "") for n in on_index), plan
    assert not re.search(r"\b(I?LIKE|~~)", store.PEOPLE_NAMED, re.IGNORECASE)
    rows = await store.people_named(pool, term, TEAM, search.SHOWN + 1)
    assert len(rows) == 1 and rows[0]["visits"] == 1


async def test_people_sealed_before_the_index_are_indexed_by_the_backfill(
        client: Client, tokens: Tokens, settings: Settings,
        capsys: pytest.CaptureFixture[str]) -> None:
    await signed_in_counsellor(client, tokens)
    await pick(client)
    lea = await post_intake(client, tokens, {"identity": {"first_name": "Léa",
                                                          "last_name": "Martin"}})
    karim = await post_intake(client, tokens, {"identity": {"first_name": "Karim"}})
    await post_intake(client, tokens, {"identity": {"phone": "06 12 34 56 78"}})
    await post_intake(client, tokens, {})  # anonymous: no identity to read
    gone = await post_intake(client, tokens, {"identity": {"first_name": "Zoé"}})
    assert (await client.delete(f"/v1/people/{gone['person_id']}",
                                headers=tokens.headers(TEAM, "people:erase"))).status == 204
    pool = client.app[RUNTIME].pool
    before = {(r["person_id"], bytes(r["term"])) for r in await pool.fetch(
        "SELECT * FROM intake.name_index")}
    await pool.execute("DELETE FROM intake.name_index")  # as before migration 008
    assert shown((await search_for(client, "Léa Martin"))[1]) == []

    code = await cli.intake_command(settings, argparse.Namespace(action="reindex-names"))
    assert code == 0
    assert "3 people with a sealed identity read; 2 findable by name" in \
        capsys.readouterr().out
    after = {(r["person_id"], bytes(r["term"])) for r in await pool.fetch(
        "SELECT * FROM intake.name_index")}
    assert after == before  # the same terms as written with the identity
    assert shown((await search_for(client, "lea martin"))[1]) == ["Léa Martin"]
    assert shown((await search_for(client, "Karim"))[1]) == ["Karim"]
    assert await terms_of(client, gone["person_id"]) == set()  # erased: never again
    async with pool.acquire() as conn:  # again: the same (small batches, idempotent)
        assert await search.reindex(conn, client.app[api.MASTER_KEY], batch=1) == (3, 2)
    assert await terms_of(client, karim["person_id"]) == {names.term(index_key(client),
                                                                     "karim")}
    assert len(await terms_of(client, lea["person_id"])) == 4


async def test_short_queries_and_too_many_searches_are_refused(client: Client,
                                                               tokens: Tokens) -> None:
    await signed_in_counsellor(client, tokens)
    await pick(client)
    for typed in ("L", " - ", "", "x" * (names.MAX_TYPED + 1)):
        status, html = await search_for(client, typed)
        assert status == 422, typed
        assert re.search(r'id="name-messages"[^>]*>\s*<p class="fr-message '
                         r'fr-message--error">Tapez au moins 2 lettres', html), html
        assert 'id="resultats"' not in html  # nothing looked up
    for _ in range(outreach.SEARCHES_PER_ACCOUNT):
        status, _html = await search_for(client, "Léa")
        assert status == 200
    page = await (await client.get("/terrain/recherche")).text()
    with capture_logs() as logs:
        throttled = await client.post("/terrain/recherche",
                                      data={"csrf": csrf(page), "nom": "Léa"})
    html = unescape(await throttled.text())
    assert throttled.status == 429 and outreach.SEARCH_TOO_MANY in html
    assert int(throttled.headers["Retry-After"]) >= 1
    assert [e["event"] for e in logs] == ["name_search_throttled"]
    assert "Léa" not in repr(logs)
    assert (await client.get("/terrain/recherche")).status == 200  # the form itself is not
    assert "Léa" in html  # what was typed, kept in the field
