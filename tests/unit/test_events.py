from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.v1.event import CloudEvent

from services.runtime.events import Event, Message, PoisonMessage, decode, encode, topic_for
from services.runtime.transport.postgres import partition_for


def test_an_event_travels_in_kafka_binary_mode_and_comes_back_whole() -> None:
    event = Event("fr.relais.intake.recorded.v1", "/relais/intake", "person-1", {"a": [1, "é"]},
                  traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    record = encode(event)
    headers = dict(record.headers)
    assert record.topic == "relais.intake"
    assert record.key == b"person-1"
    assert headers["ce_specversion"] == b"1.0"
    assert headers["ce_type"] == b"fr.relais.intake.recorded.v1"
    assert headers["ce_id"] == event.id.encode()
    assert headers["content-type"] == b"application/json"
    assert b"person-1" not in record.value, "the key is not repeated in the data"
    back = decode(Message(record.topic, 0, 0, record.key, record.value, record.headers))
    assert back == event


@pytest.mark.parametrize("event", [
    Event("fr.relais.intake.recorded.v1", "/relais/intake", "person-1", {"a": [1, "é"]},
          traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
    Event("fr.relais.consent.granted.v1", "/relais/consent", "p-2", {},
          time=datetime(2026, 12, 7, 14, 0, tzinfo=UTC)),
    Event("fr.relais.referral.accepted.v1", "/relais/referral", "p", {"n": None, "x": 1.5},
          time=datetime(2026, 12, 7, 15, 0, 1, 5, tzinfo=timezone(timedelta(hours=1)))),
])
def test_an_event_is_encoded_and_read_as_the_cloudevents_sdk_would(event: Event) -> None:
    """encode and decode do the binary mode themselves (the SDK's object costs 50 µs an event
    each way): the same key and headers, in the same order, as the SDK's binding writes, the
    same data; what decode reads is what the SDK reads."""
    attributes = {"id": event.id, "type": event.type, "source": event.source,
                  "subject": event.subject, "time": event.time.astimezone(UTC),
                  "datacontenttype": "application/json", "partitionkey": event.key}
    if event.traceparent:
        attributes["traceparent"] = event.traceparent
    sdk = ce_kafka.to_binary_event(CloudEvent(attributes, event.data))
    record = encode(event)
    assert isinstance(sdk.key, str)
    assert record.key == sdk.key.encode()
    assert list(record.headers) == list(sdk.headers.items())
    assert json.loads(record.value) == json.loads(sdk.value)
    back = decode(Message(record.topic, 0, 0, record.key, record.value, record.headers))
    assert back == event
    read = ce_kafka.from_binary_event(ce_kafka.KafkaMessage(
        headers=dict(record.headers), key=record.key, value=record.value))
    assert (read.get_id(), read.get_type(), read.get_source(), read.get_subject(),
            read.get_time(), read.get_data(), read.get_extension("traceparent")) == (
        back.id, back.type, back.source, back.subject, back.time, back.data, back.traceparent)


@pytest.mark.parametrize("headers", [
    (("CE_SPECVERSION", b"1.0"), ("Ce_Id", b"1"), ("ce_type", b"t"), ("ce_source", b"/s"),
     ("Content-Type", b"application/json")),
    (("ce_id", b"1"), ("ce_type", b"t"), ("ce_source", b"/s"), ("ce_subject", b"p")),
    (("ce_specversion", b"1.0"), ("ce_id", b"1"), ("ce_type", b"t"), ("ce_source", b"/s"),
     ("content-type", b"text/json; charset=utf-8"), ("ce_time", b"2026-12-07t14:00:00.5z")),
    (("ce_specversion", b"1.0"), ("ce_id", b"1"), ("ce_type", b"t"), ("ce_source", b"/s"),
     ("content-type", b"application/vnd.relais+json"),
     ("ce_time", b"2026-12-07T15:00:00.1234567+01:00")),
])
def test_what_another_producer_may_write_is_read_as_the_sdk_reads_it(
        headers: tuple[tuple[str, bytes], ...]) -> None:
    value = b'{"a": 1}'
    ours = decode(Message("t", 0, 0, None, value, headers))
    sdk = ce_kafka.from_binary_event(ce_kafka.KafkaMessage(
        headers=dict(headers), key=None, value=value))
    assert (ours.id, ours.type, ours.source, ours.subject, ours.data) == (
        sdk.get_id(), sdk.get_type(), sdk.get_source(), sdk.get_subject() or "", sdk.get_data())
    if "ce_time" in dict(headers):  # (else each takes its own now)
        assert ours.time == sdk.get_time()


def test_an_event_carries_the_given_trace_context_unless_it_names_its_own() -> None:
    own = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    given = "00-11111111111111111111111111111111-2222222222222222-01"
    plain = Event("fr.relais.intake.recorded.v1", "/relais/intake", "p", {})
    assert dict(encode(plain, given).headers)["ce_traceparent"] == given.encode()
    assert "ce_traceparent" not in dict(encode(plain).headers)
    named = Event("fr.relais.intake.recorded.v1", "/relais/intake", "p", {}, traceparent=own)
    assert dict(encode(named, given).headers)["ce_traceparent"] == own.encode()


def test_an_event_without_a_person_or_a_time_zone_is_refused() -> None:
    """As the SDK refused them: the person is the partition key."""
    with pytest.raises(ValueError):
        encode(Event("fr.relais.intake.recorded.v1", "/s", "p", {}, time=datetime(2026, 1, 1)))
    with pytest.raises(ValueError):
        encode(Event("fr.relais.intake.recorded.v1", "/s", "", {}))


BASE = (("ce_specversion", b"1.0"), ("ce_id", b"1"), ("ce_type", b"t"), ("ce_source", b"/s"))
"""The four attributes a CloudEvent needs: each poison case below adds or replaces one."""


def but(drop: str = "", **changed: bytes | None) -> tuple[tuple[str, bytes | None], ...]:
    """BASE without `drop`, with these headers replaced or, if new, added after it (the
    keyword `content_type` is the header `content-type`)."""
    kept = tuple((name, changed.pop(name, value)) for name, value in BASE if name != drop)
    return kept + tuple((name.replace("content_type", "content-type"), value)
                        for name, value in changed.items())


@pytest.mark.parametrize("value, headers", [
    (b"not json", BASE),
    (b'{"a": 1}', ()),
    (b"[1, 2]", but(content_type=b"application/json")),
    (b'{"a": 1}', but(ce_specversion=b"0.3")),
    (b'{"a": 1}', but(ce_id=b"")),
    (b'{"a": 1}', but(drop="ce_type")),
    (b'{"a": 1}', but(content_type=b"text/plain")),
    (b'{"a": 1}', but(ce_time=b"2026-12-07T14:00:00")),
    (b'{"a": 1}', but(ce_time=b"yesterday")),
    (b'{"a": 1}', but(ce_id=b"\xff")),
    (b'{"a": "\xff"}', BASE),
    (b'{"a": NaN}', BASE),
    (b'{"a": 1}', but(ce_subject=b"")),
    (b'{"a": 1}', but(ce_subject=None)),
    (b'{"a": 1}', but(ce_id=None)),
    (b'{"a": 1}', but(ce_time=None)),
])
def test_what_is_not_a_cloudevent_object_is_poison(
    value: bytes, headers: tuple[tuple[str, bytes], ...]
) -> None:
    with pytest.raises(PoisonMessage):
        decode(Message("t", 0, 0, None, value, headers))


def test_topics_follow_the_event_type() -> None:
    assert topic_for("fr.relais.consent.granted.v1") == "relais.consent"
    with pytest.raises(ValueError):
        topic_for("com.example.other.v1")


def test_one_key_always_lands_in_the_same_partition() -> None:
    assert {partition_for(b"person-1", 4) for _ in range(10)} == {partition_for(b"person-1", 4)}
    assert {partition_for(str(i).encode(), 4) for i in range(100)} == {0, 1, 2, 3}
    assert partition_for(None, 4) == 0
