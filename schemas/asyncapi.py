"""JSON Schema and an AsyncAPI 3.1 document for the events, generated from the payload models
in `schemas.events` and from what each service sends and receives (committed as
schemas/asyncapi.json; a test fails when they drift, and the official AsyncAPI parser reads it
in tests/interop/)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic.json_schema import models_json_schema

from schemas.events import EVENT_MODELS, EventData

TOPICS = {
    "relais.intake": "Contacts, signals, erasures, reads of personal data, the directory.",
    "relais.consent": "Consents granted, withdrawn (whole or in part), expired.",
    "relais.referral": "Referrals and their statuses.",
    "relais.notification": "Notifications and their delivery.",
}
KAFKA = "0.5.0"
"""The version of the AsyncAPI Kafka bindings used."""
TRACEPARENT = {"type": "string", "pattern": "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"}
PERSON_KEY = {"type": "string",
              "anyOf": [{"format": "uuid"}, {"const": "directory"}],
              "description": "The pseudonymous person id (the CloudEvent's subject): one "
                             "person's events are on one partition, in order. "
                             "`directory` for the directory's updates."}


@dataclass(frozen=True)
class Service:
    """What a service sends and receives: the topics it publishes (through its outbox) and,
    for each of its consumers, the consumer group's name and the topics it reads."""

    name: str
    sends: tuple[str, ...]
    consumers: tuple[tuple[str, tuple[str, ...]], ...]


def dead_letter_topic(consumer: str) -> str:
    return f"relais.dlq.{consumer}"


def _topic(event_type: str) -> str:
    return "relais." + event_type.removeprefix("fr.relais.").split(".", 1)[0]


def _name(event_type: str) -> str:
    return "".join(part.capitalize() for part in
                   event_type.removeprefix("fr.relais.").replace("_", ".").split("."))


def _id(address: str) -> str:
    return address.replace(".", "_")


def _headers() -> dict[str, Any]:
    text = {"type": "string"}
    return {
        "type": "object",
        "description": "CloudEvents 1.0 in Kafka binary mode (each attribute a `ce_` header, "
                       "the data the record's value), and the W3C trace context.",
        "required": ["ce_specversion", "ce_id", "ce_type", "ce_source", "ce_subject",
                     "ce_time", "content-type"],
        "properties": {
            "ce_specversion": {"type": "string", "const": "1.0"},
            "ce_id": text | {"description": "Unique per event: a consumer that sees it twice "
                                            "handles it once."},
            "ce_type": text | {"description": "The event type, e.g. "
                                              "fr.relais.intake.recorded.v1."},
            "ce_source": text | {"description": "The service that published it, e.g. "
                                                "/relais/intake."},
            "ce_subject": PERSON_KEY,
            "ce_time": {"type": "string", "format": "date-time"},
            "ce_partitionkey": PERSON_KEY,
            "content-type": {"type": "string", "const": "application/json"},
            "ce_traceparent": TRACEPARENT | {"description": "The trace of the request that "
                                                            "caused the event."},
            "traceparent": TRACEPARENT | {"description": "W3C trace context: the same trace, "
                                                         "at the publish span."},
        },
    }


def _dead_letter_headers() -> dict[str, Any]:
    text = {"type": "string"}
    return {
        "type": "object",
        "description": "The original record's headers, as they were, and why it is here.",
        "required": ["relais_dlq_consumer", "relais_dlq_topic", "relais_dlq_partition",
                     "relais_dlq_offset", "relais_dlq_attempts", "relais_dlq_error"],
        "properties": {
            "relais_dlq_consumer": text | {"description": "The consumer group that gave up."},
            "relais_dlq_topic": text | {"description": "Where the record was read."},
            "relais_dlq_partition": {"type": "string", "pattern": "^[0-9]+$"},
            "relais_dlq_offset": {"type": "string", "pattern": "^[0-9]+$"},
            "relais_dlq_attempts": {"type": "string", "pattern": "^[0-9]+$"},
            "relais_dlq_error": text | {"description": "The last error (2,000 characters at "
                                                       "most)."},
        },
    }


def _kafka_key() -> dict[str, Any]:
    return {"kafka": {"key": PERSON_KEY, "bindingVersion": KAFKA}}


def _group(name: str) -> dict[str, Any]:
    return {"kafka": {"groupId": {"type": "string", "const": name,
                                  "description": "Prefixed by RELAIS_KAFKA_NAMESPACE."},
                      "bindingVersion": KAFKA}}


def _operations(services: Sequence[Service]) -> dict[str, Any]:
    operations: dict[str, Any] = {}
    for service in services:
        for topic in service.sends:
            operations[f"{service.name}_sends_{_id(topic)}"] = {
                "action": "send", "channel": {"$ref": f"#/channels/{_id(topic)}"},
                "summary": f"The {service.name} service publishes its events, from its "
                           "outbox, once each committed change is stored.",
            }
        for consumer, topics in service.consumers:
            for topic in topics:
                operations[f"{consumer}_receives_{_id(topic)}"] = {
                    "action": "receive", "channel": {"$ref": f"#/channels/{_id(topic)}"},
                    "summary": f"The {service.name} service reads {topic} (at least once; "
                               "duplicates are handled once).",
                    "bindings": _group(consumer),
                }
            dead = dead_letter_topic(consumer)
            operations[f"{consumer}_dead_letters"] = {
                "action": "send", "channel": {"$ref": f"#/channels/{_id(dead)}"},
                "summary": f"What the {consumer} consumer could not handle after its retries "
                           "(`relais dlq list|show|replay`).",
            }
    return operations


def document(services: Sequence[Service], version: str = "0.1.0") -> dict[str, Any]:
    models: list[tuple[type[EventData], Any]] = [
        (model, "serialization") for model in EVENT_MODELS.values()]
    keys, defs = models_json_schema(models, ref_template="#/components/schemas/{model}")
    messages: dict[str, dict[str, Any]] = {
        _name(event_type): {
            "name": event_type,
            "title": event_type,
            "summary": (model.__doc__ or "").strip().splitlines()[0] if model.__doc__ else "",
            "contentType": "application/json",
            "headers": {"$ref": "#/components/schemas/CloudEventHeaders"},
            "payload": keys[(model, "serialization")],
            "bindings": _kafka_key(),
        }
        for event_type, model in EVENT_MODELS.items()
    }
    messages["DeadLetter"] = {
        "name": "dead-letter", "title": "Dead letter",
        "summary": "A record a consumer gave up on: its key, value and headers as they were, "
                   "and why.",
        "headers": {"allOf": [{"$ref": "#/components/schemas/CloudEventHeaders"},
                              {"$ref": "#/components/schemas/DeadLetterHeaders"}]},
        "payload": {"description": "The original record's value, byte for byte (it may not "
                                   "be a valid event: that may be why it is here)."},
        "bindings": _kafka_key(),
    }
    channels: dict[str, Any] = {
        _id(topic): {
            "address": topic,
            "description": description,
            "messages": {name: {"$ref": f"#/components/messages/{name}"}
                         for name, message in messages.items()
                         if _topic(message["name"]) == topic},
            "bindings": {"kafka": {"topic": topic, "bindingVersion": KAFKA}},
        }
        for topic, description in TOPICS.items()
    }
    for service in services:
        for consumer, _ in service.consumers:
            dead = dead_letter_topic(consumer)
            channels[_id(dead)] = {
                "address": dead,
                "description": f"Dead letters of the {consumer} consumer.",
                "messages": {"DeadLetter": {"$ref": "#/components/messages/DeadLetter"}},
                "bindings": {"kafka": {"topic": dead, "bindingVersion": KAFKA}},
            }
    schemas = dict(defs.get("$defs", {})) | {"CloudEventHeaders": _headers(),
                                              "DeadLetterHeaders": _dead_letter_headers()}
    return {
        "asyncapi": "3.1.0",
        "info": {"title": "Relais events", "version": version,
                 "description": "Inside a version only additive changes; a breaking change is "
                                "a new type. No identity, contact details or notes.",
                 "license": {"name": "AGPL-3.0-or-later",
                             "url": "https://www.gnu.org/licenses/agpl-3.0.html"}},
        "defaultContentType": "application/json",
        "servers": {"kafka": {
            "host": "kafka:9092", "protocol": "kafka",
            "description": "RELAIS_KAFKA_BOOTSTRAP_SERVERS (this host is docker-compose.yml's "
                           "broker); topic and group names are prefixed by "
                           "RELAIS_KAFKA_NAMESPACE. On the postgres transport (the default) "
                           "the same records live in PostgreSQL and nothing is on a broker.",
            "bindings": {"kafka": {"bindingVersion": KAFKA}}}},
        "channels": dict(sorted(channels.items())),
        "operations": _operations(services),
        "components": {"messages": messages, "schemas": dict(sorted(schemas.items()))},
    }
