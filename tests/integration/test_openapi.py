"""The published OpenAPI document: it matches the committed copy, and every operation's
request example works as it is against the demo directory."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from schemas.api import IntakeIn
from schemas.events import IntakeRecordedV1
from schemas.vocab import Purpose, ReferralStatus, RejectReason
from services.auth import domain, store
from services.intake import api as intake_api
from services.intake import store as intake_store
from services.referral import handlers, lifecycle, routing
from services.referral import store as referral_store
from services.runtime.app import RUNTIME
from tests.e2e.conftest import Tokens
from tests.integration.conftest import Client
from tests.integration.test_oauth import basic

COMMITTED = Path(__file__).resolve().parents[2] / "schemas" / "openapi.json"
ALL_SCOPES = " ".join(domain.SCOPES)


async def test_the_published_document_is_the_committed_one(client: Client) -> None:
    served = await (await client.get("/openapi.json")).json()
    assert served["openapi"] == "3.1.0"
    committed = json.loads(COMMITTED.read_text())
    assert served == committed, "the API changed: run `make schemas` and commit the result"


async def example_intake(client: Client, intake_id: str) -> None:
    """The example refers to an intake of the caller: the one the intake service would have
    announced with this id (its event, handled as the referral service handles it)."""
    intake = IntakeRecordedV1(
        intake_id=uuid.UUID(intake_id), person_id=uuid.uuid4(), org="equipe-aller-vers",
        site="qpv-etouvie", channel="mobile_permanence", contacted_at=datetime.now(UTC),
        needs=["housing"], visit_number=1, returning=False)
    async with client.app[RUNTIME].pool.acquire() as conn, conn.transaction():
        await handlers.on_intake(conn, intake, routing.load_rules(), datetime.now(UTC))


async def example_person(client: Client, person_id: str) -> None:
    """The example refers to a person the caller met: the intake it recorded for them."""
    body = IntakeIn.model_validate({"site": "qpv-etouvie", "channel": "mobile_permanence",
                                    "contacted_at": datetime.now(UTC), "needs": ["housing"]})
    async with client.app[RUNTIME].pool.acquire() as conn:
        await intake_store.insert_intake(conn, intake_api.intake_values(
            "equipe-aller-vers", uuid.UUID(person_id), "qpv-etouvie", body, 1, None, "met"))


async def example_refused(client: Client, referral_id: str) -> None:
    """The example of `forward` names a referral the outreach team sent for an intake and
    that its partner refused: Relais proposed the next candidate with places."""
    intake_id, person_id, now = uuid.uuid4(), uuid.uuid4(), datetime.now(UTC)
    intake = IntakeRecordedV1(
        intake_id=intake_id, person_id=person_id, org="equipe-aller-vers",
        site="qpv-etouvie", channel="mobile_permanence", contacted_at=now,
        needs=["employment"], visit_number=1, returning=False)
    async with client.app[RUNTIME].pool.acquire() as conn, conn.transaction():
        await handlers.on_intake(conn, intake, routing.load_rules(), now)
        await handlers.create(conn, uuid.UUID(referral_id), person_id, intake_id,
                              "equipe-aller-vers", "asso-boussole", Purpose.referral_partner,
                              {"rule": "manual", "candidates": []}, now, origin="manual")
        row = await referral_store.lock_referral(conn, uuid.UUID(referral_id))
        await handlers.move(conn, row, ReferralStatus.rejected, "asso-boussole", "reject",
                            now, answer=lifecycle.Answer(reason=RejectReason.no_place),
                            proposal=await handlers.next_candidate(conn, row))


def operations() -> list[tuple[str, str, dict[str, Any]]]:
    document = json.loads(COMMITTED.read_text())
    return [(method.upper(), path, op) for path, item in document["paths"].items()
            for method, op in item.items()]


PEOPLE_RIGHTS = ("/v1/people/{id}/export", "/v1/people/{id}/identity",
                 "/v1/people/{id}/restriction")
"""Their examples name a person the caller met (issue #14: the officer's operations)."""


@pytest.mark.parametrize("method, path, op", operations(),
                         ids=[f"{m} {p}" for m, p, _ in operations()])
async def test_every_example_works_against_the_demo_directory(
    client: Client, tokens: Tokens, method: str, path: str, op: dict[str, Any]
) -> None:
    template = path
    for parameter in op.get("parameters", []):
        if parameter["in"] == "path":
            path = path.replace("{" + parameter["name"] + "}", parameter["example"])
    query = {p["name"]: str(p["example"]) for p in op.get("parameters", [])
             if p["in"] == "query" and "example" in p}
    headers = tokens.headers("equipe-aller-vers", ALL_SCOPES,
                             **{"Idempotency-Key": str(uuid.uuid4())})
    kwargs: dict[str, Any] = {"params": query, "headers": headers}
    body = op.get("requestBody", {}).get("content", {})
    if "application/json" in body:
        assert "example" in body["application/json"], f"{method} {path} has no example"
        kwargs["json"] = body["application/json"]["example"]
    elif "application/x-www-form-urlencoded" in body:
        secret = domain.new_secret()
        await store.insert_client(client.app[RUNTIME].pool, "tablette", domain.hash_secret(
            secret), "equipe-aller-vers", "tablette", ALL_SCOPES.split())
        kwargs["data"] = body["application/x-www-form-urlencoded"]["example"]
        kwargs["headers"] = {"Authorization": basic("tablette", secret)}
    if (method, path) == ("POST", "/v1/referrals"):
        await example_intake(client, kwargs["json"]["intake_id"])
    if (method, path) == ("POST", "/v1/consents"):
        await example_person(client, kwargs["json"]["person_id"])
    if template == "/v1/referrals/{id}/forward":
        await example_refused(client, path.split("/")[3])
    if template.startswith("/v1/people/{id}/evidence"):  # a person met, with a signature
        await example_person(client, intake_api.EXAMPLE_ID)
        await client.post(f"/v1/people/{intake_api.EXAMPLE_ID}/evidence", headers=headers,
                          json={"kind": "signature", "media_type": "image/png",
                                "content": intake_api.EXAMPLE_PNG})
    if template in PEOPLE_RIGHTS:  # a person met
        await example_person(client, intake_api.EXAMPLE_ID)
    response = await client.request(method, path, **kwargs)
    assert str(response.status) in op["responses"], (response.status, await response.text())
    creates = method in ("POST", "PUT") and not any(p["in"] == "path"
                                                    for p in op.get("parameters", []))
    if creates or template.startswith("/v1/people/{id}/evidence") \
            or template == "/v1/referrals/{id}/forward" or template in PEOPLE_RIGHTS:
        assert 200 <= response.status < 300, await response.text()  # works as it is
