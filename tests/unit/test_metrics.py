"""The metrics' pure parts: who may scrape, the labels a request gets, the counters read from
relays and consumers, one registry per application (never the library's global one)."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import prometheus_client
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from services.runtime import metrics
from services.runtime.settings import Settings

LOOPBACK = [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")]


def samples(m: metrics.Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for f in text_string_to_metric_families(m.scrape().decode()) for s in f.samples}


@pytest.mark.parametrize("remote, headers, allowed", [
    ("127.0.0.1", [], True),
    ("::1", [], True),
    ("::ffff:127.0.0.1", [], True),  # IPv4 on a dual-stack socket
    ("203.0.113.7", [], False),
    ("127.0.0.1", ["X-Forwarded-For"], False),  # a proxy relays someone else
    ("127.0.0.1", ["forwarded"], False),
    ("127.0.0.1", ["X-Real-IP"], False),
    (None, [], False),  # a Unix socket, say
    ("not an address", [], False),
])
def test_who_may_scrape(remote: str | None, headers: list[str], allowed: bool) -> None:
    assert metrics.allowed(remote, headers, LOOPBACK) is allowed


def test_nobody_when_no_network_is_set() -> None:
    assert not metrics.allowed("127.0.0.1", [], [])


def test_the_networks_by_default_and_as_set(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RELAIS_METRICS_NETWORKS", raising=False)
    default = Settings.model_validate({"data_dir": tmp_path}).metrics_networks
    assert metrics.allowed("127.0.0.1", [], default)
    assert metrics.allowed("::1", [], default)
    # a private address may be anyone behind a load balancer that translates addresses:
    # only when set (the chart sets the pods' network)
    assert not metrics.allowed("10.42.3.7", [], default)
    assert not metrics.allowed("198.51.100.1", [], default)
    monkeypatch.setenv("RELAIS_METRICS_NETWORKS", "10.0.0.0/8, 192.168.0.0/16")
    assert [str(n) for n in Settings.model_validate({"data_dir": tmp_path})
            .metrics_networks] == ["10.0.0.0/8", "192.168.0.0/16"]
    monkeypatch.setenv("RELAIS_METRICS_NETWORKS", "")
    assert Settings.model_validate({"data_dir": tmp_path}).metrics_networks == []


def test_each_application_has_its_own_registry() -> None:
    one, two = metrics.Metrics(LOOPBACK), metrics.Metrics(LOOPBACK)  # no duplicate error
    one.notified("email", "sent")
    assert samples(one)[("relais_notifications_total",
                         frozenset({("channel", "email"), ("outcome", "sent")}))] == 1
    assert ("relais_notifications_total",
            frozenset({("channel", "email"), ("outcome", "sent")})) not in samples(two)
    global_names = prometheus_client.generate_latest(prometheus_client.REGISTRY).decode()
    assert "relais_" not in global_names


def test_relays_and_consumers_are_read_at_scrape_time() -> None:
    m = metrics.Metrics(LOOPBACK)
    consumer = SimpleNamespace(name="referral", counts={"done": 3, "duplicate": 1, "dead": 0},
                               retries=2)
    runtime = SimpleNamespace(relays=[SimpleNamespace(schema="intake", published=5)],
                              consumers=[consumer])
    m.runtime = cast(Any, runtime)
    got = samples(m)
    assert got[("relais_outbox_published_total", frozenset({("service", "intake")}))] == 5
    assert got[("relais_events_handled_total",
                frozenset({("consumer", "referral"), ("outcome", "done")}))] == 3
    assert got[("relais_event_retries_total", frozenset({("consumer", "referral")}))] == 2
    consumer.counts["done"] += 1
    assert samples(m)[("relais_events_handled_total",
                       frozenset({("consumer", "referral"), ("outcome", "done")}))] == 4


def test_one_outbox_query_for_every_service() -> None:
    query = metrics.outbox_query(("intake", "notify"))
    assert query.count("UNION ALL") == 1
    assert '"intake".outbox' in query and '"notify".outbox' in query


def test_current_is_a_detached_set_outside_an_application() -> None:
    assert metrics.current() is metrics._UNBOUND
    metrics.current().notified("email", "sent")  # goes nowhere served, fails nothing


async def test_requests_are_counted_under_their_route_template() -> None:
    async def thing(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def broken(_request: web.Request) -> web.Response:
        raise web.HTTPConflict()

    app = web.Application(middlewares=[metrics.middleware])
    metrics.setup(app, LOOPBACK)
    app.router.add_get("/things/{id}", thing)
    app.router.add_post("/things/{id}", broken)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        assert (await client.get("/things/8d0f6e1c-1b1e-4c47-9d5a-0d2b1f0e9a11")).status == 200
        assert (await client.get("/things/2")).status == 200
        assert (await client.post("/things/3")).status == 409
        assert (await client.get("/nowhere/4")).status == 404
        assert (await client.request("PROPFIND", "/things/5")).status == 405
    got = samples(app[metrics.METRICS])
    count = "relais_http_request_duration_seconds_count"

    def n(route: str, method: str, status: str) -> float | None:
        return got.get((count, frozenset({("route", route), ("method", method),
                                          ("status", status)})))

    assert n("/things/{id}", "GET", "200") == 2
    assert n("/things/{id}", "POST", "409") == 1
    assert n(metrics.UNMATCHED, "GET", "404") == 1
    # a method Relais does not serve: no new label (the router's 405 has no route either)
    assert n(metrics.UNMATCHED, "OTHER", "405") == 1
