from __future__ import annotations

import pytest

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


@pytest.mark.parametrize("value, headers", [
    (b"not json", (("ce_specversion", b"1.0"), ("ce_id", b"1"), ("ce_type", b"t"),
                   ("ce_source", b"/s"))),
    (b'{"a": 1}', ()),
    (b"[1, 2]", (("ce_specversion", b"1.0"), ("ce_id", b"1"), ("ce_type", b"t"),
                 ("ce_source", b"/s"), ("content-type", b"application/json"))),
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
