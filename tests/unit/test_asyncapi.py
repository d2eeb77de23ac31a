"""The committed AsyncAPI document is the one the event models give, and every event type
has its message on the right channel."""

from __future__ import annotations

import json
from pathlib import Path

from schemas import asyncapi
from schemas.events import EVENT_MODELS

COMMITTED = Path(__file__).resolve().parents[2] / "schemas" / "asyncapi.json"


def test_the_committed_asyncapi_is_the_generated_one() -> None:
    assert json.loads(COMMITTED.read_text()) == asyncapi.document(), (
        "the events changed: run `make schemas` and commit the result")


def test_every_event_type_is_on_its_topic() -> None:
    document = asyncapi.document()
    published = {m["name"]: channel["address"] for channel in document["channels"].values()
                 for m in (document["components"]["messages"][ref["$ref"].rsplit("/", 1)[1]]
                           for ref in channel["messages"].values())}
    assert set(published) == set(EVENT_MODELS)
    for event_type, topic in published.items():
        assert topic == "relais." + event_type.split(".")[2]
