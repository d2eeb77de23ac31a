"""CloudEvents 1.0 envelopes in Kafka binary mode, and the records the transports carry.

An event's key is the pseudonymous person id (the `partitionkey` extension), so one person's
events stay in order within a topic. The W3C trace context travels as the `traceparent`
extension (CloudEvents distributed tracing), i.e. the `ce_traceparent` header."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import BaseModel

TYPE_PREFIX = "fr.relais."


class PoisonMessage(Exception):
    """A message that can never be processed: it goes to the dead-letter topic at once."""


@dataclass(frozen=True, slots=True)
class Record:
    """A message to publish: what both transports store and deliver."""

    topic: str
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True, slots=True)
class Message:
    """A delivered record with its position."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True, slots=True)
class Event:
    type: str
    source: str
    subject: str
    data: dict[str, Any]
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    time: datetime = field(default_factory=lambda: datetime.now(UTC))
    traceparent: str | None = None

    @property
    def key(self) -> str:
        return self.subject

    @property
    def topic(self) -> str:
        return topic_for(self.type)


def topic_for(event_type: str) -> str:
    """`fr.relais.intake.recorded.v1` is published on `relais.intake`."""
    if not event_type.startswith(TYPE_PREFIX):
        raise ValueError(f"event type outside {TYPE_PREFIX}*: {event_type}")
    return "relais." + event_type[len(TYPE_PREFIX) :].split(".", 1)[0]


def new_event(
    event_type: str, source: str, person_id: str, data: BaseModel | dict[str, Any]
) -> Event:
    payload = data.model_dump(mode="json") if isinstance(data, BaseModel) else data
    return Event(type=event_type, source=source, subject=person_id, data=payload)


def encode(event: Event, traceparent: str | None = None) -> Record:
    """The event in Kafka binary mode: its attributes as `ce_` headers (in the order, and the
    form, of the CloudEvents SDK's binding, which `decode` reads; tests/unit/test_events.py
    checks them against it), its data as compact UTF-8 JSON. Made here rather than through
    the SDK's CloudEvent object, whose validation of each attribute took 50 µs an event, a
    thirtieth of an intake's CPU (profile of 2026-12-07): the events are Relais's own.
    `traceparent`: the trace context to carry when the event names none."""
    if not (event.id and event.type and event.source and event.subject):
        raise ValueError(f"an event needs an id, a type, a source and a person: {event.type!r}"
                         f" {event.id!r}")
    trace = event.traceparent or traceparent
    headers = [("ce_id", event.id.encode()), ("ce_type", event.type.encode()),
               ("ce_source", event.source.encode()), ("ce_subject", event.subject.encode()),
               ("ce_time", _timestamp(event.time)), ("content-type", b"application/json"),
               ("ce_partitionkey", event.key.encode())]
    if trace:
        headers.append(("ce_traceparent", trace.encode()))
    headers.append(("ce_specversion", b"1.0"))
    return Record(event.topic, event.key.encode(), orjson.dumps(event.data), tuple(headers))


def _timestamp(when: datetime) -> bytes:
    """RFC 3339, in UTC with `Z` (as the SDK writes it)."""
    if when.utcoffset() is None:
        raise ValueError("an event's time needs its time zone")
    text = when.astimezone(UTC).isoformat()
    return (text[:-6] + "Z").encode()


REQUIRED = ("ce_id", "ce_type", "ce_source")
JSON_TYPE = re.compile(r"^(application|text)/([\w.-]+\+)?json(;.*)?$", re.IGNORECASE)
"""The content types whose data is JSON (the SDK's rule)."""


def decode(message: Message | Record) -> Event:
    """The event of a record in Kafka binary mode (CloudEvents 1.0, JSON data, an object);
    anything else is poison. Read here as `encode` writes (the SDK's object took 50 µs an
    event, on every consumer's side), with the SDK's rules for what a producer elsewhere may
    write (header names in any case, no `ce_specversion` meaning 1.0, a JSON content type of
    any flavour, `z` for `Z`); stricter on what no CloudEvent 1.0 of Relais is: another spec
    version, an empty subject (the person, the partition key), a header without a value
    (aiokafka's None) where a value is needed, NaN in the data.
    tests/unit/test_events.py checks it against the SDK."""
    try:
        headers = {name.lower(): value for name, value in message.headers}
        if headers.get("ce_specversion", b"1.0") != b"1.0":
            raise PoisonMessage("not a CloudEvent 1.0 in Kafka binary mode (ce_specversion)")
        missing = [name for name in REQUIRED if not headers.get(name)]
        if missing:
            raise PoisonMessage(f"not a CloudEvent: no {', '.join(missing)}")
        content_type = (headers.get("content-type") or b"application/json").decode()
        if not JSON_TYPE.match(content_type):
            raise PoisonMessage(f"event data is not JSON: {content_type}")
        data = orjson.loads(message.value)
        if not isinstance(data, dict):
            raise PoisonMessage("event data is not a JSON object")
        time = (datetime.fromisoformat(headers["ce_time"].decode().upper())
                if "ce_time" in headers else datetime.now(UTC))
        if time.utcoffset() is None:
            raise PoisonMessage("the event's time has no time zone")
        subject = headers.get("ce_subject", b"")
        if not subject and "ce_subject" in headers:
            raise PoisonMessage("not a CloudEvent of Relais: an empty subject")
        trace = headers.get("ce_traceparent")
        return Event(type=headers["ce_type"].decode(), source=headers["ce_source"].decode(),
                     subject=subject.decode(), data=data,
                     id=headers["ce_id"].decode(), time=time,
                     traceparent=trace.decode() if trace else None)
    except PoisonMessage:
        raise
    except Exception as exc:  # a value that is no text, no JSON, no time; a header of None
        raise PoisonMessage(f"not a CloudEvent in Kafka binary mode: {exc}") from exc
