"""The OWASP API Security Top 10 (2023), item by item, against a real Relais. Where an item
is tested at length elsewhere, the test here names the file and checks one telling case.

- API1 object level authorisation: tests/security/test_bola.py (every operation with an id)
- API2 authentication: tests/security/test_tokens.py, tests/unit/test_auth.py
- API6 sensitive business flows (the consent gate): tests/security/test_people.py
- API7 server-side request forgery (webhooks): tests/security/test_webhooks.py
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from services.auth import domain
from services.runtime.app import RUNTIME
from services.runtime.openapi import OPERATIONS
from tests.conftest import wait_until
from tests.e2e.conftest import Tokens
from tests.integration.conftest import Client

TEAM, ML = "equipe-aller-vers", "mission-locale"
INTAKE = {"site": "qpv-etouvie", "channel": "mobile_permanence",
          "contacted_at": "2026-11-20T10:00:00+01:00", "needs": ["employment"]}
COMMITTED = Path(__file__).resolve().parents[2] / "schemas" / "openapi.json"


def write(tokens: Tokens, org: str, scopes: str) -> dict[str, str]:
    return tokens.headers(org, scopes, **{"Idempotency-Key": str(uuid.uuid4())})


async def test_api3_object_properties_cannot_be_set_or_read_beyond_ones_right(
    client: Client, tokens: Tokens
) -> None:
    """Mass assignment: the organisation, the grounds of an intake, a consent's recorder come
    from the token, never from the body; and nothing sealed leaves the vault."""
    for extra in ({"org": ML}, {"basis": "met"}, {"visit_number": 1}):
        response = await client.post("/v1/intakes", json=INTAKE | extra,
                                     headers=write(tokens, TEAM, "intake:write"))
        assert response.status == 422, extra
        assert (await response.json())["errors"][0]["field"] == next(iter(extra))
    created = await client.post("/v1/intakes", json=INTAKE | {
        "identity": {"last_name": "Martin"}, "note": "Suivi santé."},
        headers=write(tokens, TEAM, "intake:write"))
    body = await created.json()
    assert body["org"] == TEAM
    assert "Martin" not in json.dumps(body) and "santé" not in json.dumps(body)
    assert not {"note", "identity", "wrapped_key", "basis"} & set(body)


async def test_api4_resource_consumption_is_bounded(client: Client, tokens: Tokens) -> None:
    """Pages, batches and bodies have ceilings (rate limits and body size:
    tests/integration/test_limits.py; streams: tests/security/test_sse.py)."""
    too_long = await client.get("/v1/referrals?limit=100000",
                                headers=tokens.headers(TEAM, "referral:read"))
    assert too_long.status == 400
    capped = await client.get("/v1/intakes?limit=100000",
                              headers=tokens.headers(TEAM, "intake:read"))
    assert capped.status == 200  # served, but 100 at most
    batch = {"items": [{"idempotency_key": f"k{i}", "intake": INTAKE} for i in range(501)]}
    refused = await client.post("/v1/intakes:batch", json=batch,
                                headers=tokens.headers(TEAM, "intake:write"))
    assert refused.status == 422
    assert await client.app[RUNTIME].pool.fetchval("SELECT count(*) FROM intake.intakes") == 0


async def test_api5_functions_need_their_scope(client: Client, tokens: Tokens) -> None:
    """A partner's ordinary token does not reach the territory-wide functions."""
    partner = ("intake:write intake:read consent:write consent:read people:read "
               "referral:read referral:write notification:read notification:write")
    directory = await (await client.get("/v1/directory",
                                        headers=tokens.headers(TEAM, partner))).json()
    for method, path, body in (
        ("PUT", "/v1/directory", directory),
        ("GET", "/v1/audit/consent-trail/export", None),
        ("GET", f"/v1/audit/access-log?person_id={uuid.uuid4()}", None),
        ("GET", "/v1/stats", None),
        ("PUT", f"/v1/recipients/{TEAM}", {"channels": ["inbox"]}),
        ("DELETE", f"/v1/people/{uuid.uuid4()}", None),
    ):
        response = await client.request(method, path, json=body,
                                        headers=tokens.headers(TEAM, partner))
        assert response.status == 403, (method, path, response.status)
        assert "insufficient_scope" in response.headers["WWW-Authenticate"]
    other = await client.put("/v1/partners/ccas/capacity", json={"open_places": 0},
                             headers=tokens.headers(ML, partner))
    assert other.status == 403


async def test_api8_answers_carry_no_secrets_and_the_safe_headers(
    client: Client, tokens: Tokens
) -> None:
    response = await client.get(f"/v1/people/{uuid.uuid4()}",
                                headers=tokens.headers(TEAM, "people:read"))
    assert response.status == 404
    assert response.content_type == "application/problem+json"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "no-store"
    assert "aiohttp" not in response.headers.get("Server", "")
    broken = await client.post("/v1/intakes", data=b"{not json",
                               headers=write(tokens, TEAM, "intake:write") | {
                                   "Content-Type": "application/json"})
    text = await broken.text()
    assert broken.status == 400 and "Traceback" not in text and "File \"" not in text


async def test_api9_every_route_is_in_the_published_inventory(client: Client,
                                                               tokens: Tokens) -> None:
    """No undocumented API: every API route the server answers is in /openapi.json, but for
    the services' own calls to each other (/internal/: for a scope no client can be given),
    and everything else it serves is a page for people or a static file."""
    documented = {(op.method, op.path) for op in client.app[OPERATIONS]}
    committed = json.loads(COMMITTED.read_text())
    published = {(method.upper(), path) for path, item in committed["paths"].items()
                 for method in item}
    assert documented == published
    served = {(r.method, r.resource.canonical) for r in client.app.router.routes()
              if r.resource is not None and r.method != "HEAD"}
    api = {route for route in served
           if route[1].startswith(("/v1/", "/oauth/", "/.well-known/"))}
    assert api - documented == set()
    internal = {route for route in served if route[1].startswith("/internal/")}
    assert internal == {("GET", "/internal/links/{id}")}
    everything = " ".join(sorted(domain.SCOPES))
    for _method, path in internal:  # no partner's token opens them, whatever its scopes
        answer = await client.get(path.replace("{id}", str(uuid.uuid4())),
                                  headers=tokens.headers("mission-locale", everything))
        assert answer.status == 403, path
    served -= internal
    # The rest: /openapi.json (the inventory itself), /static/ (the DSFR's and Relais's own
    # CSS, fonts and scripts: services/runtime/assets.py), the outreach app's service worker
    # and manifest (files: services/intake/offline_pages.py), and the pages, which answer
    # HTML to a signed-in person and send anyone else to the sign-in page, never JSON.
    files = {"/terrain/sw.js": "text/javascript",
             "/terrain/manifest.webmanifest": "application/manifest+json"}
    for path, kind in files.items():
        answer = await client.get(path)
        assert answer.status == 200 and answer.content_type == kind, path
    for method, path in served - api - documented:
        if method == "GET" and "{" not in path and not path.startswith("/static/") \
                and path not in files and path != "/openapi.json":
            response = await client.get(path, allow_redirects=False)
            assert response.status in (200, 303), path
            if response.status == 200:
                assert response.content_type == "text/html", path
            else:
                assert response.headers["Location"].startswith("/connexion"), path


async def test_api10_what_a_peer_service_answers_is_not_trusted(
    database: str, tmp_path: Path, tokens: Tokens, client: Client
) -> None:
    """The dossier reads the identity from the intake service: an answer that is not what
    the contract says (a redirect, a body of another shape) is a 503, never passed on."""
    hits: list[str] = []

    async def rogue(request: web.Request) -> web.Response:
        hits.append(request.path)
        if len(hits) % 2:
            raise web.HTTPFound("http://169.254.169.254/latest/meta-data/")
        return web.json_response({"person_id": "not-a-uuid", "identity": "<script>"})

    rogue_app = web.Application()
    rogue_app.router.add_route("*", "/{tail:.*}", rogue)
    async with TestServer(rogue_app, host="127.0.0.1") as server:
        client.app[RUNTIME].settings.intake_url = f"http://127.0.0.1:{server.port}"
        scopes = "intake:write consent:write referral:read people:read"
        intake = await (await client.post("/v1/intakes", json=INTAKE,
                                          headers=write(tokens, TEAM, scopes))).json()
        # the consent service asks the (rogue) intake service who met the person
        refused = await client.post("/v1/consents", json={
            "person_id": intake["person_id"], "purposes": ["referral_partner"],
            "recipients": [ML], "categories": ["identity"], "notice_version": "2026-01",
            "method": "signed_screen", "captured_by": "x"}, headers=write(tokens, TEAM, scopes))
        second = await client.post("/v1/consents", json={
            "person_id": intake["person_id"], "purposes": ["referral_partner"],
            "recipients": [ML], "categories": ["identity"], "notice_version": "2026-01",
            "method": "signed_screen", "captured_by": "x"}, headers=write(tokens, TEAM, scopes))
    assert (refused.status, second.status) == (503, 503)
    assert (await refused.json())["title"] == "Intake service unavailable"
    assert hits == [f"/v1/people/{intake['person_id']}/standing"] * 2  # no redirect followed
    assert await client.app[RUNTIME].pool.fetchval("SELECT count(*) FROM consent.consents") == 0

    async def routed() -> bool:
        return bool(await client.app[RUNTIME].pool.fetchval(
            "SELECT count(*) FROM referral.referrals"))

    await wait_until(routed, 30, "the referral")
    status: Any = await client.app[RUNTIME].pool.fetchval(
        "SELECT status FROM referral.referrals")
    assert status == "awaiting_consent"
