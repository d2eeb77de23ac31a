"""The committed AsyncAPI document is the one the event models and the services give, every
event type has its message on the right channel, and every consumer its operations and its
dead-letter channel."""

from __future__ import annotations

import json
from pathlib import Path

from schemas.events import EVENT_MODELS
from services.cli import SERVICE_NAMES, asyncapi_document, service_specs

COMMITTED = Path(__file__).resolve().parents[2] / "schemas" / "asyncapi.json"


def test_the_committed_asyncapi_is_the_generated_one() -> None:
    assert json.loads(COMMITTED.read_text()) == asyncapi_document(), (
        "the events changed: run `make schemas` and commit the result")


def test_every_event_type_is_on_its_topic() -> None:
    document = asyncapi_document()
    published = {m["name"]: channel["address"] for channel in document["channels"].values()
                 for m in (document["components"]["messages"][ref["$ref"].rsplit("/", 1)[1]]
                           for ref in channel["messages"].values())
                 if m["name"] != "dead-letter"}
    assert set(published) == set(EVENT_MODELS)
    for event_type, topic in published.items():
        assert topic == "relais." + event_type.split(".")[2]


def test_each_consumer_receives_its_topics_and_sends_its_dead_letters() -> None:
    document = asyncapi_document()
    operations = document["operations"]
    for spec in service_specs(SERVICE_NAMES):
        for topic in spec.produces:
            sent = operations[f"{spec.name}_sends_{topic.replace('.', '_')}"]
            assert sent["action"] == "send"
        for consumer in spec.consumers:
            for topic in consumer.topics:
                received = operations[f"{consumer.name}_receives_{topic.replace('.', '_')}"]
                assert received["action"] == "receive"
                assert received["channel"]["$ref"] == f"#/channels/{topic.replace('.', '_')}"
                assert received["bindings"]["kafka"]["groupId"]["const"] == consumer.name
            dead = operations[f"{consumer.name}_dead_letters"]["channel"]["$ref"]
            assert document["channels"][dead.rsplit("/", 1)[1]]["address"] == (
                f"relais.dlq.{consumer.name}")
