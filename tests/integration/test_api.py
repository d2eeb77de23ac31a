"""The HTTP contract over real HTTP and PostgreSQL: authentication, scopes, organisation
scoping, idempotency keys, RFC 9457 problems, and nothing half-written on bad input."""

from __future__ import annotations

import asyncio
import uuid

from services.runtime.app import RUNTIME
from tests.conftest import wait_until
from tests.e2e.conftest import Tokens
from tests.integration.conftest import Client

INTAKE = {"site": "qpv-etouvie", "channel": "fixed_permanence",
          "contacted_at": "2026-11-20T10:00:00+01:00", "needs": ["housing"]}


async def intake_count(client: Client) -> int:
    n: int = await client.app[RUNTIME].pool.fetchval("SELECT count(*) FROM intake.intakes")
    return n


async def test_writes_need_a_token_and_the_scope(client: Client, tokens: Tokens) -> None:
    response = await client.post("/v1/intakes", json=INTAKE)
    assert response.status == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.content_type == "application/problem+json"

    response = await client.post("/v1/intakes", json=INTAKE, headers=tokens.headers(
        "ccas", "intake:read", **{"Idempotency-Key": "k"}))
    assert response.status == 403
    assert (await response.json())["detail"] == "The access token lacks the scope 'intake:write'."
    assert await intake_count(client) == 0


async def test_the_same_key_and_body_replay_the_first_answer(client: Client,
                                                             tokens: Tokens) -> None:
    headers = tokens.headers("ccas", **{"Idempotency-Key": "visit-42"})
    first = await client.post("/v1/intakes", json=INTAKE, headers=headers)
    again = await client.post("/v1/intakes", json=INTAKE, headers=headers)
    assert first.status == again.status == 201
    assert await first.json() == await again.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert await intake_count(client) == 1
    outbox = await client.app[RUNTIME].pool.fetchval(
        "SELECT count(*) FROM intake.outbox WHERE headers::text LIKE '%intake.recorded%'")
    assert outbox == 1, "a replay emits nothing"

    other = await client.post("/v1/intakes", json=INTAKE | {"needs": ["health"]},
                              headers=headers)
    assert other.status == 422
    assert (await other.json())["title"] == "Idempotency-Key reused"
    assert await intake_count(client) == 1


async def test_a_first_contact_answers_what_is_stored(client: Client, tokens: Tokens) -> None:
    """A new person's first contact is decided before it is written (one statement, its
    answer made in Python): the answer is what the service then reads back, to the
    microsecond, in UTC; its event is written with it."""
    body = INTAKE | {"contacted_at": "2026-11-20T10:00:00.123456+01:00", "needs": ["health",
                     "employment"], "flags": ["no_housing"], "birth_year": 2004,
                     "commune": "80021", "duration_minutes": 25}
    posted = await client.post("/v1/intakes", json=body, headers=tokens.headers(
        "ccas", **{"Idempotency-Key": str(uuid.uuid4())}))
    assert posted.status == 201, await posted.text()
    answer = await posted.json()
    read = await client.get(f"/v1/intakes/{answer['id']}", headers=tokens.headers(
        "ccas", "intake:read"))
    assert read.status == 200
    assert await read.json() == answer
    assert answer["contacted_at"] == "2026-11-20T09:00:00.123456Z"
    assert await client.app[RUNTIME].pool.fetchval(
        "SELECT count(*) FROM intake.outbox WHERE headers::text LIKE '%intake.recorded%'") == 1


async def test_a_replay_wakes_no_relay(client: Client, tokens: Tokens) -> None:
    """The relay is woken (NOTIFY at commit) by a new contact, not by its replay: after a new
    key, a replay of it, then another new key, the channel saw two wake-ups (they arrive in
    commit order, so the third's arrival means the replay's would have come before it)."""
    woken: list[str] = []
    conn = await client.app[RUNTIME].pool.acquire()
    await conn.add_listener("relais_outbox_intake", lambda *args: woken.append(args[2]))
    try:
        for key in ("first", "first", "second"):
            response = await client.post("/v1/intakes", json=INTAKE, headers=tokens.headers(
                "ccas", **{"Idempotency-Key": key}))
            assert response.status == 201

        async def both() -> bool:
            return len(woken) >= 2

        await wait_until(both, 10, "the two new contacts' wake-ups")
        assert len(woken) == 2, woken
    finally:
        await conn.reset()
        await client.app[RUNTIME].pool.release(conn)


async def test_concurrent_requests_with_one_key_create_one_intake(client: Client,
                                                                  tokens: Tokens) -> None:
    headers = tokens.headers("ccas", **{"Idempotency-Key": "double-tap"})
    responses = await asyncio.gather(
        *(client.post("/v1/intakes", json=INTAKE, headers=headers) for _ in range(8))
    )
    bodies = [await r.json() for r in responses]
    assert {r.status for r in responses} == {201}
    assert len({b["id"] for b in bodies}) == 1
    assert await intake_count(client) == 1


async def test_bad_input_gets_every_invalid_field_and_writes_nothing(
    client: Client, tokens: Tokens
) -> None:
    headers = tokens.headers("ccas", **{"Idempotency-Key": str(uuid.uuid4())})
    bad = INTAKE | {"needs": ["flying"], "commune": "123", "channel": None, "extra": 1}
    response = await client.post("/v1/intakes", json=bad, headers=headers)
    assert response.status == 422
    problem = await response.json()
    assert problem["status"] == 422
    assert {e["field"] for e in problem["errors"]} == {"needs.0", "commune", "channel", "extra"}

    response = await client.post("/v1/intakes", data=b"{not json", headers=headers)
    assert response.status == 400
    assert (await response.json())["title"] == "Malformed JSON"

    no_key = tokens.headers("ccas")
    response = await client.post("/v1/intakes", json=INTAKE, headers=no_key)
    assert response.status == 400
    assert "Idempotency-Key" in (await response.json())["title"]

    unknown_person = INTAKE | {"person_id": str(uuid.uuid4())}
    response = await client.post("/v1/intakes", json=unknown_person, headers=tokens.headers(
        "ccas", **{"Idempotency-Key": "unknown-person"}))
    assert response.status == 422
    assert await intake_count(client) == 0
    keys = await client.app[RUNTIME].pool.fetchval(
        "SELECT count(*) FROM intake.idempotency_keys")
    assert keys == 0, "a refused request leaves no idempotency key behind"


async def test_another_organisations_intake_answers_404(client: Client,
                                                        tokens: Tokens) -> None:
    created = await client.post("/v1/intakes", json=INTAKE,
                                headers=tokens.headers("ccas", **{"Idempotency-Key": "a"}))
    intake_id = (await created.json())["id"]
    mine = await client.get(f"/v1/intakes/{intake_id}", headers=tokens.headers("ccas"))
    theirs = await client.get(f"/v1/intakes/{intake_id}", headers=tokens.headers("plie"))
    assert mine.status == 200
    assert theirs.status == 404
    leaked = await theirs.json()
    assert "person_id" not in leaked and "site" not in leaked
    assert (await client.get("/v1/intakes/not-a-uuid",
                             headers=tokens.headers("ccas"))).status == 404


async def test_consent_validation_is_explained(client: Client, tokens: Tokens) -> None:
    body = {"person_id": str(uuid.uuid4()), "purposes": ["referral_partner"],
            "recipients": ["ccas"], "categories": ["needs"], "notice_version": "v1",
            "method": "oral_witnessed", "captured_by": "x"}
    response = await client.post("/v1/consents", json=body, headers=tokens.headers(
        "ccas", **{"Idempotency-Key": "c"}))
    assert response.status == 422
    assert "witness" in (await response.json())["errors"][0]["message"]


async def test_health_and_readiness(client: Client) -> None:
    assert (await client.get("/healthz")).status == 200

    async def ready() -> bool:
        return (await client.get("/readyz")).status == 200

    await wait_until(ready, 30, "readiness")
    body = await (await client.get("/readyz")).json()
    assert body["transport"] == "postgres"
    unknown = await client.get("/nowhere")
    assert unknown.status == 404
    assert unknown.content_type == "application/problem+json"
