"""GET /metrics on a running Relais: a consented flow moves the figures (the request counted
under its route template, the outbox gauges per service, the events handled, the email sent),
no id reaches a label, and a caller outside RELAIS_METRICS_NETWORKS, or behind a proxy, gets a
403 problem."""

from __future__ import annotations

import ipaddress
import re

import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.cli import SERVICE_NAMES
from services.runtime.metrics import METRICS
from services.runtime.settings import Settings
from tests.conftest import Mailbox, wait_until
from tests.e2e.conftest import Tokens
from tests.integration.conftest import Client, running
from tests.integration.test_referral import ML, consent, headers, intake, referral_of

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@pytest.fixture
def settings(settings: Settings, smtp_server: Mailbox) -> Settings:
    return settings.model_copy(update={"smtp_port": smtp_server.port})


async def scrape(client: Client) -> tuple[str, Samples]:
    response = await client.get("/metrics")
    assert response.status == 200, await response.text()
    assert response.content_type == "text/plain"
    text = await response.text()
    samples = {(s.name, frozenset(s.labels.items())): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    return text, samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def test_a_consented_flow_moves_the_metrics(client: Client, tokens: Tokens,
                                                  smtp_server: Mailbox) -> None:
    _, before = await scrape(client)
    posted = {"route": "/v1/intakes", "method": "POST", "status": "201"}
    count = "relais_http_request_duration_seconds_count"
    assert value(before, count, **posted) is None  # nothing posted yet

    met = await intake(client, tokens)
    await consent(client, tokens, met["person_id"], [ML])
    requested = await referral_of(client, tokens, met["id"], "requested")
    await smtp_server.wait_for(1)  # the Mission locale is told
    shown = await client.get(f"/v1/referrals/{requested['id']}", headers=headers(tokens, ML))
    assert shown.status == 200

    async def sent() -> bool:
        _, now = await scrape(client)
        return (value(now, "relais_notifications_total", channel="email", outcome="sent")
                or 0) >= 1

    await wait_until(sent, what="the email counted as sent")
    text, after = await scrape(client)
    assert value(after, count, **posted) == 1
    assert value(after, count, route="/v1/people/{id}/standing", method="GET",
                 status="200") is None, "the intake service, in process, asked without HTTP"
    # a route's template, never the id in the path
    assert (value(after, count, route="/v1/referrals/{id}", method="GET", status="200")
            or 0) >= 1
    assert UUID.search(text) is None, "an id in a label"
    for service in SERVICE_NAMES:
        assert value(after, "relais_outbox_unpublished", service=service) is not None, service
        oldest = value(after, "relais_outbox_oldest_unpublished_seconds", service=service)
        assert oldest is not None and oldest >= 0, service
    assert (value(after, "relais_outbox_published_total", service="intake") or 0) >= 1
    assert (value(after, "relais_events_handled_total", consumer="referral", outcome="done")
            or 0) >= 1
    assert value(after, "relais_event_retries_total", consumer="referral") == 0
    assert value(after, "relais_notifications_pending", channel="email") is not None
    assert value(after, "relais_notifications_oldest_pending_seconds",
                 channel="webhook") is not None
    assert value(after, "relais_dead_letters", consumer="notify") == 0
    assert value(after, "relais_consumer_lag", consumer="notify") is not None
    assert value(after, "relais_worker_lease_held", worker="notify.email_sender") == 1
    assert value(after, "relais_metrics_database_up") == 1


async def test_the_metrics_are_refused_outside_their_networks(settings: Settings) -> None:
    elsewhere = settings.model_copy(update={
        "metrics_networks": [ipaddress.ip_network("10.0.0.0/8")]})
    async with running(elsewhere) as client:
        refused = await client.get("/metrics")  # from 127.0.0.1
        assert refused.status == 403
        assert refused.content_type == "application/problem+json"
        assert (await refused.json())["status"] == 403
        client.app[METRICS].networks = (ipaddress.ip_network("127.0.0.0/8"),)
        assert (await client.get("/metrics")).status == 200
        # through a proxy (the ingress controller, nginx): someone else's request, even when
        # the proxy itself is on a network that may scrape
        for header in ("X-Forwarded-For", "Forwarded", "X-Real-IP"):
            relayed = await client.get("/metrics", headers={header: "127.0.0.1"})
            assert relayed.status == 403, header
            assert relayed.content_type == "application/problem+json"
        _, samples = await scrape(client)  # the refusals are counted, under the route
        assert value(samples, "relais_http_request_duration_seconds_count",
                     route="/metrics", method="GET", status="403") == 4
