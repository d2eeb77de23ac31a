"""Prometheus metrics of one Relais process: `GET /metrics`, in the text format.

Each application has its own registry (several live in one test process; the library's
global registry is never used). Three kinds of figures:

- counted where the thing happens: the HTTP requests (`middleware`, by canonical route, method
  and status) and the notifications (`notified`, by channel and outcome);
- read from the objects that already count them: the events each relay published, each
  consumer's messages by outcome and its retries;
- read from PostgreSQL at scrape time, one small query per family, each bounded by an index or
  by a table of a few rows: the outbox not yet published, the pending notifications (when
  notify runs here), the dead letters and the consumers' lag (postgres transport), and the
  background workers' leases this process holds.

No label carries an id or personal data: services, consumers, workers, channels, routes (their
templates, `/v1/referrals/{id}`), methods and statuses, all bounded sets.

Access (`RELAIS_METRICS_NETWORKS`): the figures say how busy Relais is, nothing about anyone,
so a scraper inside the cluster needs no token; the endpoint answers only a peer whose own
address is in those networks (loopback only by default) and that is not a
proxy relaying someone else (any `Forwarded`, `X-Forwarded-For` or `X-Real-IP` header). Any
other caller gets a 403 problem. The Ingress routes no `/metrics`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING

import asyncpg
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from schemas.asyncapi import dead_letter_topic
from services.runtime import leases
from services.runtime.logging import get_logger
from services.runtime.openapi import Operation, register
from services.runtime.problem import Problem

if TYPE_CHECKING:
    from services.runtime.app import Runtime

log = get_logger("relais.metrics")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "(unmatched)"
"""The route label of a request no route matched (a 404 or 405 of the router)."""
PROXY_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Real-IP")
QUERY_TIMEOUT = 2.0
"""Seconds the scrape's queries may take: past that, the database gauges are left out."""
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
NOTIFY_CHANNELS = ("email", "webhook")
"""The channels whose notifications wait to be sent (the inbox's are sent when written)."""
WORKER_PREFIX = "relais.worker."


class Metrics:
    """One application's registry and the metrics in it."""

    def __init__(self, networks: Sequence[Network]) -> None:
        self.networks = tuple(networks)
        self.runtime: Runtime | None = None
        self.lease_names: tuple[str, ...] = ()
        self.registry = CollectorRegistry()
        r = self.registry
        self.http = Histogram(
            "relais_http_request_duration_seconds",
            "HTTP requests answered, by route template, method and status, with their time.",
            ["route", "method", "status"], buckets=BUCKETS, registry=r)
        self.notifications = Counter(
            "relais_notifications",
            "Notifications sent (given to the SMTP server, the webhook endpoint or the inbox), "
            "delivered and failed for good, by channel (this process's senders).",
            ["channel", "outcome"], registry=r)
        self.outbox_unpublished = Gauge(
            "relais_outbox_unpublished", "Events written to a service's outbox and not yet "
            "published.", ["service"], registry=r)
        self.outbox_oldest = Gauge(
            "relais_outbox_oldest_unpublished_seconds", "Age of the oldest event not yet "
            "published from a service's outbox (0 when none).", ["service"], registry=r)
        self.notifications_pending = Gauge(
            "relais_notifications_pending", "Notifications waiting to be sent, by channel "
            "(notify's table; exported where notify runs).", ["channel"], registry=r)
        self.notifications_oldest = Gauge(
            "relais_notifications_oldest_pending_seconds", "Age of the oldest notification "
            "waiting to be sent, by channel (0 when none).", ["channel"], registry=r)
        self.dead_letters = Gauge(
            "relais_dead_letters", "Messages ever put in a consumer's dead-letter topic "
            "(postgres transport; with Kafka, its exporter's offsets).", ["consumer"],
            registry=r)
        self.consumer_lag = Gauge(
            "relais_consumer_lag", "Messages of a consumer's topics not yet committed by its "
            "group (postgres transport; with Kafka, kafka_consumergroup_lag).", ["consumer"],
            registry=r)
        self.lease_held = Gauge(
            "relais_worker_lease_held", "1 while this process holds a background worker's "
            "lease (runs it), else 0.", ["worker"], registry=r)
        self.database_up = Gauge(
            "relais_metrics_database_up", "1 when the last scrape could read the database "
            "gauges, 0 when it could not (they are then left out).", registry=r)
        r.register(_Counted(self))
        ProcessCollector(registry=r)  # process_*: CPU, resident memory, open files (Linux)

    def notified(self, channel: str, outcome: str) -> None:
        self.notifications.labels(channel, outcome).inc()

    def observe(self, request: web.Request, status: int, seconds: float) -> None:
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else UNMATCHED
        method = request.method if request.method in METHODS else "OTHER"
        self.http.labels(route, method, str(status)).observe(seconds)

    def allowed(self, request: web.Request) -> bool:
        """A scraper of the monitoring network, asking directly (no proxy in between)."""
        return allowed(request.remote, request.headers.keys(), self.networks)

    async def refresh(self) -> None:
        """Read the database gauges: one query per family."""
        runtime = self.runtime
        if runtime is None:
            return
        for name in self.lease_names:
            self.lease_held.labels(name.removeprefix(WORKER_PREFIX)).set(
                1 if leases.running[name] > 0 else 0)
        try:
            async with runtime.pool.acquire(timeout=QUERY_TIMEOUT) as conn:
                outbox = await conn.fetch(outbox_query(runtime.services),
                                          timeout=QUERY_TIMEOUT)
                pending = await conn.fetch(PENDING_QUERY, list(NOTIFY_CHANNELS),
                                           timeout=QUERY_TIMEOUT) \
                    if "notify" in runtime.services else []
                bus = await self._bus(conn, runtime)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("metrics_database_unavailable", error=repr(exc))
            self.database_up.set(0)
            for gauge in (self.outbox_unpublished, self.outbox_oldest,
                          self.notifications_pending, self.notifications_oldest,
                          self.dead_letters, self.consumer_lag):
                gauge.clear()
            return
        self.database_up.set(1)
        for row in outbox:
            self.outbox_unpublished.labels(row["service"]).set(row["unpublished"])
            self.outbox_oldest.labels(row["service"]).set(row["oldest_seconds"])
        for row in pending:
            self.notifications_pending.labels(row["channel"]).set(row["pending"])
            self.notifications_oldest.labels(row["channel"]).set(row["oldest_seconds"])
        for consumer, (dead, lag) in bus.items():
            self.dead_letters.labels(consumer).set(dead)
            self.consumer_lag.labels(consumer).set(lag)

    async def _bus(self, conn: asyncpg.Connection, runtime: Runtime
                   ) -> dict[str, tuple[int, int]]:
        """Per consumer of this process: its dead letters and its lag (postgres transport)."""
        if runtime.transport.name != "postgres" or not runtime.consumers:
            return {}
        names = [c.name for c in runtime.consumers]
        topics = [[*c.topics] for c in runtime.consumers]
        rows = await conn.fetch(BUS_QUERY, names, [dead_letter_topic(n) for n in names],
                                [",".join(t) for t in topics], timeout=QUERY_TIMEOUT)
        return {r["consumer"]: (r["dead"], r["lag"]) for r in rows}

    def scrape(self) -> bytes:
        return generate_latest(self.registry)


class _Counted(Collector):
    """The counters the relays and consumers keep themselves, read at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterable[Metric]:
        runtime = self.metrics.runtime
        published = CounterMetricFamily(
            "relais_outbox_published", "Events the relay of a service's outbox published "
            "(while this process held the relay's lock).", labels=["service"])
        handled = CounterMetricFamily(
            "relais_events_handled", "Messages a consumer handled, by outcome: done, "
            "duplicate (its inbox had it), dead (sent to its dead-letter topic).",
            labels=["consumer", "outcome"])
        retries = CounterMetricFamily(
            "relais_event_retries", "Attempts of a consumer that failed and were tried again "
            "(before success or the dead-letter topic).", labels=["consumer"])
        if runtime is not None:
            for relay in runtime.relays:
                published.add_metric([relay.schema], relay.published)
            for consumer in runtime.consumers:
                for outcome, count in consumer.counts.items():
                    handled.add_metric([consumer.name, outcome], count)
                retries.add_metric([consumer.name], consumer.retries)
        yield from (published, handled, retries)

    def describe(self) -> Iterable[Metric]:
        return []


def outbox_query(services: Sequence[str]) -> str:
    """Per service: the events not yet published, and the age of the oldest (the partial
    index `outbox_unpublished` holds exactly those rows, in id order)."""
    return " UNION ALL ".join(
        f"SELECT '{name}' AS service,"
        f' (SELECT count(*) FROM "{name}".outbox WHERE published_at IS NULL) AS unpublished,'
        " coalesce(extract(epoch FROM now() - (SELECT created_at FROM"
        f' "{name}".outbox WHERE published_at IS NULL ORDER BY id LIMIT 1)), 0)::float8'
        " AS oldest_seconds" for name in services)


PENDING_QUERY = """
SELECT c.channel, count(n.id) AS pending,
       coalesce(extract(epoch FROM now() - min(n.created_at)), 0)::float8 AS oldest_seconds
FROM unnest($1::text[]) AS c(channel)
LEFT JOIN notify.notifications n ON n.status = 'pending' AND n.channel = c.channel
GROUP BY c.channel
"""
"""The pending notifications per channel (the partial index `notifications_pending` holds
exactly those)."""

BUS_QUERY = """
SELECT c.consumer,
       (SELECT coalesce(sum(p.next_offset), 0) FROM relais_bus.partitions p
         WHERE p.topic = c.dlq)::bigint AS dead,
       (SELECT coalesce(sum(p.next_offset - coalesce(o.committed, 0)), 0)
          FROM relais_bus.partitions p
          LEFT JOIN relais_bus.group_offsets o
            ON o.group_id = c.consumer AND o.topic = p.topic AND o.partition = p.partition
         WHERE p.topic = ANY(string_to_array(c.topics, ',')))::bigint AS lag
FROM unnest($1::text[], $2::text[], $3::text[]) AS c(consumer, dlq, topics)
"""
"""The postgres transport's dead letters (the next offset of a topic is how many records it ever
had, pruned ones included) and each consumer group's lag: tables of a row per partition."""


def allowed(remote: str | None, headers: Iterable[str], networks: Sequence[Network]) -> bool:
    """Whether a peer at `remote`, sending these header names, may read the metrics."""
    if any(h.lower() == p.lower() for h in headers for p in PROXY_HEADERS):
        return False
    try:
        address = ipaddress.ip_address(remote or "")
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


METRICS = web.AppKey("metrics", Metrics)
_UNBOUND = Metrics(())
_CURRENT: ContextVar[Metrics] = ContextVar("relais_metrics", default=_UNBOUND)


def current() -> Metrics:
    """The metrics of the application whose services run this code (`bind`); a detached set,
    never served, outside of one (a command, a test calling a function alone)."""
    return _CURRENT.get()


def setup(app: web.Application, networks: Sequence[Network]) -> None:
    """The application's metrics and its `GET /metrics`."""
    app[METRICS] = Metrics(networks)
    register(app, [Operation(
        "GET", "/metrics", serve, "Prometheus metrics of this process (text format)",
        "Operations", response_media="text/plain", errors=(403,), authenticated=False,
        error_text={403: "Not from RELAIS_METRICS_NETWORKS, or through a proxy"})])


def bind(app: web.Application, runtime: Runtime, lease_names: Iterable[str]) -> None:
    """Called as the services start, before their tasks: the runtime the gauges read, and the
    metrics `current()` gives in every task started from here (context variables are copied
    into new tasks)."""
    metrics = app[METRICS]
    metrics.runtime = runtime
    metrics.lease_names = tuple(lease_names)
    _CURRENT.set(metrics)


async def serve(request: web.Request) -> web.Response:
    metrics = request.app[METRICS]
    if not metrics.allowed(request):
        raise Problem(403, "Forbidden", "The metrics are served only to the monitoring "
                      "network (RELAIS_METRICS_NETWORKS), asked directly, not through a proxy.")
    await metrics.refresh()
    return web.Response(body=metrics.scrape(),
                        headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})


@web.middleware
async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every request's route, method, status and time (the outermost middleware: what the
    others answered, problems included); the handlers' `current()` is this application's."""
    started = time.perf_counter()
    status = 500
    metrics = request.app.get(METRICS)
    bound = _CURRENT.set(metrics) if metrics is not None else None
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    except asyncio.CancelledError:
        status = 499  # the client went away first (nginx's word for it)
        raise
    finally:
        if metrics is not None:
            metrics.observe(request, status, time.perf_counter() - started)
        if bound is not None:
            _CURRENT.reset(bound)
