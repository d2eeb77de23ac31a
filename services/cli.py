"""`relais ...`: run the services, migrate, mint a development token."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Sequence

from aiohttp import web

from services.runtime.app import ServiceSpec, create_app
from services.runtime.auth import TokenIssuer, load_or_create_key
from services.runtime.embedded import EmbeddedPostgres
from services.runtime.logging import configure_logging, get_logger
from services.runtime.settings import Settings
from services.runtime.telemetry import configure_tracing

log = get_logger("relais.cli")
SERVICE_NAMES = ("intake", "consent", "referral", "notify")
DEMO_SCOPES = (
    "intake:write intake:read consent:write consent:read referral:read referral:write "
    "notification:read"
)


def service_specs(names: Sequence[str]) -> list[ServiceSpec]:
    from services import consent, intake, notify, referral

    specs = {"intake": intake.SPEC, "consent": consent.SPEC, "referral": referral.SPEC,
             "notify": notify.SPEC}
    return [specs[name] for name in names]


async def serve(settings: Settings, names: Sequence[str]) -> None:
    """Run the named services in this process until SIGINT or SIGTERM."""
    embedded: EmbeddedPostgres | None = None
    dsn = settings.database_url
    if dsn is None:
        embedded = EmbeddedPostgres(settings.data_dir / "postgres")
        print(f"Starting the embedded PostgreSQL in {embedded.pgdata} ...", file=sys.stderr)
        dsn = await embedded.start()
    runner: web.AppRunner | None = None
    try:
        app = create_app(settings, dsn, service_specs(names))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, settings.http_host, settings.http_port).start()
        _print_banner(settings, names, embedded is not None)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        print("Stopping ...", file=sys.stderr)
    finally:
        if runner is not None:
            await runner.cleanup()
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)
            print("Embedded PostgreSQL stopped.", file=sys.stderr)


def _print_banner(settings: Settings, names: Sequence[str], embedded: bool) -> None:
    url = f"http://{settings.http_host}:{settings.http_port}"
    where = "embedded PostgreSQL" if embedded else "external PostgreSQL"
    print(
        f"\nRelais is running at {url}  ({', '.join(names)}; {settings.transport} transport, "
        f"{where})\n"
        f"  health:      curl {url}/healthz\n"
        f"  a token:     TOKEN=$(.venv/bin/relais token --org equipe-aller-vers)\n"
        f"  an intake:   see README.md, 'Try it'\n"
        f"Press Ctrl-C to stop.\n",
        file=sys.stderr, flush=True,
    )


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, object] = {}
    if getattr(args, "kafka", None):
        overrides |= {"transport": "kafka", "kafka_bootstrap_servers": args.kafka}
    if getattr(args, "database", None):
        overrides["database_url"] = args.database
    if getattr(args, "port", None):
        overrides["http_port"] = args.port
    settings = Settings()
    return settings.model_copy(update=overrides) if overrides else settings


def run_alone(name: str) -> None:
    """`python -m services.<name>`: one service alone."""
    main(["up", "--services", name])


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="relais", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="run the services (all four by default)")
    up.add_argument("--kafka", metavar="HOST:PORT", help="use the kafka transport on this cluster")
    up.add_argument("--database", metavar="URL", help="PostgreSQL URL (else the embedded one)")
    up.add_argument("--port", type=int, help="HTTP port (RELAIS_HTTP_PORT, default 8080)")
    up.add_argument("--services", default=",".join(SERVICE_NAMES),
                    help="comma-separated services to run in this process")
    token = sub.add_parser("token", help="mint a development access token (local signing key)")
    token.add_argument("--org", required=True)
    token.add_argument("--scopes", default=DEMO_SCOPES)
    token.add_argument("--ttl", type=int, default=3600)
    sub.add_parser("settings", help="print the effective settings as JSON")
    args = parser.parse_args(argv)
    settings = _settings(args)
    configure_logging(settings.log_level, settings.log_json)

    if args.command == "up":
        names = [n.strip() for n in args.services.split(",") if n.strip()]
        unknown = sorted(set(names) - set(SERVICE_NAMES))
        if unknown:
            parser.error(f"unknown services: {', '.join(unknown)}")
        configure_tracing()
        asyncio.run(serve(settings, names))
    elif args.command == "token":
        issuer = TokenIssuer(load_or_create_key(settings.key_file), settings.jwt_issuer,
                             settings.jwt_audience)
        print(issuer.issue(args.org, args.scopes, ttl=args.ttl))
    elif args.command == "settings":
        print(json.dumps(settings.model_dump(mode="json"), indent=2))


if __name__ == "__main__":
    main()
