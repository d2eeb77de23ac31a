"""The walking skeleton end to end, on both transports, over real HTTP, PostgreSQL, Kafka and
SMTP: intake -> referral awaiting consent -> consent -> referral requested -> one email ->
notification.sent."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from aiohttp.test_utils import TestClient
from opentelemetry.trace import format_trace_id

from services.runtime.app import RUNTIME
from tests.conftest import SPANS, Mailbox, wait_until
from tests.e2e.conftest import Tokens

TEAM = "equipe-aller-vers"
MISSION_LOCALE_EMAIL = "accueil@mission-locale.example.org"
Client = TestClient[Any, Any]


def intake_body(person_id: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "site": "qpv-etouvie", "channel": "mobile_permanence",
        "contacted_at": "2026-11-20T10:00:00+01:00", "needs": ["employment"],
        "age_bracket": "18_25", "commune": "80021",
    }
    if person_id:
        body["person_id"] = person_id
    return body


def consent_body(person_id: str, recipient: str = "mission-locale") -> dict[str, Any]:
    return {
        "person_id": person_id, "purposes": ["referral_partner"], "recipients": [recipient],
        "categories": ["situation", "needs"], "notice_version": "2026-01",
        "method": "signed_screen", "captured_by": "conseillere-camion",
    }


async def post(client: Client, tokens: Tokens, path: str, body: dict[str, Any]) -> Any:
    headers = tokens.headers(TEAM, **{"Idempotency-Key": str(uuid.uuid4())})
    response = await client.post(path, json=body, headers=headers)
    assert response.status == 201, await response.text()
    return await response.json()


async def referrals_of(client: Client, tokens: Tokens, intake_id: str) -> list[Any]:
    response = await client.get(f"/v1/referrals?intake_id={intake_id}",
                                headers=tokens.headers(TEAM))
    assert response.status == 200
    items: list[Any] = (await response.json())["items"]
    return items


async def wait_for_referral(client: Client, tokens: Tokens, intake_id: str,
                            status: str) -> Any:
    found: list[Any] = []

    async def has_it() -> bool:
        found[:] = [r for r in await referrals_of(client, tokens, intake_id)
                    if r["status"] == status]
        return bool(found)

    await wait_until(has_it, 60, f"a referral {status} for intake {intake_id}")
    return found[0]


async def test_each_consented_intake_gives_exactly_one_email(
    client: Client, tokens: Tokens, smtp_server: Mailbox
) -> None:
    intakes = [await post(client, tokens, "/v1/intakes", intake_body()) for _ in range(5)]
    for intake in intakes:
        await wait_for_referral(client, tokens, intake["id"], "awaiting_consent")
    await asyncio.sleep(0.5)
    assert smtp_server.messages == [], "no hand-off, and no email, without consent"

    for intake in intakes:
        await post(client, tokens, "/v1/consents", consent_body(intake["person_id"]))
    messages = await smtp_server.wait_for(5)
    await asyncio.sleep(1.5)  # anything sent twice would show up now
    assert len(smtp_server.messages) == 5
    assert {rcpts[0] for _, rcpts in smtp_server.envelopes} == {MISSION_LOCALE_EMAIL}
    assert len({m["Message-ID"] for m in messages}) == 5
    for intake, message in zip(intakes, messages, strict=False):
        body = message.get_payload(decode=True).decode()  # type: ignore[union-attr]
        assert "Nouvelle orientation" in message["Subject"]
        assert "consentement" in body
        assert intake["person_id"] not in body, "no personal data in messages"

    pool = client.app[RUNTIME].pool
    for intake in intakes:
        referral = await wait_for_referral(client, tokens, intake["id"], "requested")
        assert referral["target"] == "mission-locale"
        assert referral["explanation"]["rule"] == "best_partner_by_needs"
        response = await client.get(f"/v1/notifications?referral_id={referral['id']}",
                                    headers=tokens.headers("mission-locale"))
        by_channel = {n["channel"]: n for n in (await response.json())["items"]}
        assert by_channel["email"]["status"] == "delivered"  # SMTP took it for every address
        assert by_channel["inbox"]["status"] == "sent"  # until the partner reads its inbox

    async def notification_events_published() -> bool:
        n = await pool.fetchval(
            "SELECT count(*) FROM notify.outbox WHERE topic = 'relais.notification'"
            " AND published_at IS NOT NULL"
        )
        return bool(n == 15)

    await wait_until(notification_events_published, 30,
                     "10 notification.sent (email, inbox) and 5 delivered (email) published")


async def test_a_consent_given_before_the_intake_opens_the_gate_all_the_same(
    client: Client, tokens: Tokens, smtp_server: Mailbox
) -> None:
    first = await post(client, tokens, "/v1/intakes", intake_body())
    person = first["person_id"]
    await wait_for_referral(client, tokens, first["id"], "awaiting_consent")

    await post(client, tokens, "/v1/consents", consent_body(person) | {
        "recipients": ["mission-locale", "ccas"]})
    await smtp_server.wait_for(1)
    # a new need at the next visit: a new referral (to the CCAS), which the consent given
    # before it already covers (the same need again would join the open referral instead)
    second = await post(client, tokens, "/v1/intakes", intake_body(person) | {
        "needs": ["housing"]})
    assert second["visit_number"] == 2 and second["returning"] is True
    referral = await wait_for_referral(client, tokens, second["id"], "requested")
    assert referral["target"] == "ccas" and referral["id"] != (
        await wait_for_referral(client, tokens, first["id"], "requested"))["id"]
    await smtp_server.wait_for(2)
    await asyncio.sleep(1.0)
    assert len(smtp_server.messages) == 2
    assert any(referral["id"][:8] in m["Subject"] for m in smtp_server.messages)


async def test_a_consent_for_another_recipient_hands_nothing_off(
    client: Client, tokens: Tokens, smtp_server: Mailbox
) -> None:
    intake = await post(client, tokens, "/v1/intakes", intake_body())
    consent = await post(client, tokens, "/v1/consents",
                         consent_body(intake["person_id"], "ccas"))
    await wait_for_referral(client, tokens, intake["id"], "awaiting_consent")
    pool = client.app[RUNTIME].pool

    async def consent_handled() -> bool:  # a hand-off would be in the same transaction
        return bool(await pool.fetchval("SELECT count(*) FROM referral.consents"
                                        " WHERE consent_id = $1", uuid.UUID(consent["id"])))

    await wait_until(consent_handled, 60, "the referral service to handle the consent")
    await asyncio.sleep(1.0)  # what a hand-off would have sent
    [referral] = await referrals_of(client, tokens, intake["id"])
    assert referral["status"] == "awaiting_consent"
    assert smtp_server.messages == []


async def test_one_trace_follows_the_intake_from_http_to_the_consumers(
    client: Client, tokens: Tokens, smtp_server: Mailbox
) -> None:
    SPANS.clear()
    intake = await post(client, tokens, "/v1/intakes", intake_body())
    await wait_for_referral(client, tokens, intake["id"], "awaiting_consent")
    consumer_span = "referral process fr.relais.intake.recorded.v1"
    # the span ends just after the transaction whose result we saw commits
    await wait_until(lambda: any(s.name == consumer_span for s in SPANS.get_finished_spans()),
                     10, "the consumer's span to end")
    spans = SPANS.get_finished_spans()
    [http] = [s for s in spans if s.kind.name == "SERVER" and s.name.startswith("POST")
              and s.attributes and "/v1/intakes" in str(s.attributes.get("http.target",
                                                          s.attributes.get("url.path", "")))]
    assert http.context is not None
    trace_id = format_trace_id(http.context.trace_id)
    consumer_spans = [s for s in spans if s.name == consumer_span]
    assert consumer_spans, [s.name for s in spans]
    assert any(s.context is not None and format_trace_id(s.context.trace_id) == trace_id
               for s in consumer_spans)
