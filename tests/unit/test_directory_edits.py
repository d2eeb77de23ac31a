"""Who may change what in the directory, one item at a time (`services/directory/edits.py`):
a programme's coordination changes only what belongs to the programmes it coordinates, and
never what makes an organisation a candidate of routing for the whole territory."""

from __future__ import annotations

from typing import Any

import pytest

from schemas.vocab import Need
from services.directory import Directory, Organisation, Permanence, Site, edits, load

DEMO = load().model_dump(mode="json", exclude_defaults=True)
PROGRAMMES = [
    {"id": "le-camion", "name": "Le Camion", "organisations": ["equipe-aller-vers"],
     "sites": ["qpv-etouvie"], "coordinators": ["equipe-aller-vers"]},
    {"id": "bus", "name": "Bus du CCAS", "organisations": ["ccas", "asso-boussole"],
     "sites": ["en-ligne"], "coordinators": ["ccas"]},
]
DIRECTORY = Directory.model_validate(DEMO | {"programmes": PROGRAMMES})
NEW_ORG = {"id": "asso-bus", "name": "Association du bus", "kind": "association",
           "email": "bus@example.org"}


def refusal(change: edits.Change | None, programme: str | None = None) -> str | None:
    assert change is not None
    return edits.refusal(change, "ccas", programme)


def organisation(**fields: Any) -> Organisation:
    return Organisation.model_validate(NEW_ORG | fields)


def test_a_new_organisation_in_its_programme_but_not_a_routing_candidate() -> None:
    made = edits.put(DIRECTORY, "organisations", organisation(), "bus")
    assert refusal(made, "bus") is None
    assert "asso-bus" in next(g for g in made.after.programmes if g.id == "bus").organisations
    for fields, says in (({"needs": ["housing"]}, "needs"), ({"communes": ["80021"]}, "communes"),
                         ({"min_age": 16}, "min_age"), ({"kind": "commission"}, "commission"),
                         ({"kind": "coordination"}, "coordination")):
        why = refusal(edits.put(DIRECTORY, "organisations", organisation(**fields), "bus"),
                      "bus")
        assert why is not None and says in why, (fields, why)


def test_its_own_organisation_keeps_its_routing() -> None:
    ccas = DIRECTORY.get("ccas")
    assert ccas is not None
    assert refusal(edits.put(DIRECTORY, "organisations", ccas.model_copy(update={
        "answer_days": 4, "email": "nouveau@ccas.example.org"}))) is None
    why = refusal(edits.put(DIRECTORY, "organisations", ccas.model_copy(update={
        "needs": [*ccas.needs, Need.employment]})))
    assert why is not None and "needs" in why


@pytest.mark.parametrize("org", ["equipe-aller-vers", "mission-locale"])
def test_not_another_programmes_or_nobodys_organisation(org: str) -> None:
    other = DIRECTORY.get(org)
    assert other is not None
    assert refusal(edits.put(DIRECTORY, "organisations", other.model_copy(update={
        "name": "Repris"}))) is not None


def test_a_permanence_only_with_its_programmes_organisations() -> None:
    permanence = {"id": "bus-lundi", "site": "en-ligne", "mobile": True,
                  "schedule": [{"weekday": "monday", "start": "09:00", "end": "12:00"}]}
    ours = Permanence.model_validate(permanence | {"organisations": ["ccas", "asso-boussole"]})
    assert refusal(edits.put(DIRECTORY, "permanences", ours)) is None
    theirs = Permanence.model_validate(permanence | {"organisations": ["ccas", "mission-locale"]})
    why = refusal(edits.put(DIRECTORY, "permanences", theirs))
    assert why is not None and "mission-locale" in why
    elsewhere = Permanence.model_validate(permanence | {"site": "qpv-etouvie",
                                                        "organisations": ["ccas"]})
    why = refusal(edits.put(DIRECTORY, "permanences", elsewhere))
    assert why is not None and "le-camion" in why


def test_not_the_last_site_of_its_programme() -> None:
    why = refusal(edits.remove(DIRECTORY, "sites", "en-ligne"))
    assert why is not None and "without a site" in why
    second = Site(id="bus-mairie", name="Bus, mairie", kind="public_space")
    with_two = edits.put(DIRECTORY, "sites", second, "bus")
    assert refusal(with_two, "bus") is None
    assert refusal(edits.remove(with_two.after, "sites", "en-ligne")) is None


def test_a_new_item_names_one_of_its_programmes() -> None:
    site = Site(id="gare", name="Gare", kind="public_space")
    assert "Name the programme" in str(refusal(edits.put(DIRECTORY, "sites", site)))
    assert "does not coordinate" in str(refusal(edits.put(DIRECTORY, "sites", site,
                                                          "le-camion"), "le-camion"))
    assert edits.refusal(edits.put(DIRECTORY, "sites", site, "bus"), "plie", "bus") == \
        "Your organisation coordinates no programme of the directory."
