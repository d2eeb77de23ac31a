"""Issue #16's friction, over real HTTP and PostgreSQL and through the real CLI: a consent
naming an organisation the directory does not hold (4), an erased person's contacts (5),
list settings and wrong settings (13), `relais client` (14), the statistics period and the
partners' path in the OpenAPI (15, 16), a live inbox stream its client closes (17)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession, ClientTimeout
from aiohttp.test_utils import TestClient
from structlog.testing import capture_logs

from services.auth import domain as auth_domain
from services.cli import SERVICE_NAMES, service_specs
from services.notify import api as notify_api
from services.runtime import problem
from services.runtime.app import RUNTIME, create_app
from services.runtime.settings import Settings
from tests.conftest import Mailbox, wait_until
from tests.e2e.conftest import Tokens
from tests.integration.conftest import Client
from tests.integration.test_consent import SCOPES, consent, met
from tests.integration.test_console import account, sign_in
from tests.integration.test_outreach_consent import (
    ORAL,
    consents,
    open_consent,
    proposed_contact,
)
from tests.integration.test_outreach_pages import form_data
from tests.security.test_sse import Recorder, ServedAsInProduction
from tests.security.test_webhooks import tell

TEAM, ML, FT = "equipe-aller-vers", "mission-locale", "france-travail"
ROOT = Path(__file__).resolve().parents[2]
RELAIS = [sys.executable, "-m", "services.cli"]
COORDINATION = "directory:write intake:read"


@pytest.fixture
def settings(database: str, tmp_path: Path, smtp_server: Mailbox) -> Settings:
    return Settings.model_validate({"data_dir": tmp_path, "database_url": database,
                                    "smtp_port": smtp_server.port, "poll_interval": 0.5,
                                    "checkpoint_interval": 0.3})


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[Client]:
    """As `relais up` serves: a handler goes on when its client goes away (17)."""
    assert settings.database_url
    app = create_app(settings, settings.database_url, service_specs(SERVICE_NAMES))
    async with TestClient(ServedAsInProduction(app, host="127.0.0.1")) as served:
        yield served


# --- 4. a consent naming an organisation the directory does not hold -------------------------

async def post_consent(client: Client, tokens: Tokens, body: dict[str, Any]) -> Any:
    return await client.post("/v1/consents", json=body, headers=tokens.headers(
        TEAM, SCOPES, **{"Idempotency-Key": str(uuid.uuid4())}))


async def check(client: Client, tokens: Tokens, person: str, recipient: str) -> Any:
    response = await client.get(
        f"/v1/consents:check?person_id={person}&purpose=referral_partner&recipient={recipient}",
        headers=tokens.headers(TEAM, SCOPES))
    assert response.status == 200, await response.text()
    return await response.json()


async def written(client: Client) -> dict[str, int]:
    """What the consent service has written: consents, trail, events, idempotency keys."""
    pool = client.app[RUNTIME].pool
    return {table: await pool.fetchval(f"SELECT count(*) FROM consent.{table}")
            for table in ("consents", "consent_changes", "trail", "outbox", "idempotency_keys")}


async def directory(client: Client, tokens: Tokens) -> dict[str, Any]:
    found: dict[str, Any] = await (await client.get(
        "/v1/directory", headers=tokens.headers("coordination", COORDINATION))).json()
    return found


async def load(client: Client, tokens: Tokens, document: dict[str, Any]) -> None:
    put = await client.put("/v1/directory", json=document,
                           headers=tokens.headers("coordination", COORDINATION))
    assert put.status == 200, await put.text()


def without(document: dict[str, Any], org: str) -> dict[str, Any]:
    """The directory without `org`, nor its places in lists and permanences."""
    def rest(ids: list[str]) -> list[str]:
        return [i for i in ids if i != org]

    return document | {
        "organisations": [o | {"members": rest(o.get("members", []))}
                          for o in document["organisations"] if o["id"] != org],
        "consortia": [c | {"members": rest(c["members"])} for c in document["consortia"]],
        "permanences": [p | {"organisations": rest(p["organisations"])}
                        for p in document["permanences"] if rest(p["organisations"])]}


async def test_a_consent_naming_an_organisation_outside_the_directory_is_a_422(
        client: Client, tokens: Tokens) -> None:
    person = await met(client, tokens)
    before = await written(client)
    refused = await post_consent(client, tokens, consent(
        person, recipients=[ML, "asso-fantome", "mission-locale-nord"]))
    assert refused.status == 422, await refused.text()
    assert refused.content_type == "application/problem+json"
    problem_ = await refused.json()
    assert [(e["field"], e["code"]) for e in problem_["errors"]] == [
        ("recipients", "unknown_recipient")] * 2
    named = " ".join(e["message"] for e in problem_["errors"])
    assert "'asso-fantome'" in named and "'mission-locale-nord'" in named
    assert f"'{ML}'" not in named
    assert "asso-fantome" in problem_["detail"] and "mission-locale-nord" in problem_["detail"]
    assert await written(client) == before, "something was written"

    # the check says why such a recipient may not receive the person, and why another may not
    unknown = await check(client, tokens, person, "asso-fantome")
    assert unknown["allowed"] is False and unknown["reason"] == "unknown_recipient"
    assert "asso-fantome" in unknown["detail"] and "directory" in unknown["detail"]
    listed = await check(client, tokens, person, ML)
    assert listed["allowed"] is False and listed["reason"] == "not_covered"

    granted = await post_consent(client, tokens, consent(person))  # the directory's own
    assert granted.status == 201, await granted.text()
    allowed = await check(client, tokens, person, ML)
    assert allowed == {"allowed": True, "consent_id": (await granted.json())["id"],
                       "reason": None, "detail": None}


async def test_the_consent_service_follows_the_directory(client: Client,
                                                         tokens: Tokens) -> None:
    """A partner added a moment ago may be named at once; one removed, no longer."""
    person = await met(client, tokens)
    assert (await post_consent(client, tokens, consent(person, recipients=[ML]))).status == 201
    current = await directory(client, tokens)
    current["organisations"].append({
        "id": "epide", "name": "EPIDE d'Amiens", "kind": "association",
        "email": "contact@epide.example.org", "needs": ["training"]})
    await load(client, tokens, current)
    added = await post_consent(client, tokens, consent(person, recipients=["epide"]))
    assert added.status == 201, await added.text()

    await load(client, tokens, without(current, FT))

    async def forgotten() -> bool:
        return bool((await check(client, tokens, person, FT))["reason"] == "unknown_recipient")

    await wait_until(forgotten, 15, "the consent service to see France Travail removed")
    refused = await post_consent(client, tokens, consent(person, recipients=[FT]))
    assert refused.status == 422
    assert (await refused.json())["errors"][0]["code"] == "unknown_recipient"


async def test_the_consent_page_says_in_french_that_a_partner_left_the_directory(
        client: Client, tokens: Tokens) -> None:
    """Routing proposed the Mission locale; the coordination removed it from the directory
    before the person agreed: the page says so next to the recipients, nothing is written."""
    intake = await proposed_contact(client, tokens)
    _html, fields = await open_consent(client, intake)
    await load(client, tokens, without(await directory(client, tokens), ML))

    async def forgotten() -> bool:
        said = await check(client, tokens, intake["person_id"], ML)
        return bool(said["reason"] == "unknown_recipient")

    await wait_until(forgotten, 15, "the consent service to see the Mission locale removed")
    before = await written(client)
    sent = await client.post(f"/terrain/accord/{intake['id']}", data=form_data(fields, ORAL),
                             allow_redirects=False)
    page = await sent.text()
    assert sent.status == 422, page
    message = re.search(r'id="recipients-messages"[^>]*>\s*'
                        r'<p class="fr-message fr-message--error">([^<]*)</p>', page)
    assert message, "no message next to the recipients"
    assert "« Mission locale du Grand Amiénois » ne figure pas dans" in message.group(1)
    assert "Décochez-la" in message.group(1)
    assert await consents(client, tokens, intake["person_id"]) == []
    assert await written(client) == before


# --- 5. an erased person's contacts -----------------------------------------------------------

async def test_an_erased_person_s_contacts_hold_no_identity_nor_note(
        client: Client, tokens: Tokens) -> None:
    scopes = "intake:write intake:read people:erase"
    recorded = await client.post("/v1/intakes", json={
        "site": "qpv-etouvie", "channel": "mobile_permanence",
        "contacted_at": "2026-11-20T10:00:00+01:00", "needs": ["employment"],
        "identity": {"first_name": "Léa", "phone": "06 12 34 56 78"},
        "note": "Cherche un CAP cuisine."},
        headers=tokens.headers(TEAM, scopes, **{"Idempotency-Key": str(uuid.uuid4())}))
    assert recorded.status == 201, await recorded.text()
    intake = await recorded.json()
    assert intake["has_identity"] is True and intake["has_note"] is True

    erased = await client.delete(f"/v1/people/{intake['person_id']}",
                                 headers=tokens.headers(TEAM, scopes))
    assert erased.status == 204, await erased.text()
    one = await (await client.get(f"/v1/intakes/{intake['id']}",
                                  headers=tokens.headers(TEAM, scopes))).json()
    assert (one["has_identity"], one["has_note"]) == (False, False)
    [listed] = (await (await client.get("/v1/intakes", headers=tokens.headers(
        TEAM, scopes))).json())["items"]
    assert (listed["has_identity"], listed["has_note"]) == (False, False)

    # people erased before the fix: their contacts say it once the migration has run
    pool = client.app[RUNTIME].pool
    await pool.execute("UPDATE intake.intakes SET has_identity = true WHERE id = $1",
                       uuid.UUID(intake["id"]))
    migration = resources.files("services.intake").joinpath(
        "migrations/011_erased_identity.sql").read_text("utf-8")
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL search_path TO intake")
        await conn.execute(migration)
    assert await pool.fetchval("SELECT has_identity FROM intake.intakes WHERE id = $1",
                               uuid.UUID(intake["id"])) is False


# --- 13, 14. settings and `relais client`, through the real CLI -------------------------------

def environment(extra: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """A clean environment (no RELAIS_* of the caller's), the data in tmp_path."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("RELAIS_") and k not in ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS")}
    return env | {"RELAIS_DATA_DIR": str(tmp_path / "data"), "RELAIS_LOG_LEVEL": "WARNING"} \
        | extra


def run(args: list[str], extra: dict[str, str], tmp_path: Path,
        **options: Any) -> subprocess.CompletedProcess[str]:
    """`relais ARGS` in a clean environment."""
    return subprocess.run([*RELAIS, *args], env=environment(extra, tmp_path), cwd=ROOT,
                          text=True, timeout=60, **({"capture_output": True} | options))


@pytest.mark.parametrize("value,networks", [
    ("127.0.0.0/8", ["127.0.0.0/8"]),
    ("127.0.0.0/8, 10.0.0.0/8", ["127.0.0.0/8", "10.0.0.0/8"]),
    ('["127.0.0.0/8", "fd00::/8"]', ["127.0.0.0/8", "fd00::/8"]),
])
def test_list_settings_take_commas_or_json(value: str, networks: list[str],
                                           tmp_path: Path) -> None:
    shown = run(["settings"], {"RELAIS_WEBHOOK_ALLOWED_NETWORKS": value,
                               "RELAIS_TRUSTED_PROXIES": value}, tmp_path)
    assert shown.returncode == 0, shown.stderr
    settings = json.loads(shown.stdout)
    assert settings["webhook_allowed_networks"] == networks
    assert settings["trusted_proxies"] == networks


@pytest.mark.parametrize("command", [["settings"], ["up"]])
def test_a_wrong_setting_is_one_line_naming_it(command: list[str], tmp_path: Path) -> None:
    refused = run(command, {"RELAIS_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8,le-camion"},
                  tmp_path)
    assert refused.returncode == 2
    assert refused.stdout == ""
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1, refused.stderr
    assert lines[0].startswith("relais: RELAIS_WEBHOOK_ALLOWED_NETWORKS")
    assert "le-camion" in lines[0] and "Traceback" not in refused.stderr
    assert not (tmp_path / "data").exists(), "it started something before refusing"


def test_client_create_help_lists_every_scope_and_what_it_allows(tmp_path: Path) -> None:
    shown = run(["client", "create", "--help"], {}, tmp_path)
    assert shown.returncode == 0, shown.stderr
    listed = dict(re.findall(r"^  ([a-z]+:[a-z]+) +(\S.*)$", shown.stdout, re.M))
    assert listed == auth_domain.SCOPES
    assert "--scopes" in shown.stdout and "space-separated" in shown.stdout


async def test_client_list_into_a_closed_pipe_ends_quietly(database: str,
                                                           tmp_path: Path) -> None:
    """`relais client list | head -1`: the reader stops reading; no traceback."""
    env = {"DATABASE_URL": database,
           "RELAIS_DIRECTORY_FILE": str(ROOT / "services/directory/demo.yaml")}
    for name in ("tablette", "si"):
        created = await asyncio.to_thread(
            run, ["client", "create", "--org", TEAM, "--name", name], env, tmp_path)
        assert created.returncode == 0, created.stderr
    read, write = os.pipe()
    os.close(read)  # the reader is gone before anything is written
    try:
        ended = await asyncio.to_thread(run, ["client", "list"], env, tmp_path,
                                        capture_output=False, stdout=write,
                                        stderr=subprocess.PIPE)
    finally:
        os.close(write)
    assert "Traceback" not in ended.stderr and "BrokenPipe" not in ended.stderr, ended.stderr
    assert ended.returncode == 141  # as a shell says of a command SIGPIPE ended

    shell = await asyncio.to_thread(subprocess.run, [
        "sh", "-c", f"{' '.join(RELAIS)} client list | head -1"], cwd=ROOT, text=True,
        capture_output=True, timeout=60, env=environment(env, tmp_path))
    assert shell.stdout == "[\n" and "Traceback" not in shell.stderr, shell.stderr


# --- 15, 16. the OpenAPI: the statistics period, the partners' path ---------------------------

async def openapi(client: Client) -> dict[str, Any]:
    document: dict[str, Any] = await (await client.get("/openapi.json")).json()
    return document


async def test_the_statistics_say_their_end_is_excluded(client: Client,
                                                        tokens: Tokens) -> None:
    document = await openapi(client)
    for path in ("/v1/stats", "/v1/stats.csv"):
        params = {p["name"]: p for p in document["paths"][path]["get"]["parameters"]}
        assert "excluded" in params["to"]["description"]
        assert "the day after the last day counted" in params["to"]["description"]
        assert "included" in params["from"]["description"]
    period = document["components"]["schemas"]["StatsOut"]["properties"]["period"]
    assert "`to` (excluded" in period["description"]

    # and it is so: a contact of 20 November is counted up to 21 November, excluded
    headers = tokens.headers(TEAM, "intake:write", **{"Idempotency-Key": "k"})
    recorded = await client.post("/v1/intakes", headers=headers, json={
        "site": "qpv-etouvie", "channel": "mobile_permanence",
        "contacted_at": "2026-11-20T10:00:00+00:00", "needs": ["employment"]})
    assert recorded.status == 201
    funder = tokens.headers("coordination", "stats:read")

    async def counted(to: date) -> Any:
        stats = await (await client.get(f"/v1/stats?from=2026-11-01&to={to}",
                                        headers=funder)).json()
        return stats["site"]

    async def arrived() -> bool:
        return bool(await counted(date(2026, 11, 21)))

    await wait_until(arrived, 30, "the contact in the statistics")
    assert await counted(date(2026, 11, 20)) == {}


def conforms(example: str, schema: dict[str, Any]) -> bool:
    if schema.get("format") == "uuid":
        try:
            uuid.UUID(example)
        except ValueError:
            return False
    return "pattern" not in schema or re.search(schema["pattern"], example) is not None


async def test_path_parameters_are_described_as_what_they_are(client: Client,
                                                              tokens: Tokens) -> None:
    document = await openapi(client)
    capacity = document["paths"]["/v1/partners/{id}/capacity"]["put"]["parameters"][0]
    assert capacity["schema"] == {"type": "string", "pattern": r"^[a-z0-9][a-z0-9-]*$"}
    assert "organisation" in capacity["description"] and capacity["example"] == ML
    referral = document["paths"]["/v1/referrals/{id}"]["get"]["parameters"][0]
    assert referral["schema"] == {"type": "string", "format": "uuid"}  # the others as they were
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            for param in operation.get("parameters", []):
                if param["in"] == "path":
                    assert param["example"] is not None, (method, path, param)
                    assert conforms(param["example"], param["schema"]), (method, path, param)

    answer = await client.put(f"/v1/partners/{ML}/capacity", json={"open_places": 4},
                              headers=tokens.headers(ML, "referral:write"))
    assert answer.status == 200, await answer.text()


# --- 17. a live inbox stream its client closes ------------------------------------------------

async def backlog(client: Client, org: str, count: int) -> None:
    """`count` notifications in the organisation's inbox, large enough that the stream is
    still writing them (waiting for its client to read) when the client goes away."""
    pool = client.app[RUNTIME].pool

    async def known() -> bool:  # the notify service has read the directory
        return bool(await pool.fetchval("SELECT count(*) FROM notify.recipients WHERE org = $1",
                                        org))

    await wait_until(known, 30, f"{org} among the notify service's recipients")
    await tell(client, org)
    await pool.execute(
        "INSERT INTO notify.notifications (id, event_id, referral_id, person_id, recipient_org,"
        " channel, address, subject, body, status, attempts, next_attempt_at, created_at, kind,"
        " sender_org, payload)"
        " SELECT gen_random_uuid(), n.event_id || '-' || g, n.referral_id, n.person_id,"
        " n.recipient_org, n.channel, n.address, n.subject, repeat(n.body, 500), n.status,"
        " n.attempts, n.next_attempt_at, n.created_at, n.kind, n.sender_org, n.payload"
        " FROM notify.notifications n, generate_series(1, $2) g"
        " WHERE n.channel = 'inbox' AND n.recipient_org = $1", org, count)


@pytest.mark.parametrize("where", ["api", "page"])
async def test_a_stream_closed_while_it_writes_is_a_normal_end(
        client: Client, tokens: Tokens, where: str, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    errors, ended = Recorder(problem.log), Recorder(notify_api.log)
    monkeypatch.setattr(problem, "log", errors)
    monkeypatch.setattr(notify_api, "log", ended)
    await backlog(client, ML, 3000)  # about 25 MB: more than the sockets hold
    headers: dict[str, str] = {}
    if where == "api":
        path = "/v1/inbox/stream?after=0"
        headers = tokens.headers(ML, "notification:read")
    else:  # the console's live list (/orientations), for a signed-in counsellor
        path = "/flux/orientations?depuis=0"
        await account(client, "camille@ml.example.org")
        assert (await sign_in(client, "camille@ml.example.org")).status == 303
    with capture_logs() as logs:
        async with ClientSession(timeout=ClientTimeout(total=60),
                                 cookie_jar=client.session.cookie_jar) as http:
            response = await http.get(f"http://127.0.0.1:{client.port}{path}",
                                      headers=headers)
            assert response.status == 200
            assert await response.content.readline() == b"retry: 3000\n"
            await asyncio.sleep(1.5)  # the server writes until the sockets are full, and waits
            response.close()  # unread data: the connection is reset

            def done() -> bool:
                return bool(ended.records) or any(
                    e == "unhandled_error" for _, e in errors.records)

            await wait_until(done, 20, "the server to see the stream closed")
            await asyncio.sleep(0.5)
    assert [e for _, e in errors.records] == [], "a closed stream was logged as an error"
    assert ended.records == [("debug", "inbox_stream_closed")], "logged once, at debug"
    assert [(e["log_level"], e["event"]) for e in logs
            if e["log_level"] in ("warning", "error", "critical")] == []
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
