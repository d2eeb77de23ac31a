"""The app factory: one aiohttp application serving the APIs of the services it runs, with
their relays, consumers and workers started and stopped through `cleanup_ctx`."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg
import structlog
from aiohttp import web

from schemas.api import Health
from schemas.asyncapi import dead_letter_topic
from services.runtime import db, leases, metrics, openapi, sealing, telemetry
from services.runtime.assets import add_static
from services.runtime.auth import (
    VERIFIER,
    KeySource,
    RemoteJWKS,
    RevocationList,
    RevocationSource,
    RevokedLoader,
    TokenVerifier,
    remote_revocations,
)
from services.runtime.consumer import ConsumerSettings, EventConsumer, Handler
from services.runtime.http import unstorable_text
from services.runtime.logging import get_logger
from services.runtime.openapi import Operation, register
from services.runtime.outbox import OutboxRelay
from services.runtime.problem import Problem, problem_middleware
from services.runtime.pruning import EVERY_SERVICE, Prune, prune_all
from services.runtime.ratelimit import LIMITER, SharedLimiter, buckets, forget_full
from services.runtime.server import harden
from services.runtime.settings import Settings
from services.runtime.transport import Transport, make_transport
from services.runtime.transport.postgres import PostgresTransport

log = get_logger("relais.app")
MAX_BODY = 1024 * 1024
STOP_TIMEOUT = 10.0
BUCKETS_FORGOTTEN_EVERY = 60.0
BUS_PRUNED_EVERY = 600.0
BUS = "relais_bus"
"""The postgres transport's schema (its pruning is leased under this name)."""
LIMITS = "relais_limits"
"""The schema of the rate limits' buckets, shared by the services (ratelimit.py)."""


@dataclass
class Runtime:
    app: web.Application
    settings: Settings
    dsn: str
    pool: asyncpg.Pool
    transport: Transport
    relays: list[OutboxRelay] = field(default_factory=list)
    consumers: list[EventConsumer] = field(default_factory=list)
    services: tuple[str, ...] = ()
    """The names of the services this process runs."""
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    """What time it is for the deadlines; tests replace it to move time forward."""
    keys: sealing.Keyring | None = None
    """The master keys and the derived keys (set at start)."""

    def keyring(self) -> sealing.Keyring:
        if self.keys is None:
            raise RuntimeError("the services have not started: no keyring")
        return self.keys


@dataclass(frozen=True)
class ConsumerSpec:
    name: str
    topics: tuple[str, ...]
    handler: Callable[[Runtime], Handler]


@dataclass(frozen=True)
class ServiceSpec:
    """What a service brings: its schema and migrations, routes, consumers and workers."""

    name: str
    package: str
    produces: tuple[str, ...] = ()
    routes: Callable[[web.Application], None] | None = None
    consumers: tuple[ConsumerSpec, ...] = ()
    workers: tuple[Callable[[Runtime], Awaitable[None]], ...] = ()
    """Background work done once per deployment: in one instance at a time (leases.py)."""
    per_instance: tuple[Callable[[Runtime], Awaitable[None]], ...] = ()
    """Background work every instance does for itself (e.g. feeding its live streams)."""
    prunes: tuple[Prune, ...] = ()
    """What it keeps only for a while, besides its idempotency records (pruning.py)."""
    sealed: tuple[sealing.SealedColumn, ...] = ()
    """What it seals under the master key, for `relais master-key rewrap` (rewrap.py)."""
    on_start: Callable[[Runtime], Awaitable[None]] | None = None
    key_source: Callable[[web.Application], KeySource] | None = None
    revoked_clients: Callable[[web.Application], RevokedLoader] | None = None

    @property
    def schema(self) -> str:
        return self.name


RUNTIME = web.AppKey("runtime", Runtime)
TASKS = web.AppKey("tasks", list[asyncio.Task[None]])


@web.middleware
async def request_context(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    request_id = request.headers.get("X-Request-ID") or uuid.uuid4().hex
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id)
    response = await handler(request)
    response.headers["X-Request-ID"] = request_id
    return response


@web.middleware
async def readable_text(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Query and path parameters PostgreSQL text could not hold (NUL, lone surrogates) are
    the caller's mistake: 400, before any handler passes them to a query."""
    bad = [name for params in (request.query, request.match_info) for name, value in
           params.items() if unstorable_text(value)]
    if bad:
        raise Problem(400, "Bad query", f"{', '.join(sorted(set(bad)))}: text must be valid "
                      "UTF-8 without NUL characters.")
    return await handler(request)


async def healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    runtime = request.app.get(RUNTIME)
    if runtime is None:
        raise Problem(503, "Not ready", "Starting.")
    try:
        await runtime.pool.fetchval("SELECT 1")
    except Exception as exc:
        if not db.unavailable(exc) and not isinstance(exc, asyncpg.PostgresError):
            raise
        raise Problem(503, "Not ready", "The database does not answer.",
                      headers={"Retry-After": str(db.RETRY_AFTER)}) from exc
    waiting = [c.name for c in runtime.consumers if not c.ready.is_set()]
    if waiting:
        raise Problem(503, "Not ready", f"Consumers not started: {', '.join(waiting)}.")
    return web.json_response({"status": "ready", "transport": runtime.transport.name})


def create_app(settings: Settings, dsn: str, services: Sequence[ServiceSpec]) -> web.Application:
    app = web.Application(middlewares=[*telemetry.server_middlewares(), metrics.middleware,
                                       request_context, problem_middleware, readable_text],
                          client_max_size=MAX_BODY)
    app.on_response_prepare.append(harden)
    register(app, [
        Operation("GET", "/healthz", healthz, "Alive", "Operations", response=Health,
                  authenticated=False),
        Operation("GET", "/readyz", readyz, "Ready: database reachable, consumers started",
                  "Operations", response=Health, errors=(503,), authenticated=False),
    ])
    metrics.setup(app, settings.metrics_networks)
    app.router.add_get("/openapi.json", openapi.serve)
    add_static(app, settings.dsfr_dir)
    for spec in services:
        if spec.routes is not None:
            spec.routes(app)
    app[LIMITER] = SharedLimiter("api", settings.rate_limit_per_second,
                                 settings.rate_limit_burst, buckets(app),
                                 lease=max(1, min(settings.rate_limit_burst // 10,
                                                  int(settings.rate_limit_per_second / 10))),
                                 trusted_proxies=settings.trusted_proxies)
    app[VERIFIER] = TokenVerifier(_key_source(app, settings, services), settings.issuer,
                                  settings.jwt_audience, settings.jwt_algorithms,
                                  settings.jwt_org_claim,
                                  _revocation_source(app, settings, services),
                                  settings.jwt_types)
    app.cleanup_ctx.append(_runtime_ctx(settings, dsn, services))
    return app


def _key_source(app: web.Application, settings: Settings,
                services: Sequence[ServiceSpec]) -> KeySource:
    """The auth service's keys when it runs here, unless another JWKS is configured."""
    if settings.jwks_url:
        return RemoteJWKS(settings.jwks_url)
    local = next((s.key_source for s in services if s.key_source is not None), None)
    if local is not None:
        return local(app)
    return RemoteJWKS(f"{settings.base_url}/.well-known/jwks.json")


def _revocation_source(app: web.Application, settings: Settings,
                       services: Sequence[ServiceSpec]) -> RevocationSource | None:
    """The auth service's revoked clients: read here when it runs here, else from its
    `/oauth/revoked` (RELAIS_REVOCATION_URL, or the base URL). None when the tokens come
    from another identity provider (RELAIS_JWKS_URL) and no revocation URL is given."""
    local = next((s.revoked_clients for s in services if s.revoked_clients is not None), None)
    if local is not None and not settings.revocation_url:
        return RevocationList(local(app), settings.revocation_refresh, "auth service")
    if settings.jwks_url and not settings.revocation_url:
        return None
    url = settings.revocation_url or f"{settings.base_url}/oauth/revoked"
    return RevocationList(remote_revocations(url), settings.revocation_refresh, url)


def _runtime_ctx(
    settings: Settings, dsn: str, services: Sequence[ServiceSpec]
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        runtime, tasks = await start_services(app, settings, dsn, services)
        app[TASKS] = tasks
        yield
        await stop_tasks(tasks)
        buckets(app).pool = None
        try:
            async with asyncio.timeout(STOP_TIMEOUT):
                await runtime.pool.close()
        except TimeoutError:
            log.warning("pool_close_timeout", in_use=runtime.pool.get_size()
                        - runtime.pool.get_idle_size())
            runtime.pool.terminate()

    return ctx


async def start_services(
    app: web.Application, settings: Settings, dsn: str, services: Sequence[ServiceSpec]
) -> tuple[Runtime, list[asyncio.Task[None]]]:
    # The master key had once, off the event loop: from a KMS or a PKCS#11 token it may take
    # seconds (RELAIS_MASTER_KEY_COMMAND); every later call reads it from memory.
    await asyncio.to_thread(sealing.master_key, settings)
    await asyncio.to_thread(sealing.previous_master_key, settings)
    shared = _shared_workers(settings)
    names = [lease_name(spec.schema, w) for spec in services
             for w in (*spec.workers, _pruner(spec.schema, ()))] \
        + [lease_name(schema, worker) for schema, worker in shared]
    if len(set(names)) != len(names):  # a worker whose lease another has would never run
        raise ValueError(f"two background workers share a lease name: {sorted(names)}")
    conn = await db.connect(dsn)
    try:
        for spec in services:
            await db.migrate_service(conn, spec.schema, spec.package)
        keys = await sealing.keyring(conn, settings, [
            (spec.schema, column) for spec in services for column in spec.sealed])
    finally:
        await conn.close()
    transport = make_transport(settings, dsn)
    topics = {t for spec in services for t in spec.produces}
    topics |= {t for spec in services for c in spec.consumers for t in c.topics}
    topics |= {dead_letter_topic(c.name) for spec in services for c in spec.consumers}
    await transport.setup(sorted(topics))
    pool = await db.create_pool(dsn, settings.db_pool_max)
    runtime = Runtime(app, settings, dsn, pool, transport,
                      services=tuple(spec.name for spec in services), keys=keys)
    app[RUNTIME] = runtime
    metrics.bind(app, runtime, names)  # before the tasks: they see it (metrics.current())
    consumer_settings = ConsumerSettings(
        max_attempts=settings.consumer_max_attempts,
        backoff=settings.consumer_backoff,
        poll_timeout=settings.poll_interval,
        lanes=settings.consumer_lanes,
    )
    tasks: list[asyncio.Task[None]] = []
    try:
        for spec in services:
            if spec.on_start is not None:
                await spec.on_start(runtime)
    except BaseException:  # refused at start: nothing left open behind (a test goes on)
        await pool.close()
        raise
    buckets(app).pool = pool
    for schema, worker in shared:
        tasks.append(asyncio.create_task(_supervised(_alone(schema, worker), runtime),
                                         name=f"worker:{schema}"))
    for spec in services:
        relay = OutboxRelay(spec.schema, dsn, transport, settings.poll_interval)
        runtime.relays.append(relay)
        tasks.append(asyncio.create_task(relay.run(), name=f"relay:{spec.name}"))
        for c in spec.consumers:
            consumer = EventConsumer(c.name, spec.schema, c.topics, c.handler(runtime), pool,
                                     transport, consumer_settings)
            runtime.consumers.append(consumer)
            tasks.append(asyncio.create_task(consumer.run(), name=f"consumer:{c.name}"))
        for worker in (*spec.workers, _pruner(spec.schema, (*spec.prunes, *EVERY_SERVICE))):
            tasks.append(asyncio.create_task(_supervised(_alone(spec.schema, worker), runtime),
                                             name=f"worker:{spec.name}"))
        for worker in spec.per_instance:
            tasks.append(asyncio.create_task(_supervised(worker, runtime),
                                             name=f"worker:{spec.name}"))
    log.info("services_started", services=[s.name for s in services],
             transport=transport.name)
    return runtime, tasks


def lease_name(schema: str, worker: Callable[[Runtime], Awaitable[None]]) -> str:
    return f"relais.worker.{schema}.{getattr(worker, '__name__', 'worker')}"


def _alone(schema: str, worker: Callable[[Runtime], Awaitable[None]]
           ) -> Callable[[Runtime], Awaitable[None]]:
    """The worker, run only while this instance holds its lease (one per deployment)."""
    name = lease_name(schema, worker)

    async def alone(runtime: Runtime) -> None:
        await leases.run_alone(name, runtime.dsn, lambda: worker(runtime),
                               runtime.settings.instance_id)

    alone.__name__ = getattr(worker, "__name__", "worker")
    return alone


def _shared_workers(settings: Settings
                    ) -> list[tuple[str, Callable[[Runtime], Awaitable[None]]]]:
    """The background work of no one service, once per deployment: the rate limits' buckets,
    and the postgres transport's log."""
    shared: list[tuple[str, Callable[[Runtime], Awaitable[None]]]] = [
        (LIMITS, forget_full_buckets)]
    if settings.transport == "postgres":
        shared.append((BUS, prune_bus))
    return shared


async def forget_full_buckets(runtime: Runtime) -> None:
    """Every minute, the rate limits' buckets full again go: their keys come from callers
    (addresses), and a full bucket is the same as none."""
    while True:
        await forget_full(runtime.pool)
        await asyncio.sleep(BUCKETS_FORGOTTEN_EVERY)


async def prune_bus(runtime: Runtime) -> None:
    """Every ten minutes, the postgres transport's events past RELAIS_BUS_RETENTION_DAYS that
    every group has read (dead letters: RELAIS_BUS_DEAD_LETTER_RETENTION_DAYS) go."""
    transport, settings = runtime.transport, runtime.settings
    assert isinstance(transport, PostgresTransport)
    while True:
        now = runtime.clock()
        deleted = await transport.prune(
            now - timedelta(days=settings.bus_retention_days),
            now - timedelta(days=settings.bus_dead_letter_retention_days))
        if deleted:
            log.info("bus_pruned", records=deleted)
        await asyncio.sleep(BUS_PRUNED_EVERY)


def _pruner(schema: str, rules: tuple[Prune, ...]) -> Callable[[Runtime], Awaitable[None]]:
    async def prune(runtime: Runtime) -> None:
        """Once a day (RELAIS_RETENTION_INTERVAL), what is past its period goes."""
        while True:
            await prune_all(runtime.pool, schema, rules, runtime.settings, runtime.clock())
            await asyncio.sleep(runtime.settings.retention_interval)

    return prune


HEALTHY_AFTER = 10.0
"""A worker that ran this long before failing was well: it starts again at the first delay."""


async def _supervised(worker: Callable[[Runtime], Awaitable[None]], runtime: Runtime,
                      sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                      clock: Callable[[], float] = time.monotonic) -> None:
    """Run `worker` until it returns, starting it again after each failure: 0.2 s, doubling
    up to 5 s while it keeps failing at once, back to 0.2 s once it has run well for
    HEALTHY_AFTER seconds (so that a database blip an hour ago does not slow the next
    restart)."""
    backoff = 0.2
    while True:
        started = clock()
        try:
            await worker(runtime)
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if clock() - started >= HEALTHY_AFTER:
                backoff = 0.2
            log.warning("worker_restart", worker=getattr(worker, "__name__", "?"),
                        error=repr(exc), retry_in=backoff)
            await sleep(backoff)
            backoff = min(backoff * 2, 5.0)


async def stop_tasks(tasks: Sequence[asyncio.Task[None]]) -> None:
    if not tasks:
        return
    for task in tasks:
        task.cancel()
    _done, pending = await asyncio.wait(tasks, timeout=STOP_TIMEOUT)
    if pending:
        log.warning("tasks_not_stopped", tasks=sorted(t.get_name() for t in pending))
