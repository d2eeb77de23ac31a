"""JSON Schema and an AsyncAPI 3.0 document for the events, generated from the payload models
in `schemas.events` (committed as schemas/asyncapi.json; a test fails when they drift)."""

from __future__ import annotations

from typing import Any

from pydantic.json_schema import models_json_schema

from schemas.events import EVENT_MODELS, EventData

TOPICS = {
    "relais.intake": "Contacts, signals, erasures, reads of personal data, the directory.",
    "relais.consent": "Consents granted, withdrawn (whole or in part), expired.",
    "relais.referral": "Referrals and their statuses.",
    "relais.notification": "Notifications and their delivery.",
}


def _topic(event_type: str) -> str:
    return "relais." + event_type.removeprefix("fr.relais.").split(".", 1)[0]


def _name(event_type: str) -> str:
    return "".join(part.capitalize() for part in
                   event_type.removeprefix("fr.relais.").replace("_", ".").split("."))


def document(version: str = "0.1.0") -> dict[str, Any]:
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
        }
        for event_type, model in EVENT_MODELS.items()
    }
    channels = {
        topic.replace(".", "_"): {
            "address": topic,
            "description": description,
            "messages": {name: {"$ref": f"#/components/messages/{name}"}
                         for name, message in messages.items()
                         if _topic(message["name"]) == topic},
        }
        for topic, description in TOPICS.items()
    }
    schemas = dict(defs.get("$defs", {})) | {"CloudEventHeaders": {
        "type": "object",
        "description": "CloudEvents 1.0, Kafka binary mode. The message key is the "
                       "pseudonymous person id (ce_subject).",
        "required": ["ce_specversion", "ce_id", "ce_type", "ce_source", "ce_time"],
        "properties": {name: {"type": "string"} for name in (
            "ce_specversion", "ce_id", "ce_type", "ce_source", "ce_subject", "ce_time",
            "ce_partitionkey", "ce_traceparent", "content-type")},
    }}
    return {
        "asyncapi": "3.0.0",
        "info": {"title": "Relais events", "version": version,
                 "description": "Inside a version only additive changes; a breaking change is "
                                "a new type. No identity, contact details or notes."},
        "defaultContentType": "application/json",
        "channels": channels,
        "components": {"messages": messages, "schemas": dict(sorted(schemas.items()))},
    }
