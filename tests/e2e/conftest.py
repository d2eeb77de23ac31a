from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from joserfc.jwk import OKPKey

from deploy.kafka.broker import free_port
from services.auth.api import KEYS
from services.cli import DEMO_SCOPES, SERVICE_NAMES, service_specs
from services.runtime.app import create_app
from services.runtime.auth import TokenIssuer
from services.runtime.settings import Settings
from tests.conftest import Mailbox


@pytest.fixture(params=["postgres", "kafka"])
def settings(request: pytest.FixtureRequest, database: str, smtp_server: Mailbox,
             tmp_path: Path) -> Settings:
    values: dict[str, object] = {
        "data_dir": tmp_path, "database_url": database, "smtp_port": smtp_server.port,
        "poll_interval": 0.5, "consumer_backoff": 0.05,
        "webhook_allowed_networks": ["127.0.0.0/8"],
    }
    if request.param == "kafka":
        values |= {"transport": "kafka",
                   "kafka_bootstrap_servers": request.getfixturevalue("kafka_bootstrap"),
                   "kafka_namespace": f"e2e{uuid.uuid4().hex[:8]}."}
    return Settings.model_validate(values)


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    assert settings.database_url
    app = create_app(settings, settings.database_url, service_specs(SERVICE_NAMES))
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield client


class Tokens:
    """Tokens signed with the running auth service's current key (the token endpoint itself
    is tested in tests/integration/test_oauth.py)."""

    def __init__(self, key: OKPKey, settings: Settings) -> None:
        self.issuer = TokenIssuer(key, settings.issuer, settings.jwt_audience)

    def headers(self, org: str, scopes: str = DEMO_SCOPES, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.issuer.issue(org, scopes)}", **extra}


@pytest.fixture
async def tokens(client: TestClient[web.Request, web.Application], settings: Settings) -> Tokens:
    return Tokens(await client.app[KEYS].signing(), settings)


@dataclass
class Receiver:
    """A real HTTP endpoint that records what it receives and answers from a script."""

    port: int
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    script: list[int] = field(default_factory=list)  # statuses to answer first, then 200

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((dict(request.headers), await request.read()))
        return web.Response(status=self.script.pop(0) if self.script else 200)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    hooks = Receiver(free_port())
    app = web.Application()
    app.router.add_post("/hooks", hooks.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", hooks.port).start()
    yield hooks
    await runner.cleanup()
