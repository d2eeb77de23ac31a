"""Who is told what, in French and without personal data; stable notification ids; Standard
Webhooks signatures (checked with the `standardwebhooks` library); the retry schedule; the
refusal of private addresses."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from standardwebhooks.webhooks import Webhook

from schemas import events as ev
from services.notify import domain

NAMES = {"equipe-aller-vers": "Le Camion", "mission-locale": "Mission locale",
         "coordination": "Coordination"}
BASE = "https://relais.test"
DEADLINE = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


def referral(**extra: Any) -> dict[str, Any]:
    return {"referral_id": str(uuid.uuid4()), "person_id": str(uuid.uuid4()),
            "intake_id": str(uuid.uuid4()), "sender_org": "equipe-aller-vers",
            "target": "mission-locale", "purpose": "referral_partner"} | extra


def one(event_type: str, data: dict[str, Any]) -> domain.Message:
    [message] = domain.messages(event_type, data, NAMES, BASE)
    assert data["person_id"] not in message.subject + message.body + str(message.facts)
    assert f"{BASE}/orientations/{data['referral_id']}" in message.body
    return message


def test_each_event_tells_the_right_organisation_in_french() -> None:
    new = one(ev.REFERRAL_REQUESTED, referral(consent_id=str(uuid.uuid4())))
    assert (new.kind, new.recipient_org) == (domain.Kind.new_referral, "mission-locale")
    assert new.subject.startswith("[Relais] Nouvelle orientation")
    assert "consentement explicite" in new.body and "Le Camion" in new.body

    answered = one(ev.REFERRAL_STATUS_CHANGED, referral(
        from_status="received", status="rejected", actor_org="mission-locale",
        action="reject", reason="no_place", at=DEADLINE.isoformat()))
    assert (answered.kind, answered.recipient_org) == (domain.Kind.answered,
                                                       "equipe-aller-vers")
    assert "refusée" in answered.subject and "pas de place disponible" in answered.body

    reminder = one(ev.REFERRAL_REMINDER_DUE, referral(timer="deadline",
                                                      deadline=DEADLINE.isoformat()))
    assert reminder.recipient_org == "mission-locale" and "26/11/2026" in reminder.body
    escalation = one(ev.REFERRAL_ESCALATED, referral(coordinator="coordination",
                                                     deadline=DEADLINE.isoformat()))
    assert escalation.recipient_org == "coordination"
    stop = one(ev.REFERRAL_STOP_PROCESSING, referral(cause="consent_withdrawn"))
    assert stop.recipient_org == "mission-locale"
    assert "arrêter" in stop.body and "retiré" in stop.subject
    # a cancellation by the consent gate is told by the stop message, not twice
    assert domain.messages(ev.REFERRAL_STATUS_CHANGED, referral(
        from_status="requested", status="cancelled", actor_org="relais", action="cancel",
        cause="consent_withdrawn", at=DEADLINE.isoformat()), NAMES, BASE) == []
    # a referral cancelled before any consent (the person refused) was never the target's:
    # it is told nothing (it would learn of a person it may not know of)
    assert domain.messages(ev.REFERRAL_STATUS_CHANGED, referral(
        from_status="awaiting_consent", status="cancelled", actor_org="equipe-aller-vers",
        action="cancel", at=DEADLINE.isoformat()), NAMES, BASE) == []
    told = domain.messages(ev.REFERRAL_STATUS_CHANGED, referral(
        from_status="requested", status="cancelled", actor_org="equipe-aller-vers",
        action="cancel", at=DEADLINE.isoformat()), NAMES, BASE)
    assert [m.kind for m in told] == [domain.Kind.cancelled]
    assert domain.messages(ev.REFERRAL_CREATED, referral(status="awaiting_consent",
                                                         explanation={}), NAMES, BASE) == []
    # the handler skips the other types before any query: none of them makes a message
    for event_type in set(ev.EVENT_MODELS) - domain.TOLD:
        assert domain.messages(event_type, {}, NAMES, BASE) == []


def test_an_event_recipient_and_channel_make_one_stable_notification_id() -> None:
    first = domain.notification_id("event-1", "mission-locale", "email")
    assert first == domain.notification_id("event-1", "mission-locale", "email")
    assert first != domain.notification_id("event-2", "mission-locale", "email")
    assert first != domain.notification_id("event-1", "mission-locale", "inbox")
    endpoint = uuid.uuid4()
    assert domain.notification_id("event-1", "mission-locale", "webhook", endpoint) != \
        domain.notification_id("event-1", "mission-locale", "webhook", uuid.uuid4())
    msg = domain.email(first, "from@x.org", ["a@y.org", "b@y.org"], "Sujet", "Corps")
    assert msg["Message-ID"] == f"<{first}@relais.notify>" and msg["To"] == "a@y.org, b@y.org"


def test_signatures_follow_standard_webhooks() -> None:
    secret = domain.new_secret()
    body = b'{"type":"referral.new_referral","data":{}}'
    stamp = int(datetime.now(UTC).timestamp())
    signature = domain.sign(secret, "msg_1", stamp, body)
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(stamp),
               "webhook-signature": signature}
    assert Webhook(secret).verify(body, headers) == {"type": "referral.new_referral",
                                                     "data": {}}
    assert domain.sign(domain.new_secret(), "msg_1", stamp, body) != signature


def test_retries_last_more_than_a_day_with_jitter_then_dead() -> None:
    rng = random.Random(7)
    waits = []
    attempt = 1
    while (wait := domain.retry_in(attempt, rng)) is not None:
        waits.append(wait)
        attempt += 1
    assert len(waits) == len(domain.RETRY_SCHEDULE)
    assert timedelta(seconds=sum(waits)) > timedelta(hours=24)
    assert all(0.8 * b <= w <= 1.2 * b for w, b in zip(waits, domain.RETRY_SCHEDULE,
                                                          strict=True))
    assert domain.retry_in(1, random.Random(1)) != domain.retry_in(1, random.Random(2))


def test_private_addresses_are_refused_unless_allowed() -> None:
    private = ["127.0.0.1", "10.1.2.3", "192.168.1.1", "169.254.169.254", "::1", "fd00::1",
               "::ffff:127.0.0.1", "0.0.0.0"]
    assert domain.refused_addresses(private, []) == private
    assert domain.refused_addresses(["93.184.215.14", "2606:4700::1111"], []) == []
    assert domain.refused_addresses(["127.0.0.1", "10.1.2.3"], ["127.0.0.0/8"]) == [
        "10.1.2.3"]
