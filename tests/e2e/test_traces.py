"""Issue #18, point 3: one intake is one trace, from the HTTP request through each outbox
relay's publish and each consumer, on both transports; the plain W3C `traceparent` header of
every record is that trace (what a partner's standard Kafka instrumentation follows), the same
as the CloudEvent's `ce_traceparent`; each span names its own service. The spans also go
through the real OTLP/HTTP exporter to a receiver here, grouped by service."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import cast

from aiohttp import web
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.trace import SpanKind, format_span_id, format_trace_id

from deploy.kafka.broker import free_port
from services.runtime.app import RUNTIME
from services.runtime.settings import Settings
from services.runtime.transport import ReadableTransport
from tests.conftest import SPANS, Mailbox, wait_until
from tests.e2e.conftest import Tokens
from tests.e2e.test_skeleton import (
    Client,
    consent_body,
    intake_body,
    post,
    wait_for_referral,
)

Headers = Sequence[tuple[str, bytes]]


def service_of(span: ReadableSpan) -> object:
    return span.resource.attributes.get("service.name")


def header(headers: Headers, name: str) -> list[str]:
    return [v.decode() for n, v in headers if n == name]


def trace_of(traceparent: str) -> str:
    return traceparent.split("-")[1]


async def records_on_the_broker(bootstrap: str, topic: str) -> list[Headers]:
    """The headers of every record of `topic`, read as any Kafka client would: no group,
    every partition assigned and read from its beginning."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [described] = await admin.describe_topics([topic])
    finally:
        await admin.close()
    tps = [TopicPartition(topic, p["partition"]) for p in described["partitions"]]
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                              enable_auto_commit=False)
    await reader.start()
    try:
        reader.assign(tps)
        await reader.seek_to_beginning(*tps)
        ends = await reader.end_offsets(tps)
        found: list[Headers] = []
        left = set(tps)
        while left:
            for batch in (await reader.getmany(timeout_ms=500)).values():
                found += [tuple((n, v or b"") for n, v in r.headers) for r in batch]
            left = {tp for tp in left if await reader.position(tp) < ends[tp]}
    finally:
        await reader.stop()
    return found


async def otlp_receiver_gets(spans: Sequence[ReadableSpan]) -> list[ExportTraceServiceRequest]:
    """The real OTLP/HTTP exporter sends `spans` to a receiver listening here."""
    received: list[ExportTraceServiceRequest] = []

    async def traces(request: web.Request) -> web.Response:
        assert request.content_type == "application/x-protobuf"
        message = ExportTraceServiceRequest()
        message.ParseFromString(await request.read())
        received.append(message)
        return web.Response(body=b"", content_type="application/x-protobuf")

    app = web.Application()
    app.router.add_post("/v1/traces", traces)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        exporter = OTLPSpanExporter(endpoint=f"http://127.0.0.1:{port}/v1/traces")
        result = await asyncio.to_thread(exporter.export, spans)
        assert result is SpanExportResult.SUCCESS
    finally:
        await runner.cleanup()
    return received


async def test_one_intake_is_one_trace_across_the_bus(
    client: Client, tokens: Tokens, settings: Settings, smtp_server: Mailbox
) -> None:
    # a person met once, who then consents to the CCAS: their next intake with a housing
    # need is handed off at once, all in the trace of that one request
    first = await post(client, tokens, "/v1/intakes", intake_body())
    await wait_for_referral(client, tokens, first["id"], "awaiting_consent")
    await post(client, tokens, "/v1/consents", consent_body(first["person_id"]) | {
        "recipients": ["mission-locale", "ccas"]})
    await smtp_server.wait_for(1)
    await asyncio.sleep(1.0)  # what the first two requests set off has ended
    SPANS.clear()
    second = await post(client, tokens, "/v1/intakes", intake_body(first["person_id"]) | {
        "needs": ["housing"]})
    await wait_for_referral(client, tokens, second["id"], "requested")

    def notified() -> list[ReadableSpan]:
        return [s for s in SPANS.get_finished_spans() if s.name.startswith(
            "notify process fr.relais.referral.")]

    await wait_until(notified, 20, "the notify consumer's span of the referral")

    def intake_event_handled_everywhere() -> bool:  # (each consumer at its own pace)
        names = {s.name for s in SPANS.get_finished_spans()}
        return all(f"{c} process fr.relais.intake.recorded.v1" in names
                   for c in ("consent", "notify", "referral"))

    await wait_until(intake_event_handled_everywhere, 20, "every consumer's span of the intake")
    spans = SPANS.get_finished_spans()
    [http] = [s for s in spans if s.kind is SpanKind.SERVER and s.name.startswith("POST")
              and s.attributes and "/v1/intakes" in str(s.attributes.get(
                  "http.target", s.attributes.get("url.path", "")))]
    assert http.context is not None
    trace_id = http.context.trace_id
    by_id = {s.context.span_id: s for s in spans
             if s.context is not None and s.context.trace_id == trace_id}

    def chain(span: ReadableSpan) -> list[ReadableSpan]:
        """The span and its ancestors, up to the root of its trace."""
        found = [span]
        while found[-1].parent is not None:
            parent = found[-1].parent
            assert parent.trace_id == trace_id, f"{found[-1].name} left the trace"
            assert parent.span_id in by_id, f"the parent of {found[-1].name} is not here"
            found.append(by_id[parent.span_id])
        return found

    # the notify consumer of the referral event, up to the HTTP request: the referral relay's
    # publish, the referral consumer of the intake event, the intake relay's publish
    ours = [s for s in notified() if s.context and s.context.trace_id == trace_id]
    assert ours, [s.name for s in spans]
    notify = ours[-1]
    path = [(s.name, s.kind, service_of(s)) for s in chain(notify)]
    links = [p for p in path if p[1] is not SpanKind.INTERNAL and p[1] is not SpanKind.CLIENT]
    assert links[0][:2] == (notify.name, SpanKind.CONSUMER)
    assert links[0][2] == "relais-notify", path
    assert links[1] == ("publish relais.referral", SpanKind.PRODUCER, "relais-referral"), path
    assert links[2][0] == "referral process fr.relais.intake.recorded.v1", path
    assert links[2][1:] == (SpanKind.CONSUMER, "relais-referral"), path
    assert links[3] == ("publish relais.intake", SpanKind.PRODUCER, "relais-intake"), path
    assert links[-1][:2] == (http.name, SpanKind.SERVER), path
    assert http in chain(notify)

    # every publish and consumer span of the intake's events is in that trace
    intake_events = [s for s in spans if s.name.endswith("process fr.relais.intake.recorded.v1")
                     or s.name == "publish relais.intake"]
    assert {service_of(s) for s in intake_events} == {
        "relais-intake", "relais-referral", "relais-notify", "relais-consent"}
    assert all(s.context and s.context.trace_id == trace_id for s in intake_events)
    publishes = {format_span_id(s.context.span_id) for s in by_id.values()
                 if s.context is not None and s.kind is SpanKind.PRODUCER}

    # the records as stored on the bus: the plain `traceparent` is the publish span, and
    # `ce_traceparent` the same
    runtime = client.app[RUNTIME]
    for topic in ("relais.intake", "relais.referral"):
        if settings.transport == "kafka":
            assert settings.kafka_bootstrap_servers
            records = await records_on_the_broker(settings.kafka_bootstrap_servers,
                                                  settings.kafka_namespace + topic)
        else:
            transport = cast(ReadableTransport, runtime.transport)
            records = [m.headers for m in await transport.read_topic(topic)]
        in_trace = [r for r in records
                    if any(trace_of(v) == format_trace_id(trace_id)
                           for v in header(r, "ce_traceparent") + header(r, "traceparent"))]
        assert in_trace, f"no record of {topic} in the intake's trace"
        for headers in in_trace:
            [plain] = header(headers, "traceparent")
            [cloudevent] = header(headers, "ce_traceparent")
            assert plain == cloudevent
            assert trace_of(plain) == format_trace_id(trace_id)
            assert plain.split("-")[2] in publishes

    # the real exporter groups them by service on the wire
    received = await otlp_receiver_gets(list(by_id.values()))
    names: dict[str, set[str]] = {}
    for message in received:
        for resource_spans in message.resource_spans:
            service = {a.key: a.value.string_value
                       for a in resource_spans.resource.attributes}["service.name"]
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    assert span.trace_id.hex() == format_trace_id(trace_id)
                    names.setdefault(service, set()).add(span.name)
    assert "publish relais.intake" in names["relais-intake"]
    assert {"publish relais.referral", "referral process fr.relais.intake.recorded.v1"
            } <= names["relais-referral"]
    assert notify.name in names["relais-notify"]
