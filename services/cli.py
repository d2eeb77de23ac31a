"""`relais ...`: run the services, manage API clients and signing keys."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiosmtplib
import asyncpg
import uvloop
from aiohttp import web

from services.runtime import db, mail, sealing, workers
from services.runtime.app import ServiceSpec, create_app
from services.runtime.embedded import EmbeddedPostgres
from services.runtime.failures import CannotStart
from services.runtime.logging import configure_logging, get_logger
from services.runtime.server import AppRunner
from services.runtime.settings import InvalidSettings, Settings, shown
from services.runtime.settings import load as load_settings
from services.runtime.telemetry import configure_tracing, service_name_of

log = get_logger("relais.cli")
SERVICE_NAMES = ("auth", "intake", "consent", "referral", "notify")
DEMO_SCOPES = (
    "intake:write intake:read consent:write consent:read referral:read referral:write "
    "people:read notification:read notification:write"
)
"""A partner's ordinary client (`relais client create` without `--scopes`): what a
counsellor's account has, so a recipient's system reads the identity and contact a consent
gives it in a referral's dossier (`people:read`), as the counsellor does in the console."""


def service_specs(names: Sequence[str]) -> list[ServiceSpec]:
    from services import auth, consent, intake, notify, referral

    specs = {"auth": auth.SPEC, "intake": intake.SPEC, "consent": consent.SPEC,
             "referral": referral.SPEC, "notify": notify.SPEC}
    return [specs[name] for name in names]


def asyncapi_document() -> dict[str, Any]:
    """The AsyncAPI document: the event models, and what each service sends and receives."""
    from schemas import asyncapi

    return asyncapi.document([
        asyncapi.Service(spec.name, spec.produces,
                         tuple((c.name, c.topics) for c in spec.consumers))
        for spec in service_specs(SERVICE_NAMES)])


@contextlib.asynccontextmanager
async def database(settings: Settings) -> AsyncIterator[str]:
    """DATABASE_URL, or the embedded server: joined if `relais up` runs it, else started
    for the command and stopped after."""
    if settings.database_url:
        yield settings.database_url
        return
    embedded = EmbeddedPostgres(settings.data_dir / "postgres")
    try:
        yield await embedded.start()
    finally:
        await asyncio.to_thread(embedded.stop)


async def migrate_command(settings: Settings) -> int:
    """`relais migrate`: every service's schema brought up to date, and nothing started (a
    deployment's job before its services roll); each service applies the same at start."""
    async with database(settings) as dsn:
        for spec in service_specs(SERVICE_NAMES):
            await db.migrated(dsn, spec.schema, spec.package)
            print(f"{spec.schema}: migrations applied", flush=True)
    return 0


def sealed_columns(specs: Sequence[ServiceSpec]) -> list[tuple[str, sealing.SealedColumn]]:
    return [(spec.schema, column) for spec in specs for column in spec.sealed]


async def keyring(db_: asyncpg.Pool | asyncpg.Connection, settings: Settings
                  ) -> sealing.Keyring:
    """The services' keyring, for a command (refused under a master key that does not open
    what they sealed)."""
    return await sealing.keyring(db_, settings, sealed_columns(service_specs(SERVICE_NAMES)))


async def _auth_pool(settings: Settings, dsn: str) -> asyncpg.Pool:
    await db.migrated(dsn, "auth", "services.auth")
    return await db.create_pool(dsn, 2)


NOT_VERIFIED = 3


async def rotate_trail_key(settings: Settings) -> int:
    """`relais audit rotate-key`: a new checkpoint key, the old ones retired."""
    from services.consent import trail_store

    async with database(settings) as dsn:
        await db.migrated(dsn, "consent", "services.consent")
        pool = await db.create_pool(dsn, max_size=2)
        try:
            master = await keyring(pool, settings)
            kid, retired = await trail_store.rotate_key(pool, master)
        except (sealing.SealError, sealing.MasterKeyUnavailable):
            print("relais audit rotate-key: the current key cannot be opened with this master "
                  "key: run it with the services' RELAIS_MASTER_KEY (or its file or command); "
                  "nothing was changed", file=sys.stderr)
            return 1
        finally:
            await pool.close()
    print(f"The trail's checkpoints are signed with key {kid} from now on.")
    if retired:
        print(f"Retired: {', '.join(retired)} (private key destroyed; the public key stays at "
              "/v1/audit/keys, so what it signed still verifies). Auditors: download the keys "
              "again.")
    return 0


def audit_verify(export: str, key_file: str | None) -> int:
    """Offline: needs no database, no server, no network. Without the auditor's own copy of
    the keys (--key), nothing proves who signed the export: never OK, exit 3."""
    from services.consent import trail

    trusted = None
    if key_file:
        keys = json.loads(Path(key_file).read_text())["keys"]
        trusted = {k["kid"]: trail.public_key_of(k) for k in keys}
    with open(export, encoding="utf-8") as lines:
        report = trail.verify(lines, trusted)
    summary = f"{report.entries} entries, {report.checkpoints} signed checkpoints"
    if not report.ok:
        print(f"FAILED after {summary}: {report.problem}")
        return 1
    if trusted is None:
        print(f"NOT VERIFIED: no trusted key (--key). The chain and tree heads hold ({summary}; "
              f"tree head {report.root}), but the signatures were only checked against the "
              "keys inside the export, which whoever wrote it chose: give --key your own copy "
              "of /v1/audit/keys.")
        return NOT_VERIFIED
    print(f"OK: {summary}; tree head {report.root}")
    return 0


def openapi_document() -> dict[str, object]:
    """The OpenAPI document of all the services (what `relais up` serves)."""
    from services.runtime.openapi import OPERATIONS, Operation, document

    app = create_app(Settings(), "postgresql://unused", service_specs(SERVICE_NAMES))
    operations: list[Operation] = app[OPERATIONS]
    return document(operations)


def import_data_inclusion(args: argparse.Namespace) -> int:
    """Offline: catalogue files in, a directory YAML out (to review, then `directory load`)."""

    from pydantic import ValidationError

    from services import directory
    from services.directory import data_inclusion

    def rows(path: str) -> list[Any]:
        data = json.loads(Path(path).read_text("utf-8"))
        items = data.get("items", []) if isinstance(data, dict) else data
        return list(items)

    try:
        base = directory.load(Path(args.base) if args.base else None)
        organisations, report = data_inclusion.convert(
            rows(args.structures), rows(args.services), set(args.commune or ()) or None)
        merged = data_inclusion.merge(base, organisations)
    except (OSError, ValueError, ValidationError) as exc:
        print(f"not imported: {exc}", file=sys.stderr)
        return 2
    for reason in report.skipped:
        print(f"skipped {reason}", file=sys.stderr)
    print(f"{len(report.imported)} structures imported, {len(report.skipped)} rows skipped; "
          f"{len(merged.organisations)} organisations in the directory", file=sys.stderr)
    text = merged.to_yaml()
    if args.out:
        Path(args.out).write_text(text, "utf-8")
    else:
        print(text, end="")
    return 0


async def directory_command(settings: Settings, args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from services import directory
    from services.intake import store
    from services.intake.directory import publish

    document = None
    if args.action == "load":
        try:
            document = directory.load(Path(args.file))
        except (OSError, ValidationError, ValueError) as exc:
            print(f"{args.file}: not loaded:\n{exc}", file=sys.stderr)
            return 2
    async with database(settings) as dsn:
        conn = await db.connect(dsn)
        try:
            await db.migrate_service(conn, "intake", "services.intake")
            if document is not None:
                async with conn.transaction():
                    version = await publish(conn, document)
                print(f"directory version {version} loaded: {len(document.organisations)} "
                      f"organisations, {len(document.sites)} sites, "
                      f"{len(document.permanences)} permanences", file=sys.stderr)
            else:
                row = await store.directory(conn)
                if row is None:
                    print("no directory yet: `relais up` loads the demo one", file=sys.stderr)
                    return 1
                print(directory.Directory.model_validate(row["document"]).to_yaml(), end="")
        finally:
            await conn.close()
    return 0


async def dlq_command(settings: Settings, args: argparse.Namespace) -> int:
    """`relais dlq list|show|replay`: the consumers' dead letters, read outside any consumer
    group and told handled or not by each consumer's inbox (services/runtime/dlq.py)."""
    from services.runtime import dlq
    from services.runtime.transport import make_transport

    consumers = {c.name: spec.schema for spec in service_specs(SERVICE_NAMES)
                 for c in spec.consumers}
    try:  # before starting any database
        dlq.check_consumer(consumers, args.consumer)
    except dlq.Wrong as exc:
        print(f"relais: {exc}", file=sys.stderr)
        return dlq.USAGE
    async with database(settings) as dsn:
        try:
            transport = make_transport(settings, dsn)
        except ValueError as exc:
            print(f"relais: {exc}", file=sys.stderr)
            return dlq.USAGE
        return await dlq.run(transport, dsn, consumers, args.action, args.consumer,
                             getattr(args, "handle", None), getattr(args, "all", False),
                             getattr(args, "force", False),
                             inbox_days=settings.retention_inbox_days)


async def intake_command(settings: Settings, args: argparse.Namespace) -> int:
    """`relais intake reindex-names`: the search by name's blind index computed again from
    the vault (people sealed before it existed)."""
    from services.intake import search, vault

    async with database(settings) as dsn:
        conn = await db.connect(dsn)
        try:
            await db.migrate_service(conn, "intake", "services.intake")
            try:
                master = await keyring(conn, settings)
                read, named = await search.reindex(conn, master)
            except (vault.VaultError, sealing.MasterKeyUnavailable):
                print("the vault cannot be opened with this master key (RELAIS_MASTER_KEY or "
                      f"{settings.data_dir}/keys/master.key); the people indexed before it "
                      "stopped keep their terms", file=sys.stderr)
                return 1
        finally:
            await conn.close()
    print(f"{read} people with a sealed identity read; {named} findable by name")
    return 0


async def master_key_command(settings: Settings, args: argparse.Namespace) -> int:
    """`relais master-key status`: what is not yet sealed under the current master key;
    `relais master-key rewrap`: all of it sealed again under it, in batches, while Relais
    serves (the second half of a rotation; resumable: run it again after a stop)."""
    from services.runtime import rewrap

    action, left, unopened = args.action, 0, 0
    # The master keys alone: nothing here derives a key, nor writes one that is missing.
    ring = sealing.Keyring(sealing.master_key(settings), sealing.previous_master_key(settings))
    async with database(settings) as dsn:
        pool = await db.create_pool(dsn, 2)
        try:
            specs = service_specs(SERVICE_NAMES)
            for spec in specs:
                await db.migrated(dsn, spec.schema, spec.package)
            for schema, column in (rewrap.DERIVED, *sealed_columns(specs)):
                if action == "rewrap":
                    done = await rewrap.rewrap(pool, schema, column, ring, args.batch,
                                               told=_every(5.0))
                    unopened += done.unopened
                    print(f"{done.name}: {done.resealed} sealed again", flush=True)
                count = await rewrap.left(pool, schema, column, ring.prefix)
                left += count
                if action == "status":
                    print(f"{schema}.{column.table}.{column.column}: {count} not yet under the "
                          "current master key", flush=True)
        finally:
            await pool.close()
    current = sealing.key_id(sealing.master_key(settings)).hex()
    if left == 0:
        print(f"Everything is sealed under the current master key (id {current}): "
              "RELAIS_PREVIOUS_MASTER_KEY (or its _FILE or _COMMAND) can be removed, and the "
              "services restarted without it.")
        return 0
    if action == "status":
        print(f"{left} sealed under another key than the current one (id {current}): "
              "`relais master-key rewrap` seals them again.")
        return 0
    print(f"relais master-key rewrap: {left} left under another key, {unopened} of them "
          "opened by neither RELAIS_MASTER_KEY nor RELAIS_PREVIOUS_MASTER_KEY (sealed under a "
          "third key, or altered); run it again with the key that sealed them as "
          "RELAIS_PREVIOUS_MASTER_KEY", file=sys.stderr)
    return 1


def _every(seconds: float) -> Callable[[Any], None]:
    """A progress line at most every `seconds` (a batch takes well under one)."""
    last = time.monotonic()

    def told(progress: Any) -> None:
        nonlocal last
        if time.monotonic() - last >= seconds:
            last = time.monotonic()
            print(f"{progress.name}: {progress.resealed} sealed again so far", flush=True)

    return told


def _moment(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 date or time: {text}") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


async def retention_command(settings: Settings, args: argparse.Namespace) -> int:
    """`relais retention report`: the plan of the next run, without erasing."""
    from services import directory as reference
    from services.intake import erasure, retention, store

    at = args.at or datetime.now(UTC)
    async with database(settings) as dsn:
        await db.migrated(dsn, "intake", "services.intake")
        pool = await db.create_pool(dsn, max_size=2)
        try:
            row = await store.directory(pool)
            organisations = (reference.Directory.model_validate(row["document"]).organisations
                             if row else [])
            plan = await erasure.retention_plan(
                pool, {o.id: o.retention_months for o in organisations}, at)
        finally:
            await pool.close()
    print("\n".join(retention.report(plan, at)))
    return 0


async def backup_command(settings: Settings, args: argparse.Namespace) -> int:
    from services import backup

    try:
        async with database(settings) as dsn:
            if args.command == "backup":
                size = await asyncio.to_thread(backup.backup, dsn, args.file)
                backup.report_backup(args.file, size, settings)
            else:
                schemas, again = await backup.restore(dsn, args.file, settings)
                backup.report_restore(args.file, schemas, again, settings)
    except backup.BackupError as error:
        print(f"relais {args.command}: {error}", file=sys.stderr)
        return 1
    return 0


async def _organisations(pool: asyncpg.Pool, settings: Settings) -> dict[str, str] | None:
    """The organisations of the directory in use (the intake service's), else of
    RELAIS_DIRECTORY_FILE, with their kinds; None when there is neither."""
    from services import directory
    from services.intake import store

    try:
        row = await store.directory(pool)
    except asyncpg.UndefinedTableError:  # the intake service never ran on this database
        row = None
    if row is not None:
        document = directory.Directory.model_validate(row["document"])
    elif settings.directory_file is not None:
        document = directory.load(settings.directory_file)
    else:
        return None
    return {o.id: o.kind for o in document.organisations}


async def _in_directory(pool: asyncpg.Pool, settings: Settings, org: str) -> bool:
    """Whether `org` is an organisation of the directory in use; if not, says why."""
    known = await _organisations(pool, settings)
    if known is None:
        print("no directory yet to check the organisation against: start Relais once "
              "(`relais up`) or load one (`relais directory load FILE`)", file=sys.stderr)
        return False
    if org not in known:
        print(f"unknown organisation {org!r}: it is not in the directory (`relais directory "
              "show` lists them)", file=sys.stderr)
        return False
    return True


async def client_command(settings: Settings, args: argparse.Namespace) -> int:
    from services.auth import domain, keys, store

    async with database(settings) as dsn:
        pool = await _auth_pool(settings, dsn)
        try:
            if args.action == "create":
                scopes = args.scopes.split()
                if unknown := domain.unknown_scopes(scopes):
                    print(f"unknown scopes: {' '.join(unknown)}; known: "
                          f"{' '.join(domain.SCOPES)}", file=sys.stderr)
                    return 2
                if not await _in_directory(pool, settings, args.org):
                    return 2
                client_id, secret = f"{args.org}-{uuid.uuid4().hex[:8]}", domain.new_secret()
                await store.insert_client(pool, client_id, domain.hash_secret(secret), args.org,
                                          args.name, scopes)
                print(json.dumps({"client_id": client_id, "client_secret": secret}))
            elif args.action == "list":
                rows = await store.list_clients(pool)
                print(json.dumps([dict(r) for r in rows], default=str, indent=2))
            elif args.action == "revoke":
                if not await store.revoke_client(pool, args.client_id):
                    print(f"no active client {args.client_id}", file=sys.stderr)
                    return 1
                print(f"revoked {args.client_id}")
            elif args.action == "rotate":
                master = await keyring(pool, settings)
                print(json.dumps({"kid": await keys.rotate(pool, master)}))
        finally:
            await pool.close()
    return 0


async def user_command(settings: Settings, args: argparse.Namespace) -> int:
    """Personal accounts: create one (and print its invitation link), list, disable, remove
    the second factor (reset-2fa)."""
    from services.auth import accounts, store

    async with database(settings) as dsn:
        pool = await _auth_pool(settings, dsn)
        try:
            if args.action == "create":
                if not await _in_directory(pool, settings, args.org):
                    return 2
                kinds = await _organisations(pool, settings) or {}
                if args.role in accounts.TERRITORY_ROLES and kinds.get(args.org) != \
                        "coordination":
                    print(f"the {args.role} role acts for the whole territory (directory, "
                          "recipients, places, people's rights): give it to a person of an "
                          "organisation of kind 'coordination' only", file=sys.stderr)
                    return 2
                if await store.user_by_email(pool, args.email) is not None:
                    print(f"an account already exists for {args.email}", file=sys.stderr)
                    return 2
                user_id = uuid.uuid4()
                token, digest = accounts.new_token()
                expires = datetime.now(UTC) + timedelta(days=accounts.INVITATION_DAYS)
                async with pool.acquire() as conn, conn.transaction():
                    await store.insert_user(conn, user_id, args.email, args.name, args.org,
                                            args.role)
                    await store.insert_invitation(conn, digest, user_id, expires)
                link = f"{settings.base_url}/invitation/{token}"
                print(f"Account created for {args.name} <{args.email}> ({args.org}, "
                      f"{args.role}).")
                subject, body = accounts.invitation_email(args.name, link)
                try:
                    await mail.send_one(settings, args.email, subject, body)
                    print(f"The invitation was emailed to {args.email}; its link (valid "
                          f"{accounts.INVITATION_DAYS} days, once):\n{link}")
                except (aiosmtplib.SMTPException, OSError) as exc:
                    print(f"The invitation could not be emailed ({exc}): send them this link "
                          f"yourself (valid {accounts.INVITATION_DAYS} days, once):\n{link}")
            elif args.action == "list":
                rows = await store.list_users(pool)
                print(json.dumps([dict(r) for r in rows], default=str, indent=2))
            elif args.action == "disable":
                if not await store.disable_user(pool, args.email):
                    print(f"no enabled account for {args.email}", file=sys.stderr)
                    return 1
                print(f"disabled {args.email}; its sessions are ended")
            elif args.action == "reset-2fa":
                if not await store.reset_totp(pool, args.email):
                    print(f"no account for {args.email}", file=sys.stderr)
                    return 1
                print(f"the second factor of {args.email} is removed and its sessions are "
                      "ended: the password alone signs in, and the person may enrol a new "
                      "phone from 'Mon compte'")
            elif args.action == "unlink-oidc":
                if not await store.unlink_oidc(pool, args.email):
                    print(f"no account for {args.email}", file=sys.stderr)
                    return 1
                print(f"{args.email} is no longer bound to an identity of the OpenID "
                      "provider: the next sign-in through it binds the identity it presents")
        finally:
            await pool.close()
    return 0


async def serve(settings: Settings, names: Sequence[str], worker: bool = False) -> None:
    """Run the named services in this process until SIGINT or SIGTERM; with
    `RELAIS_WORKERS` > 1, in that many processes on the same port (`workers`). `worker`:
    one of them (the port shared, no banner)."""
    embedded: EmbeddedPostgres | None = None
    dsn = settings.database_url
    if dsn is None:
        embedded = EmbeddedPostgres(settings.data_dir / "postgres")
        print(f"Starting the embedded PostgreSQL in {embedded.pgdata} ...", file=sys.stderr)
        dsn = await embedded.start()
    runner: web.AppRunner | None = None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        if settings.workers > 1 and not worker:
            await _serve_workers(settings, names, dsn, embedded is not None, stop)
            return
        app = create_app(settings, dsn, service_specs(names))
        runner = AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, settings.http_host, settings.http_port,
                          reuse_port=worker or None).start()
        if not worker:
            _print_banner(settings, names, embedded is not None)
        await stop.wait()
        if not worker:
            print("Stopping ...", file=sys.stderr)
    finally:
        if runner is not None:
            await runner.cleanup()
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)
            print("Embedded PostgreSQL stopped.", file=sys.stderr)


async def _serve_workers(settings: Settings, names: Sequence[str], dsn: str, embedded: bool,
                         stop: asyncio.Event) -> None:
    overrides: dict[str, str] = {"RELAIS_TRANSPORT": settings.transport,
                                 "RELAIS_DB_POOL_MAX": str(await _worker_pool(settings, dsn))}
    if settings.kafka_bootstrap_servers:
        overrides["RELAIS_KAFKA_BOOTSTRAP_SERVERS"] = settings.kafka_bootstrap_servers
    # The master key made (a first start) before the workers, who would race to write it.
    await asyncio.to_thread(sealing.master_key, settings)
    envs = [workers.worker_env(os.environ, i, dsn, settings.http_port, settings.instance_id,
                               overrides) for i in range(settings.workers)]
    serving = asyncio.Event()
    supervisor = asyncio.create_task(workers.supervise(
        settings.workers, workers.child_command(names), envs, stop, serving))
    host = settings.http_host if settings.http_host not in ("0.0.0.0", "::") else "127.0.0.1"
    if await workers.ready(f"http://{host}:{settings.http_port}/readyz", supervisor):
        serving.set()
        _print_banner(settings, names, embedded)
    if not await supervisor:
        raise CannotStart("a worker could not start: its messages are above")
    print("Stopping ...", file=sys.stderr)


async def _worker_pool(settings: Settings, dsn: str) -> int:
    """Each worker's pool, within what PostgreSQL allows; refused when too many workers."""
    conn = await db.connect(dsn)
    try:
        limit = int(await conn.fetchval("SHOW max_connections")) - int(
            await conn.fetchval("SHOW superuser_reserved_connections"))
        in_use = int(await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"))
    finally:
        await conn.close()
    pool = workers.pool_per_worker(settings.workers, limit, in_use)
    if pool < workers.MIN_POOL:
        need = settings.workers * (workers.PER_PROCESS + workers.MIN_POOL) + in_use
        raise CannotStart(f"{settings.workers} workers need about {need} PostgreSQL "
                          f"connections and the server allows {limit}: run fewer workers, "
                          "or raise its max_connections")
    return min(settings.db_pool_max, pool)


def _print_banner(settings: Settings, names: Sequence[str], embedded: bool) -> None:
    url = f"http://{settings.http_host}:{settings.http_port}"
    where = "embedded PostgreSQL" if embedded else "external PostgreSQL"
    processes = f"; {settings.workers} processes" if settings.workers > 1 else ""
    print(
        f"\nRelais is running at {url}  ({', '.join(names)}; {settings.transport} transport, "
        f"{where}{processes})\n"
        f"  the console: {url}/  (an account first, in another terminal:\n"
        f"               .venv/bin/relais user create --org mission-locale "
        f"--email vous@example.org --name 'Votre Nom'\n"
        f"               then open the link it prints to choose your password)\n"
        f"  the API:     .venv/bin/relais client create --org equipe-aller-vers --name tablette\n"
        f"  health:      curl {url}/healthz   (more in README.md, 'Try it')\n"
        f"Press Ctrl-C to stop.\n",
        file=sys.stderr, flush=True,
    )


def _workers_count(text: str) -> int:
    count = int(text)
    if not 1 <= count <= 64:
        raise argparse.ArgumentTypeError("between 1 and 64")
    return count


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, object] = {}
    if getattr(args, "kafka", None):
        overrides |= {"transport": "kafka", "kafka_bootstrap_servers": args.kafka}
    if getattr(args, "database", None):
        overrides["database_url"] = args.database
    if getattr(args, "port", None):
        overrides["http_port"] = args.port
    if getattr(args, "workers", None):
        overrides["workers"] = args.workers
    settings = load_settings()
    return settings.model_copy(update=overrides) if overrides else settings


def run_alone(name: str) -> None:
    """`python -m services.<name>`: one service alone."""
    main(["up", "--services", name])


def main(argv: Sequence[str] | None = None) -> None:
    """`relais ...`. A reader that stops reading (`relais client list | head -1`) ends the
    command quietly, as it would any Unix tool."""
    try:
        try:
            _main(argv)
        finally:  # what is still buffered goes now, while a closed pipe can be handled
            sys.stdout.flush()
    except CannotStart as refused:  # one line that says why and what to do, no traceback
        print(f"relais: {refused}", file=sys.stderr)
        sys.exit(1)
    except BrokenPipeError:
        # Python's advice (the signal module's documentation): nothing more goes to the
        # closed pipe, not even at exit; the status a shell gives a command SIGPIPE ended.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(128 + signal.SIGPIPE)


def _scopes_help() -> str:
    from services.auth import domain

    width = max(len(scope) for scope in domain.SCOPES)
    lines = [f"  {scope.ljust(width)}  {allows}" for scope, allows in domain.SCOPES.items()]
    return ("scopes (--scopes, space-separated in one argument; a token asks for some\n"
            "or all of its client's):\n" + "\n".join(lines))


def _dlq_parser(sub: Any) -> None:
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("--kafka", metavar="HOST:PORT", help="the kafka transport on this "
                       "cluster (else RELAIS_TRANSPORT and the other settings)")
    where.add_argument("--database", metavar="URL", help="PostgreSQL URL (else "
                       "RELAIS_DATABASE_URL or the embedded one)")
    dlq = sub.add_parser("dlq", help="dead letters: messages a consumer gave up on",
                         description="The messages each consumer gave up on, in its topic "
                         "relais.dlq.<consumer>, named by their PARTITION:OFFSET there.")
    dlq_sub = dlq.add_subparsers(dest="action", required=True)
    listing = dlq_sub.add_parser("list", parents=[where], help="one line per dead letter, "
                                 "handled since or not")
    listing.add_argument("--consumer", help="this consumer's only (all by default)")
    show = dlq_sub.add_parser("show", parents=[where], help="a dead letter's headers, event "
                              "and error")
    show.add_argument("consumer")
    show.add_argument("handle", metavar="PARTITION:OFFSET")
    replay = dlq_sub.add_parser(
        "replay", parents=[where], help="publish dead letters again on their original topics",
        description="Publish a dead letter again, unchanged (its CloudEvent id too), on its "
        "original topic: every consumer of the topic gets it, and each inbox skips it if it "
        "was applied. One already handled is refused without --force.")
    replay.add_argument("consumer")
    replay.add_argument("handle", metavar="PARTITION:OFFSET", nargs="?")
    replay.add_argument("--all", action="store_true", help="every unhandled dead letter of "
                        "the consumer (each event once)")
    replay.add_argument("--force", action="store_true", help="replay it even if handled")


def _main(argv: Sequence[str] | None) -> None:
    parser = argparse.ArgumentParser(prog="relais", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="run the services (all four by default)")
    up.add_argument("--kafka", metavar="HOST:PORT", help="use the kafka transport on this cluster")
    up.add_argument("--database", metavar="URL", help="PostgreSQL URL (else the embedded one)")
    up.add_argument("--port", type=int, help="HTTP port (RELAIS_HTTP_PORT, default 8080)")
    up.add_argument("--services", default=",".join(SERVICE_NAMES),
                    help="comma-separated services to run in this process")
    up.add_argument("--workers", type=_workers_count, help="processes serving the same port "
                    "side by side "
                    "(RELAIS_WORKERS, default 1): one per core the machine gives Relais")
    up.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    client = sub.add_parser("client", help="API clients (OAuth2 client credentials)")
    client_sub = client.add_subparsers(dest="action", required=True)
    create = client_sub.add_parser(
        "create", help="print a new client's id and secret as JSON",
        description="Create an API client (OAuth2 client credentials) of an organisation\n"
        "and print its id and secret as JSON (the secret is shown once).",
        epilog=_scopes_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    create.add_argument("--org", required=True, help="the organisation (directory id)")
    create.add_argument("--name", required=True, help="what the client is, for you "
                        "(e.g. tablette, si-mission-locale)")
    create.add_argument("--scopes", default=DEMO_SCOPES, metavar='"SCOPE ..."',
                        help="what the client may do, space-separated (listed below); "
                        f"default: {DEMO_SCOPES}")
    client_sub.add_parser("list")
    client_sub.add_parser("revoke").add_argument("client_id")
    user = sub.add_parser("user", help="personal accounts of the console")
    user_sub = user.add_subparsers(dest="action", required=True)
    new_user = user_sub.add_parser("create", help="create an account and print the link "
                                   "with which its owner chooses a password")
    new_user.add_argument("--org", required=True, help="the organisation (directory id)")
    new_user.add_argument("--email", required=True)
    new_user.add_argument("--name", required=True, help="first and last name, as shown")
    new_user.add_argument("--role", default="counsellor",
                          choices=["counsellor", "coordinator", "funder", "auditor", "dpo",
                                   "administrator"])
    user_sub.add_parser("list")
    user_sub.add_parser("disable").add_argument("email")
    user_sub.add_parser("reset-2fa", help="remove the person's second factor (a lost phone) "
                        "and end their sessions").add_argument("email")
    user_sub.add_parser("unlink-oidc", help="unbind the person's OpenID Connect identity "
                        "(their `sub` changed at the provider)").add_argument("email")
    keys = sub.add_parser("keys", help="token signing keys")
    keys.add_subparsers(dest="action", required=True).add_parser(
        "rotate", help="sign with a new key; the old one stays published until its tokens expire")
    directory = sub.add_parser("directory", help="organisations, sites and permanences")
    directory_sub = directory.add_subparsers(dest="action", required=True)
    directory_sub.add_parser("load", help="replace the directory with a YAML file").add_argument(
        "file")
    directory_sub.add_parser("show", help="print the directory as YAML")
    di = directory_sub.add_parser(
        "import-data-inclusion", help="add the structures of the national data·inclusion "
        "catalogue (JSON files of its v1 schema) to a directory YAML, to review then load")
    di.add_argument("structures", help="structures.json (a list, or the API's {items: [...]})")
    di.add_argument("services", help="services.json")
    di.add_argument("--commune", action="append", help="keep only structures serving this "
                    "INSEE commune (repeat for several)")
    di.add_argument("--base", help="the directory to add to (YAML); the demo one if unset")
    di.add_argument("--out", help="write the YAML there instead of printing it")
    retention = sub.add_parser("retention", help="the erasure of people past their "
                               "organisations' retention periods")
    report = retention.add_subparsers(dest="action", required=True).add_parser(
        "report", help="who the next run would erase, and why, without erasing")
    report.add_argument("--at", type=_moment, help="as if run at this date or time (ISO "
                        "8601, UTC unless it says otherwise); now if unset")
    intake = sub.add_parser("intake", help="the intake service's identity vault")
    intake.add_subparsers(dest="action", required=True).add_parser(
        "reindex-names", help="compute the search by name's blind index again from the vault "
        "(people recorded before it)")
    master = sub.add_parser("master-key", help="the rotation of the master key: status, and "
                            "everything sealed again under the new one (README, \"Personal "
                            "data\")")
    master_sub = master.add_subparsers(dest="action", required=True)
    master_sub.add_parser("status", help="how much is not yet sealed under the current key")
    master_sub.add_parser("rewrap", help="seal everything again under RELAIS_MASTER_KEY, "
                          "opening it with RELAIS_PREVIOUS_MASTER_KEY; in batches, while "
                          "Relais serves; run it again after a stop").add_argument(
        "--batch", type=int, default=1000, help="rows a transaction (default 1000)")
    audit = sub.add_parser("audit", help="the consent trail")
    audit_sub = audit.add_subparsers(dest="action", required=True)
    audit_sub.add_parser("rotate-key", help="sign the trail's checkpoints with a new key; the "
                         "old ones are retired (private key destroyed, public key still "
                         "published)")
    verify = audit_sub.add_parser(
        "verify", help="verify an export offline: entries, chain, tree heads, signatures")
    verify.add_argument("export", help="the JSON Lines of /v1/audit/consent-trail/export")
    verify.add_argument("--key", help="the auditor's copy of /v1/audit/keys (JSON); without "
                                      "it, the signatures cannot be trusted and the answer is "
                                      "NOT VERIFIED (exit 3)")
    sub.add_parser("backup", help="the database to a file (pg_dump; the master key and the "
                   "erasure ledger stay apart)").add_argument("file", type=Path)
    restore = sub.add_parser("restore", help="a backup back, Relais stopped; the erasures "
                             "made after it are made again")
    restore.add_argument("file", type=Path)
    sub.add_parser("migrate", help="apply every service's missing migrations, start nothing")
    sub.add_parser("openapi", help="print the OpenAPI document (schemas/openapi.json)")
    sub.add_parser("asyncapi", help="print the AsyncAPI document (schemas/asyncapi.json)")
    sub.add_parser("settings", help="print the effective settings as JSON")
    _dlq_parser(sub)
    args = parser.parse_args(argv)
    try:
        settings = _settings(args)
    except InvalidSettings as invalid:  # one line per wrong variable, not a traceback
        for line in invalid.lines:
            print(f"relais: {line}", file=sys.stderr)
        sys.exit(2)
    configure_logging(settings.log_level, settings.log_json)

    if args.command == "up":
        names = [n.strip() for n in args.services.split(",") if n.strip()]
        unknown = sorted(set(names) - set(SERVICE_NAMES))
        if unknown:
            parser.error(f"unknown services: {', '.join(unknown)}")
        configure_tracing(service_name_of(names), settings.trace_statements,
                          settings.trace_requests)
        with asyncio.Runner(loop_factory=uvloop.new_event_loop
                            if settings.event_loop == "uvloop" else None) as runner:
            runner.run(serve(settings, names, worker=args.worker))
    elif args.command == "user":
        sys.exit(asyncio.run(user_command(settings, args)))
    elif args.command in ("client", "keys"):
        sys.exit(asyncio.run(client_command(settings, args)))
    elif args.command == "directory" and args.action == "import-data-inclusion":
        sys.exit(import_data_inclusion(args))
    elif args.command == "directory":
        sys.exit(asyncio.run(directory_command(settings, args)))
    elif args.command == "audit" and args.action == "rotate-key":
        sys.exit(asyncio.run(rotate_trail_key(settings)))
    elif args.command == "audit":
        sys.exit(audit_verify(args.export, args.key))
    elif args.command == "dlq":
        if args.action == "replay" and (args.handle is None) == (not args.all):
            parser.error("relais dlq replay: give one dead letter (PARTITION:OFFSET) or --all")
        sys.exit(asyncio.run(dlq_command(settings, args)))
    elif args.command == "retention":
        sys.exit(asyncio.run(retention_command(settings, args)))
    elif args.command == "intake":
        sys.exit(asyncio.run(intake_command(settings, args)))
    elif args.command == "master-key":
        sys.exit(asyncio.run(master_key_command(settings, args)))
    elif args.command == "migrate":
        sys.exit(asyncio.run(migrate_command(settings)))
    elif args.command in ("backup", "restore"):
        sys.exit(asyncio.run(backup_command(settings, args)))
    elif args.command == "asyncapi":
        print(json.dumps(asyncapi_document(), indent=2, ensure_ascii=False))
    elif args.command == "openapi":
        print(json.dumps(openapi_document(), indent=2, ensure_ascii=False))
    elif args.command == "settings":
        print(json.dumps(shown(settings), indent=2))


if __name__ == "__main__":
    main()
