"""The fault harness's own arithmetic (bench/faults.py), on made-up receptions: a harness
that miscounts would call a broken Relais sound."""

from __future__ import annotations

import dataclasses
import random

import pytest

from bench.faults import (
    KINDS,
    Fault,
    Figures,
    Order,
    Received,
    duplicates,
    order_of,
    recovery,
    schedule,
    told_twice,
)
from schemas.events import REFERRAL_STATUS_CHANGED
from services.runtime.events import Message, decode, encode, new_event


def mail(message_id: str, at: float, subject: str = "Nouvelle orientation",
         to: tuple[str, ...] = ("ml@example.org",)) -> Received:
    return Received(message_id, to, subject, at)


def test_a_copy_is_allowed_only_when_a_kill_9_came_between_the_two() -> None:
    received = [mail("<a>", 1.0), mail("<a>", 3.0),  # kill at 2.0 between: the SMTP window
                mail("<b>", 5.0), mail("<b>", 5.5),  # no kill between: a defect
                mail("<c>", 6.0)]
    assert duplicates(received, kills=[2.0]) == (2, 1)
    assert duplicates(received, kills=[]) == (2, 0)
    assert duplicates([mail("<a>", 1.0), mail("<a>", 2.0), mail("<a>", 9.0)], [5.0]) == (2, 1)


def test_a_kill_while_the_server_held_the_first_copy_explains_the_second() -> None:
    """The sink records a message when it answers 250, `held` seconds after DATA: a sender
    killed during those seconds never heard the 250, and sends it again after its restart."""
    received = [mail("<a>", 1.72), mail("<a>", 4.0)]
    assert duplicates(received, kills=[1.70], held=0.05) == (1, 1)
    assert duplicates(received, kills=[1.70]) == (1, 1), "within the scheduling slack"
    assert duplicates(received, kills=[1.0], held=0.05) == (1, 0), "long before: a defect"


def test_one_referral_told_twice_under_two_message_ids_is_counted() -> None:
    referral_of = {"<a>": "r1", "<b>": "r1", "<c>": "r2", "<d>": "r2"}
    received = [mail("<a>", 1.0), mail("<b>", 2.0),  # same referral, subject, addresses
                mail("<a>", 3.0),  # a copy of <a>: a duplicate, not a second notification
                mail("<c>", 4.0), mail("<d>", 4.0, subject="Relance")]  # two kinds: fine
    assert told_twice(received, referral_of) == 1
    assert told_twice(received, {}) == 0  # not notifications of a referral (notices)


def test_recovery_is_from_the_end_of_a_fault_to_the_first_email_of_a_later_flow() -> None:
    faults = [Fault("kill9:notify", at=10.0, healed=12.0), Fault("smtp", at=20.0, healed=30.0)]
    started = {"r1": 9.0, "r2": 10.5, "r3": 11.0, "r4": 25.0}
    arrived = {"r1": 11.0, "r2": 12.8, "r3": 12.4, "r4": 31.5}
    assert recovery(faults, started, arrived) == {"kill9:notify": [pytest.approx(0.4)],
                                                  "smtp": [pytest.approx(1.5)]}
    # a fault after which no flow came through has no recovery time (it is not 0)
    assert recovery([Fault("smtp", 40.0, 41.0)], started, arrived) == {}


def test_every_kind_of_fault_comes_in_each_round_of_the_schedule() -> None:
    kinds = schedule("kafka", 2 * len(KINDS["kafka"]), random.Random(1))
    assert sorted(kinds) == sorted(KINDS["kafka"] * 2)
    assert schedule("kafka", 50, random.Random(1)) == schedule("kafka", 50, random.Random(1))


def test_any_loss_or_unexplained_duplicate_fails_the_run() -> None:
    assert Figures("postgres", duplicate_ids=2, allowed_duplicates=2).failures == []
    failures = Figures("kafka", lost_flows=1, duplicate_ids=3, allowed_duplicates=1,
                       stuck={"notifications not sent": 2}).failures
    assert failures == ["1 consented flows never handed off or emailed",
                        "2 duplicate emails not explained by a kill -9 of notify",
                        "2 stuck work after the drain"]


def test_events_read_back_out_of_their_written_order_or_split_are_counted() -> None:
    """Two referrals of one person on the referral topic: r1's events in the order its
    outbox wrote them, r2's two swapped; a third person's events on two partitions."""
    def on_bus(partition: int, offset: int, person: str, data: dict[str, str]) -> Message:
        event = new_event(REFERRAL_STATUS_CHANGED, "relais/referral", person, data)
        record = encode(event)
        return Message(record.topic, partition, offset, record.key, record.value,
                       record.headers)

    placed = [(0, 0, "p1", "r1"), (0, 1, "p1", "r2"), (0, 2, "p1", "r1"), (0, 3, "p1", "r2"),
              (1, 0, "p2", "r3"), (2, 0, "p2", "r4")]
    messages = [on_bus(partition, offset, person, {"referral_id": referral})
                for partition, offset, person, referral in placed]
    ids = [decode(m).id for m in messages]
    written = {ids[0]: 10, ids[1]: 14, ids[2]: 11, ids[3]: 12, ids[4]: 20, ids[5]: 21}
    broken = order_of(messages, written)
    assert (broken.events, broken.things, broken.out_of_order, broken.split) == (6, 4, 1, 1)
    assert broken.examples == ("relais.referral r2: 0:1 row 14, 0:3 row 12",)
    in_order = written | {ids[1]: 12, ids[3]: 14}
    assert order_of(messages, in_order) == Order(events=6, things=4, out_of_order=0, split=1)
    # r1's first event published again after r1's second (a relay stopped before its mark):
    # the copy counts at its first place, and consumers drop it
    again = dataclasses.replace(messages[0], offset=9)
    assert order_of([*messages, again], in_order).out_of_order == 0
    # r2's second event on another partition: split (counted there), not also out of order
    elsewhere = dataclasses.replace(messages[3], partition=1, offset=5)
    split = order_of([*messages[:3], elsewhere, *messages[4:]], written)
    assert (split.out_of_order, split.split) == (0, 1 + 1)
