"""Issue #18: Relais's contracts read by tools nobody on the project wrote. The OpenAPI
document passes openapi-spec-validator; the records a flow leaves on a real Kafka broker,
read back without a consumer group, are CloudEvents for the SDK's Kafka binding, each `data` valid
(jsonschema) against its message's payload in the AsyncAPI document, and carry no personal
data."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from aiohttp.test_utils import TestClient, TestServer
from cloudevents.core.bindings import kafka as ce_kafka
from openapi_spec_validator import validate

from services.auth.api import KEYS
from services.cli import SERVICE_NAMES, service_specs
from services.runtime.app import create_app
from services.runtime.settings import Settings
from services.runtime.transport import make_transport
from tests.e2e.conftest import Tokens
from tests.e2e.test_skeleton import consent_body, intake_body, post, wait_for_referral

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
TOPICS = ("relais.intake", "relais.consent", "relais.referral", "relais.notification")


def test_openapi_spec_validator_accepts_the_document() -> None:
    validate(json.loads((SCHEMAS / "openapi.json").read_text()))  # raises on any error


async def records(settings: Settings) -> list[Any]:
    """Every record of Relais's topics on the broker, read without a consumer group."""
    assert settings.database_url
    transport = make_transport(settings, settings.database_url)
    return [record for topic in TOPICS for record in await transport.read_topic(topic)]


@pytest.fixture
async def on_kafka(database: str, kafka_bootstrap: str, tmp_path: Path
                   ) -> AsyncIterator[tuple[TestClient[Any, Any], Tokens, Settings]]:
    """Relais on the kafka transport and a real broker, its topics in a namespace of its own."""
    settings = Settings.model_validate({
        "data_dir": tmp_path, "database_url": database, "poll_interval": 0.5,
        "transport": "kafka", "kafka_bootstrap_servers": kafka_bootstrap,
        "kafka_namespace": f"interop{uuid.uuid4().hex[:8]}."})
    app = create_app(settings, database, service_specs(SERVICE_NAMES))
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield client, Tokens(await client.app[KEYS].signing(), settings), settings


async def test_every_record_is_a_cloudevent_valid_against_the_asyncapi_document(
        on_kafka: tuple[TestClient[Any, Any], Tokens, Settings]) -> None:
    client, tokens, settings = on_kafka
    intake = await post(client, tokens, "/v1/intakes", intake_body() | {
        "identity": {"first_name": "Léa", "phone": "06 12 34 56 78"}})
    await post(client, tokens, "/v1/consents", consent_body(intake["person_id"]))
    await wait_for_referral(client, tokens, intake["id"], "requested")
    document = json.loads((SCHEMAS / "asyncapi.json").read_text())
    by_type = {m["name"]: m for m in document["components"]["messages"].values()}
    seen = set()
    for record in await records(settings):
        event = ce_kafka.from_binary_event(ce_kafka.KafkaMessage(
            headers=dict(record.headers), key=record.key, value=record.value))
        kind = event.get_type()
        assert kind in by_type, f"{kind} is not in the AsyncAPI document"
        schema = {"$ref": by_type[kind]["payload"]["$ref"], "components":
                  document["components"]}
        jsonschema.validate(event.get_data(), schema)
        text = json.dumps(event.get_data(), ensure_ascii=False)
        assert "Léa" not in text and "06 12" not in text, f"personal data in {kind}"
        seen.add(kind)
    assert {"fr.relais.intake.recorded.v1", "fr.relais.consent.granted.v1"} <= seen, seen
