"""Issue #18: Relais's contracts read by tools nobody on the project wrote. The OpenAPI
document passes openapi-spec-validator and Redocly's recommended ruleset with no error and no
warning; the official AsyncAPI parser reads the AsyncAPI document with no diagnostic; the
records a flow leaves on a real Kafka broker, read back without a consumer group, are
CloudEvents for the SDK's Kafka binding, their headers valid against the document's
CloudEvents headers and their key the person id, each `data` valid (jsonschema) against its
message's payload in the AsyncAPI document, and carry no personal data."""

from __future__ import annotations

import json
import os
import subprocess
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
NODE = Path(__file__).resolve().parent / "node"  # its node_modules: `make test` installs them


def test_openapi_spec_validator_accepts_the_document() -> None:
    validate(json.loads((SCHEMAS / "openapi.json").read_text()))  # raises on any error


def redocly(document: dict[str, Any], tmp_path: Path) -> list[dict[str, Any]]:
    """What Redocly's recommended ruleset finds in `document` (errors and warnings)."""
    path = tmp_path / "openapi.json"
    path.write_text(json.dumps(document))
    run = subprocess.run(
        [str(NODE / "node_modules/.bin/redocly"), "lint", "--extends", "recommended",
         "--format", "json", str(path)], capture_output=True, text=True, timeout=120,
        env=os.environ | {"REDOCLY_TELEMETRY": "off", "REDOCLY_SUPPRESS_UPDATE_NOTICE": "true"})
    problems: list[dict[str, Any]] = json.loads(run.stdout)["problems"]
    return problems


def test_redocly_recommended_ruleset_finds_nothing_in_the_openapi_document(
        tmp_path: Path) -> None:
    problems = redocly(json.loads((SCHEMAS / "openapi.json").read_text()), tmp_path)
    assert [(p["ruleId"], p["severity"], p["location"][0]["pointer"]) for p in problems] == []


def test_redocly_would_see_an_operation_without_4xx(tmp_path: Path) -> None:
    document = json.loads((SCHEMAS / "openapi.json").read_text())
    healthz = document["paths"]["/healthz"]["get"]["responses"]
    healthz.pop("429")
    problems = redocly(document, tmp_path)
    assert [(p["ruleId"], p["location"][0]["pointer"]) for p in problems] == [
        ("operation-4xx-response", "#/paths/~1healthz/get/responses")]


def asyncapi_parser(document: dict[str, Any], tmp_path: Path) -> list[dict[str, Any]]:
    """The official AsyncAPI parser's diagnostics on `document` (severity 0 is an error, 1 a
    warning, 2 information, 3 a hint)."""
    path = tmp_path / "asyncapi.json"
    path.write_text(json.dumps(document))
    run = subprocess.run(["node", str(NODE / "asyncapi.mjs"), str(path)], capture_output=True,
                         text=True, timeout=120)
    diagnostics: list[dict[str, Any]] = json.loads(run.stdout)
    return diagnostics


def test_the_asyncapi_parser_reads_the_document_with_no_diagnostic(tmp_path: Path) -> None:
    document = json.loads((SCHEMAS / "asyncapi.json").read_text())
    assert document["asyncapi"] == "3.1.0"
    assert asyncapi_parser(document, tmp_path) == []


def test_the_asyncapi_parser_would_see_an_operation_on_a_missing_channel(
        tmp_path: Path) -> None:
    document = json.loads((SCHEMAS / "asyncapi.json").read_text())
    document["channels"].pop("relais_dlq_notify")
    errors = [d for d in asyncapi_parser(document, tmp_path) if d["severity"] == 0]
    assert errors and all("notify_dead_letters" in d["path"] for d in errors), errors


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
    headers_schema = document["components"]["schemas"]["CloudEventHeaders"]
    seen = set()
    for record in await records(settings):
        event = ce_kafka.from_binary_event(ce_kafka.KafkaMessage(
            headers=dict(record.headers), key=record.key, value=record.value))
        kind = event.get_type()
        jsonschema.validate({k: v.decode() for k, v in record.headers}, headers_schema,
                            format_checker=jsonschema.FormatChecker())
        assert record.key.decode() == event.get_subject(), "the key is the person id"
        assert kind in by_type, f"{kind} is not in the AsyncAPI document"
        schema = {"$ref": by_type[kind]["payload"]["$ref"], "components":
                  document["components"]}
        jsonschema.validate(event.get_data(), schema)
        text = json.dumps(event.get_data(), ensure_ascii=False)
        assert "Léa" not in text and "06 12" not in text, f"personal data in {kind}"
        seen.add(kind)
    assert {"fr.relais.intake.recorded.v1", "fr.relais.consent.granted.v1"} <= seen, seen
