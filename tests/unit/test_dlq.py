"""The dead letters' handles, statuses, replayed records and CloudEvents (the commands
themselves run against real transports in tests/e2e/test_dlq.py)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from services.runtime.dlq import (
    DeadLetter,
    Refused,
    Status,
    Wrong,
    _chosen,
    cloudevent,
    find,
    table,
)
from services.runtime.events import Event, Message, encode

DLQ = (("relais_dlq_consumer", b"intake"), ("relais_dlq_topic", b"relais.consent"),
       ("relais_dlq_partition", b"2"), ("relais_dlq_offset", b"7"),
       ("relais_dlq_attempts", b"5"), ("relais_dlq_error", b"ValueError('no')\nmore"))


def letter(partition: int, offset: int, event: Event | None, status: Status) -> DeadLetter:
    if event is None:
        message = Message("relais.dlq.intake", partition, offset, b"k", b"\xff not JSON", DLQ)
    else:
        record = encode(event)
        message = Message("relais.dlq.intake", partition, offset, record.key, record.value,
                          record.headers + DLQ)
    return DeadLetter("intake", "intake", message, status)


EVENT = Event("fr.relais.consent.granted.v1", "/relais/consent", "p1", {"a": 1})


def test_the_original_record_goes_back_with_its_id_and_without_the_dlq_headers() -> None:
    original = letter(1, 0, EVENT, "unhandled").original()
    assert original.topic == "relais.consent"
    assert original.key == b"p1"
    assert dict(original.headers)["ce_id"] == EVENT.id.encode()
    assert original.headers == encode(EVENT).headers
    assert original.value == encode(EVENT).value


def test_handles_name_one_dead_letter_or_say_which_exist() -> None:
    letters = [letter(0, 3, EVENT, "unhandled"), letter(2, 3, None, "unknown"),
               letter(2, 4, EVENT, "handled")]
    assert find(letters, "intake", "2:3") is letters[1]
    assert find(letters, "intake", "4") is letters[2]  # one partition has offset 4
    with pytest.raises(Wrong, match=re.escape("offset 3 is in several partitions of "
                                              "relais.dlq.intake: say which, one of 0:3, 2:3")):
        find(letters, "intake", "3")
    with pytest.raises(Wrong, match=re.escape("no dead letter 1:3 in relais.dlq.intake; "
                                              "intake's: 0:3, 2:3, 2:4")):
        find(letters, "intake", "1:3")
    with pytest.raises(Wrong, match="'x:1' is not a dead letter's PARTITION:OFFSET"):
        find(letters, "intake", "x:1")


def test_all_replays_each_unhandled_event_once_and_one_handled_needs_force() -> None:
    other = Event("fr.relais.consent.granted.v1", "/relais/consent", "p2", {})
    letters = [letter(0, 0, EVENT, "unhandled"), letter(0, 1, EVENT, "unhandled"),
               letter(1, 0, None, "unknown"), letter(2, 0, other, "handled"),
               letter(3, 0, other, "unhandled")]
    assert _chosen(letters, "intake", None, every=True, force=False) == [letters[0],
                                                                          letters[4]]
    with pytest.raises(Refused, match="is already handled"):
        _chosen(letters, "intake", "2:0", every=False, force=False)
    with pytest.raises(Refused, match="no CloudEvent id"):
        _chosen(letters, "intake", "1:0", every=False, force=False)
    assert _chosen(letters, "intake", "2:0", every=False, force=True) == [letters[3]]


def test_an_event_older_than_the_inboxes_remember_needs_force() -> None:
    now = datetime.now(UTC)
    old = Event("fr.relais.consent.granted.v1", "/relais/consent", "p1", {},
                time=now - timedelta(days=70))
    recent = Event("fr.relais.consent.granted.v1", "/relais/consent", "p2", {},
                   time=now - timedelta(days=10))
    letters = [letter(0, 0, old, "unhandled"), letter(0, 1, recent, "unhandled")]
    before = now - timedelta(days=59)
    assert letters[0].event_time == old.time
    assert _chosen(letters, "intake", None, every=True, force=False,
                   forgotten_before=before) == [letters[1]]
    with pytest.raises(Refused, match="older than the consumers' inbox rows are kept"):
        _chosen(letters, "intake", "0:0", every=False, force=False, forgotten_before=before)
    assert _chosen(letters, "intake", "0:0", every=False, force=True,
                   forgotten_before=before) == [letters[0]]
    assert _chosen(letters, "intake", "0:1", every=False, force=False,
                   forgotten_before=before) == [letters[1]]


def test_the_cloudevent_and_the_table_of_a_message_that_is_not_one() -> None:
    poison = letter(1, 0, None, "unknown")
    assert cloudevent(poison.message) == {"data_base64": "/yBub3QgSlNPTg=="}
    assert cloudevent(letter(1, 0, EVENT, "unhandled").message)["data"] == {"a": 1}
    header, row = table([poison])
    assert header.split() == ["CONSUMER", "DLQ", "FROM", "EVENT", "ID", "TYPE", "ATTEMPTS",
                              "STATUS", "ERROR"]
    assert row.split() == ["intake", "1:0", "relais.consent", "2:7", "-", "-", "5", "unknown",
                           "ValueError('no')"]
