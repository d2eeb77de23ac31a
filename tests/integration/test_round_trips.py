"""How many statements a request, or a consumer's handling of an event, sends to PostgreSQL
(issue #12): each is a round trip, paid in the service's CPU and the database's, at every
intake and every consent. Counted from the statement spans under the request's server span,
or the event's consumer span (the other spans of the same trace are not theirs); the reads of
the token revocation lists (auth.*, cached between refreshes), the directory (cached for five
seconds) and the rate limit's (relais_limits.*, whose tokens are leased ahead, up to ten at
once) are left out. A change
that adds a statement to one of these paths fails here: make it part of another one (a CTE, a
subquery), or raise the count with the reason."""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

from tests.conftest import SPANS, wait_until
from tests.e2e.conftest import Tokens
from tests.e2e.test_skeleton import consent_body, intake_body, post
from tests.integration.conftest import Client


def target(span: ReadableSpan) -> str:
    attributes = span.attributes or {}
    return str(attributes.get("http.target", attributes.get("url.path", "")))


def statements_under(top: ReadableSpan) -> list[str]:
    """The statements sent under `top` (a request's server span, or a consumer's span), in
    order: not those of another request or event of the same trace."""
    spans = SPANS.get_finished_spans()
    by_id = {s.context.span_id: s for s in spans if s.context is not None}

    def under_top(span: ReadableSpan) -> bool:
        parent = span.parent and by_id.get(span.parent.span_id)
        while parent is not None and parent.kind not in (SpanKind.SERVER, SpanKind.CONSUMER):
            parent = parent.parent and by_id.get(parent.parent.span_id)
        return parent is top

    return [str(statement) for s in spans
            if (statement := (s.attributes or {}).get("db.statement")) is not None
            and under_top(s) and not any(f" {cached}" in f" {statement}" for cached in (
                "auth.", "relais_limits.", "intake.directory"))]


def statements_of(path: str) -> list[str]:
    """The statements sent under the last request to `path`, in order."""
    [server] = [s for s in SPANS.get_finished_spans() if s.kind is SpanKind.SERVER
                and s.name.startswith("POST") and path in target(s)][-1:]
    return statements_under(server)


async def handled(name: str) -> list[str]:
    """The statements of a consumer's handler for an event (`name`: its span's), without
    the transaction and the inbox row around it (one per batch of events)."""
    def span() -> ReadableSpan | None:
        return next((s for s in SPANS.get_finished_spans() if s.name == name), None)

    await wait_until(span, 30, f"the span {name!r}")
    [top] = [s for s in SPANS.get_finished_spans() if s.name == name]  # handled once, no retry
    return [s for s in statements_under(top)
            if s not in ("BEGIN;", "COMMIT;") and ".inbox " not in s]


async def posted(client: Client, tokens: Tokens, path: str, body: dict[str, Any]) -> list[str]:
    SPANS.clear()
    answer = await post(client, tokens, path, body)
    await wait_until(lambda: any(s.kind is SpanKind.SERVER and path in target(s)
                                 for s in SPANS.get_finished_spans()),
                     10, f"the span of POST {path} to end")
    assert answer
    return statements_of(path)


async def test_an_intake_and_a_consent_take_few_round_trips(client: Client,
                                                            tokens: Tokens) -> None:
    await post(client, tokens, "/v1/intakes", intake_body())  # the first, with the caches
    intake = await post(client, tokens, "/v1/intakes", intake_body())
    await post(client, tokens, "/v1/consents", consent_body(intake["person_id"]))

    sent = await posted(client, tokens, "/v1/intakes", intake_body())
    # a new person's first contact, in one statement (autocommit): the key's row, the contact
    # with the person's activity and the event, written only if the key is new
    assert [s.split()[0] for s in sent] == ["WITH"], "\n".join(sent)
    assert all(t in sent[0] for t in ("idempotency_keys", "intake.intakes", "outbox"))

    intake = await post(client, tokens, "/v1/intakes", intake_body())
    sent = await posted(client, tokens, "/v1/consents", consent_body(intake["person_id"]))
    # the person's standing (who met them, their consents, their restriction); then, in one
    # transaction: the restriction and the notice, the consent with its history line, the
    # key's row with the event, the trail's entry (appended at the commit: its lock, its
    # head and the entry)
    assert [s.split()[0] for s in sent] == [
        "SELECT", "BEGIN;", "SELECT", "WITH", "WITH", "INSERT", "COMMIT;"
    ], "\n".join(sent)
    assert "consent.trail_pending" in sent[-2]  # appended at the commit, under its lock
    assert "intake.intakes" in sent[0] and "intake.restrictions" in sent[0]


async def test_the_consumers_hand_off_in_few_statements(client: Client, tokens: Tokens) -> None:
    """The referral and notify consumers' work for a consented flow, each handler's statements
    (the batch's transaction and inbox rows aside)."""
    SPANS.clear()
    intake = await post(client, tokens, "/v1/intakes", intake_body())
    routed = await handled("referral process fr.relais.intake.recorded.v1")
    # the contact with the partners it may go to; the referral already open to the same
    # partner, if any; the new referral with its history and event; the person's referrals
    # with their consents (settle)
    assert [s.split()[0] for s in routed] == ["WITH", "SELECT", "WITH", "SELECT"], \
        "\n".join(routed)

    SPANS.clear()
    await post(client, tokens, "/v1/consents", consent_body(intake["person_id"]))
    granted = await handled("referral process fr.relais.consent.granted.v1")
    # the consent; the person's referrals with their consents; the hand-off (status, history,
    # timers and event)
    assert [s.split()[0] for s in granted] == ["INSERT", "SELECT", "WITH"], "\n".join(granted)
    told = await handled("notify process fr.relais.referral.requested.v1")
    # the organisations' names; the recipient with its webhook endpoints; its email and its
    # inbox notification, each with its wake-up; the inbox one's notification.sent event
    assert [s.split()[0] for s in told] == ["SELECT", "SELECT", "WITH", "WITH", "WITH"], \
        "\n".join(told)
