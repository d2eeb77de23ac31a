"""Traces never carry a secret address: no span for a magic link's or an invitation's page."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from opentelemetry.instrumentation import aiohttp_server
from opentelemetry.instrumentation.utils import suppress_http_instrumentation

from services.runtime import telemetry
from services.runtime.telemetry import configure_tracing, current_traceparent, traces_statements


def test_the_pages_whose_address_is_a_secret_are_not_traced() -> None:
    configure_tracing()
    excluded = aiohttp_server._excluded_urls
    assert excluded is not None
    assert excluded.url_disabled("/lien/AbCdEf0123")
    assert excluded.url_disabled("/invitation/xyz")
    assert not excluded.url_disabled("/orientations/4c8e")
    assert not excluded.url_disabled("/v1/referrals")


def test_statements_are_traced_when_traces_leave_the_process(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    assert not traces_statements()
    assert traces_statements(True)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    assert traces_statements()
    assert not traces_statements(False)


async def test_the_light_server_span_carries_the_caller_s_trace() -> None:
    """Without the instrumentation (traces not exported), a request still runs in a span of
    the caller's trace: its id goes into the logs and the events' traceparent."""
    async def handler(_request: web.Request) -> web.Response:
        return web.json_response({"traceparent": current_traceparent()})

    app = web.Application(middlewares=[telemetry._server_span])
    app.router.add_get("/", handler)
    caller = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    async with TestClient(TestServer(app)) as client:
        with suppress_http_instrumentation():  # (the client's would send a trace of its own)
            followed = await (await client.get("/", headers={"traceparent": caller})).json()
            alone = await (await client.get("/")).json()
    trace_id, parent = caller.split("-")[1:3]
    assert followed["traceparent"].split("-")[1] == trace_id
    assert followed["traceparent"].split("-")[2] != parent, "a span of its own in that trace"
    assert alone["traceparent"].split("-")[1] not in (trace_id, "0" * 32), "a trace of its own"


def test_spans_nobody_exports_are_not_recorded_but_keep_their_trace() -> None:
    """No OTLP endpoint: the spans are not recorded, but their ids are made and a child
    (an outbox record's, a consumer's) stays in its parent's trace; a caller's sampled
    trace is recorded. An endpoint or OTEL_TRACES_SAMPLER: the SDK's default."""
    from opentelemetry.sdk.trace import TracerProvider

    assert telemetry.default_sampler({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}) is None
    assert telemetry.default_sampler({"OTEL_TRACES_SAMPLER": "always_on"}) is None
    tracer = TracerProvider(sampler=telemetry.default_sampler({})).get_tracer("t")
    with tracer.start_as_current_span("request") as root:
        traceparent = current_traceparent()
        assert not root.is_recording()
    assert traceparent is not None
    assert traceparent.split("-")[1] == format(root.get_span_context().trace_id, "032x")
    child = tracer.start_span("publish", context=telemetry.context_from(traceparent))
    assert not child.is_recording()
    assert child.get_span_context().trace_id == root.get_span_context().trace_id
    sampled = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    assert tracer.start_span("c", context=telemetry.context_from(sampled)).is_recording()
