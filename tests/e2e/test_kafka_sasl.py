"""Issue #13: Relais on a Kafka cluster that asks who is calling, as Strimzi's KafkaUsers and
managed clusters do: a real broker with a SASL_PLAINTEXT listener, then a SASL_SSL one (TLS,
its certificate signed by a CA of its own, as Strimzi's cluster CA), and SCRAM-SHA-512 users;
Relais given its user, the password from a file (a mounted Secret) and the CA carries a
consented flow to the partner's email; the wrong password is refused by the broker, and so is
a client that does not trust the broker's CA."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from aiokafka.errors import KafkaError

from bench.faults import INTAKE
from deploy.kafka.broker import KafkaBroker
from services.auth.api import KEYS
from services.cli import SERVICE_NAMES, service_specs
from services.runtime.app import create_app
from services.runtime.settings import Settings
from services.runtime.transport import kafka_security, make_transport
from tests.conftest import Mailbox
from tests.e2e.conftest import Tokens
from tests.integration.test_intake import SCOPES, TEAM

PASSWORD = "un mot de passe de courtier"


def sasl(settings: dict[str, object], broker: KafkaBroker, secret: Path,
         trusted: bool = True) -> Settings:
    ca = broker.certificates.ca if broker.certificates is not None and trusted else None
    return Settings.model_validate(settings | {
        "transport": "kafka", "kafka_bootstrap_servers": broker.bootstrap,
        "kafka_security_protocol": broker.protocol, "kafka_sasl_username": "relais",
        "kafka_sasl_password_file": secret, "kafka_ca_file": ca})


@pytest.mark.parametrize("tls", [False, True], ids=["SASL_PLAINTEXT", "SASL_SSL"])
async def test_a_consented_flow_crosses_a_cluster_that_asks_for_a_password(
        database: str, smtp_server: Mailbox, tmp_path: Path, tls: bool) -> None:
    broker = await asyncio.to_thread(
        KafkaBroker(tmp_path / "kafka", users={"relais": PASSWORD}, tls=tls).start)
    try:
        secret = tmp_path / "kafka-password"
        secret.write_text(PASSWORD + "\n")
        settings = sasl({"data_dir": tmp_path, "database_url": database,
                         "smtp_port": smtp_server.port, "poll_interval": 0.5}, broker, secret)
        assert kafka_security(settings)["sasl_plain_password"] == PASSWORD
        app = create_app(settings, database, service_specs(SERVICE_NAMES))
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            tokens = Tokens(await client.app[KEYS].signing(), settings)
            headers = tokens.headers(TEAM, SCOPES)
            intake = await client.post("/v1/intakes", json=INTAKE, headers=headers | {
                "Idempotency-Key": str(uuid.uuid4())})
            assert intake.status == 201, await intake.text()
            person = (await intake.json())["person_id"]
            consent = await client.post("/v1/consents", headers=headers | {
                "Idempotency-Key": str(uuid.uuid4())}, json={
                "person_id": person, "purposes": ["referral_partner"],
                "recipients": ["mission-locale"], "categories": ["needs"],
                "notice_version": "2026-01", "method": "signed_screen",
                "captured_by": "Camille"})
            assert consent.status == 201, await consent.text()
            [email] = await smtp_server.wait_for(1, timeout=60)
            assert "mission-locale" in email["To"]

        if tls:  # a client that trusts only the system's CAs does not reach the broker
            untrusting = make_transport(
                sasl({"database_url": database}, broker, secret, trusted=False), database)
            with pytest.raises(KafkaError):  # not a hang: the handshake fails
                await asyncio.wait_for(untrusting.setup(["relais.refused"]), 30)
        secret.write_text("pas le bon\n")
        wrong = make_transport(sasl({"database_url": database}, broker, secret), database)
        with pytest.raises(KafkaError):
            await asyncio.wait_for(wrong.setup(["relais.refused"]), 60)
    finally:
        await asyncio.to_thread(broker.stop)
