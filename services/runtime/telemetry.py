"""OpenTelemetry: traces follow one intake across HTTP, the outbox, the transport and the
consumers. The W3C `traceparent` is stored with each outbox row; the relay publishes each
record in a PRODUCER span whose parent is that context, and sends that span's context as the
record's plain `traceparent` header and as the CloudEvent's `ce_traceparent`; each consumer's
span is a child of it.

Service names: the spans of a service's relay and consumers come from a tracer provider of
that service (`tracer_for`), whose resource says `service.name=relais-<service>`; the
instrumented HTTP server and client and the database driver use the process's provider,
`relais-<service>` when the process runs one service (`python -m services.intake`, one
container per service), `relais` when it runs several (`relais up`)."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Mapping, Sequence

from aiohttp import web
from aiohttp.typedefs import Middleware
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased, Sampler
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_configured = False
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
W3C = TraceContextTextMapPropagator()
EXCLUDED_URLS = "OTEL_PYTHON_AIOHTTP_SERVER_EXCLUDED_URLS"
SECRET_PATHS = ("^/lien/", "^/invitation/", "^/mon-accord/", "^/signalement/")


def service_name_of(services: Sequence[str]) -> str:
    """`relais-intake` for the intake service; `relais` for a process running several."""
    return f"relais-{services[0]}" if len(services) == 1 else "relais"


def configure_tracing(service_name: str = "relais", statements: bool | None = None,
                      requests: bool | None = None) -> None:
    """Install a tracer provider (OTLP export when OTEL_EXPORTER_OTLP_ENDPOINT is set), the
    aiohttp client instrumentation, the server's when requests are traced in detail (else
    `server_middlewares` gives a lighter one), and asyncpg's when statements are traced.
    Idempotent.

    Not the aiokafka instrumentation: it would add a second `traceparent` header, of a span
    started in whatever context the producer runs (the relay's, outside any trace), and make
    a root span per poll; the relay's and the consumers' spans do its work for both
    transports."""
    global _configured, _light_server
    if _configured:
        return
    _configured = True
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider(resource=Resource.create({"service.name": service_name}),
                                  sampler=default_sampler(os.environ))
        if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        trace.set_tracer_provider(provider)
    from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
    from opentelemetry.instrumentation.aiohttp_server import AioHttpServerInstrumentor
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

    # No span for the pages whose address is a secret (a magic link, an invitation): their
    # URL would carry it to the collector. Read when instrumenting, added to the operator's.
    own = os.environ.get(EXCLUDED_URLS, "")
    os.environ[EXCLUDED_URLS] = ",".join(filter(None, [own, *SECRET_PATHS]))
    if traces_statements(requests):
        # It adds its middleware to every web.Application created after this.
        AioHttpServerInstrumentor().instrument()
    else:
        _light_server = True
    AioHttpClientInstrumentor().instrument()
    if traces_statements(statements):
        AsyncPGInstrumentor().instrument()  # type: ignore[no-untyped-call]


def default_sampler(env: Mapping[str, str]) -> Sampler | None:
    """No span recorded when none leaves the process (no `OTEL_EXPORTER_OTLP_ENDPOINT`):
    `parentbased_always_off`, whose spans still have their ids, carried into the logs, the
    outbox and the consumers' spans as when recorded (a caller's sampled trace is still
    recorded). Recording spans nobody reads took about a twentieth of a busy API's CPU
    (profile of 2026-12-07). None (the SDK's default, or `OTEL_TRACES_SAMPLER`) otherwise."""
    if env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_TRACES_SAMPLER"):
        return None
    return ParentBased(ALWAYS_OFF)


def traces_statements(said: bool | None = None) -> bool:
    """A span per SQL statement costs about a tenth of the CPU of a busy process (dozens per
    flow), as do the HTTP server instrumentation's attributes: made only when spans leave the
    process (`OTEL_EXPORTER_OTLP_ENDPOINT`), unless the setting (`RELAIS_TRACE_STATEMENTS`,
    `RELAIS_TRACE_REQUESTS`) says otherwise."""
    return bool(os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")) if said is None else said


_light_server = False


@web.middleware
async def _server_span(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A server span that carries the caller's trace and nothing else: its trace id goes into
    the logs and, through the outbox, into the consumers' spans, as with the instrumentation,
    whose attributes and metrics cost a tenth of a busy API's CPU for spans nobody reads."""
    with tracer.start_as_current_span(request.method, context=propagate.extract(
            request.headers), kind=trace.SpanKind.SERVER, record_exception=False,
            set_status_on_exception=False):  # (a redirect is an exception in aiohttp)
        return await handler(request)


def server_middlewares() -> list[Middleware]:
    """What an application adds first: the light server span, when the instrumentation was
    not installed (`configure_tracing`)."""
    return [_server_span] if _light_server else []


def current_traceparent() -> str | None:
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent")


def context_from(traceparent: str | None) -> Context:
    return propagate.extract({"traceparent": traceparent} if traceparent else {})


def traceparent_of(span: trace.Span) -> str:
    """The W3C `traceparent` of a span (whatever propagators are configured)."""
    carrier: dict[str, str] = {}
    W3C.inject(carrier, context=trace.set_span_in_context(span))
    return carrier.get("traceparent", "")


tracer = trace.get_tracer("relais")
_providers: dict[str, tuple[TracerProvider, TracerProvider]] = {}


def tracer_for(service: str) -> trace.Tracer:
    """A tracer whose spans say `service.name=relais-<service>`: a provider of the service's
    own, sharing the process provider's span processors (so its exporter), sampler and
    resource otherwise. The process's tracer when no SDK provider is installed."""
    base = trace.get_tracer_provider()
    if not isinstance(base, TracerProvider):
        return tracer
    known = _providers.get(service)
    if known is None or known[0] is not base:
        own = TracerProvider(
            sampler=base.sampler,
            resource=base.resource.merge(Resource({"service.name": service_name_of([service])})),
            shutdown_on_exit=False,  # the process provider shuts the shared processors down
            active_span_processor=base._active_span_processor,
            id_generator=base.id_generator,
            span_limits=base._span_limits,
        )
        known = _providers[service] = (base, own)
    return known[1].get_tracer("relais")
