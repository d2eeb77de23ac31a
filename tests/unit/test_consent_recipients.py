"""The organisations a consent may name (issue #16, point 4): the directory's, read from the
intake service and kept a few seconds; a name the list does not hold is looked up again in a
fresh read before it is refused, and a `directory_updated` event drops the list."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from services.consent import recipients
from services.directory import Directory
from services.runtime import peers


def directory(*ids: str) -> Directory:
    return Directory.model_validate({"organisations": [
        {"id": i, "name": i, "kind": "association", "email": f"{i}@example.org"} for i in ids]})


class Intake:
    """The intake service's directory, as `peers.directory` reads it: each read counted."""

    def __init__(self, *ids: str) -> None:
        self.directory: Directory | None = directory(*ids)
        self.reads = 0

    async def read(self, _request: Any) -> Directory | None:
        self.reads += 1
        await asyncio.sleep(0.01)
        return self.directory


@pytest.fixture
def intake(monkeypatch: pytest.MonkeyPatch) -> Intake:
    served = Intake("mission-locale", "ccas")
    monkeypatch.setattr(peers, "directory", served.read)
    return served


async def test_known_names_are_served_from_the_list_while_it_is_fresh(intake: Intake) -> None:
    known = recipients.KnownOrganisations()
    assert await known.unknown(None, ["mission-locale"]) == []  # type: ignore[arg-type]
    assert await known.unknown(None, ["ccas", "mission-locale"]) == []  # type: ignore[arg-type]
    assert intake.reads == 1


async def test_an_unknown_name_is_looked_up_again_before_it_is_refused(intake: Intake) -> None:
    known = recipients.KnownOrganisations()
    assert await known.unknown(None, ["ccas"]) == []  # type: ignore[arg-type]
    intake.directory = directory("mission-locale", "ccas", "epide")  # just added
    assert await known.unknown(None, ["epide", "asso-fantome", "ccas",  # type: ignore[arg-type]
                                      "asso-fantome"]) == ["asso-fantome"]
    assert intake.reads == 2


async def test_a_new_directory_is_read_at_the_next_question(intake: Intake) -> None:
    known = recipients.KnownOrganisations()
    assert await known.unknown(None, ["ccas"]) == []  # type: ignore[arg-type]
    intake.directory = directory("mission-locale")  # the CCAS left
    known.forget()  # its `directory_updated` event
    assert await known.unknown(None, ["ccas"]) == ["ccas"]  # type: ignore[arg-type]


async def test_no_directory_knows_no_one(intake: Intake) -> None:
    intake.directory = None
    known = recipients.KnownOrganisations()
    assert await known.unknown(None, ["ccas"]) == ["ccas"]  # type: ignore[arg-type]


async def test_questions_at_once_share_one_read(intake: Intake) -> None:
    known = recipients.KnownOrganisations()
    answers = await asyncio.gather(*(known.unknown(None, [name])  # type: ignore[arg-type]
                                     for name in ["ccas", "mission-locale"] * 10))
    assert answers == [[]] * 20 and intake.reads == 1
