"""OpenTelemetry: traces follow one intake across HTTP, the outbox, the transport and the
consumers. The W3C `traceparent` is stored with each outbox row and carried in the event."""

from __future__ import annotations

import os

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

_configured = False
EXCLUDED_URLS = "OTEL_PYTHON_AIOHTTP_SERVER_EXCLUDED_URLS"
SECRET_PATHS = ("^/lien/", "^/invitation/", "^/mon-accord/", "^/signalement/")


def configure_tracing(service_name: str = "relais") -> None:
    """Install a tracer provider (OTLP export when OTEL_EXPORTER_OTLP_ENDPOINT is set) and the
    asyncpg and aiokafka instrumentations. Idempotent."""
    global _configured
    if _configured:
        return
    _configured = True
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
        if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        trace.set_tracer_provider(provider)
    from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
    from opentelemetry.instrumentation.aiohttp_server import AioHttpServerInstrumentor
    from opentelemetry.instrumentation.aiokafka import AIOKafkaInstrumentor
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

    # No span for the pages whose address is a secret (a magic link, an invitation): their
    # URL would carry it to the collector. Read when instrumenting, added to the operator's.
    own = os.environ.get(EXCLUDED_URLS, "")
    os.environ[EXCLUDED_URLS] = ",".join(filter(None, [own, *SECRET_PATHS]))
    # The server instrumentor adds its middleware to every web.Application created after this.
    AioHttpServerInstrumentor().instrument()
    AioHttpClientInstrumentor().instrument()
    AsyncPGInstrumentor().instrument()  # type: ignore[no-untyped-call]
    AIOKafkaInstrumentor().instrument()


def current_traceparent() -> str | None:
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent")


def context_from(traceparent: str | None) -> Context:
    return propagate.extract({"traceparent": traceparent} if traceparent else {})


tracer = trace.get_tracer("relais")
