"""One item of the directory at a time (an organisation, a site, a permanence), validated with
the whole, and who may make the change: the directory's keeper anything, a programme's
coordination only what belongs to the programmes it coordinates.

Pure: the unit of work loads the directory, calls `put` or `remove` (pydantic's
ValidationError when the whole would not be valid: a 422 listing why), then `refusal` for a
programme's coordination, and stores the result."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from services.directory import Directory, Organisation, Permanence, Site

Kind = Literal["organisations", "sites", "permanences"]
MODELS: dict[Kind, type[Organisation] | type[Site] | type[Permanence]] = {
    "organisations": Organisation, "sites": Site, "permanences": Permanence}
LISTED: dict[Kind, str | None] = {"organisations": "organisations", "sites": "sites",
                                  "permanences": None}
"""The list of a programme an item of this kind is named in (a permanence: through its site)."""
TERRITORY = "coordination"
"""A kind of organisation only the directory's keeper creates or changes: it reads every
programme's figures."""
KEEPERS_KINDS = frozenset({TERRITORY, "commission"})
"""Kinds only the keeper gives: the coordination reads every programme's figures, a
commission is chosen by routing for the whole territory."""
ROUTING = frozenset({"needs", "communes", "min_age", "max_age", "members"})
"""What makes an organisation a candidate of routing for the whole territory (whichever
programme met the person): the keeper's to set. A programme's coordination sets the rest
(name, kind, mailbox, counsellors, deadline)."""


@dataclass(frozen=True)
class Change:
    kind: Kind
    id: str
    before: Directory
    after: Directory
    existed: bool


def _document(directory: Directory) -> dict[str, Any]:
    return directory.model_dump(mode="json", exclude_defaults=True)


def _name_in(document: dict[str, Any], kind: Kind, item_id: str, programme: str) -> None:
    listed = LISTED[kind]
    for g in document.get("programmes", []):
        if g["id"] == programme and listed is not None and item_id not in g.get(listed, []):
            g[listed] = [*g.get(listed, []), item_id]


def put(directory: Directory, kind: Kind, item: Organisation | Site | Permanence,
        programme: str | None = None) -> Change:
    """The directory with `item` added or replaced (and named in `programme`'s list when
    given)."""
    document = _document(directory)
    items = document.setdefault(kind, [])
    data = item.model_dump(mode="json", exclude_defaults=True)
    existed = any(i["id"] == item.id for i in items)
    document[kind] = ([data if i["id"] == item.id else i for i in items] if existed
                      else [*items, data])
    if programme is not None:
        _name_in(document, kind, item.id, programme)
    return Change(kind, item.id, directory, Directory.model_validate(document), existed)


def remove(directory: Directory, kind: Kind, item_id: str) -> Change | None:
    """The directory without the item, and without it in the programmes' lists (None: there
    is no such item). ValidationError when something still refers to it."""
    document = _document(directory)
    items = document.get(kind, [])
    if not any(i["id"] == item_id for i in items):
        return None
    document[kind] = [i for i in items if i["id"] != item_id]
    listed = LISTED[kind]
    for g in document.get("programmes", []):
        if listed is not None:
            g[listed] = [i for i in g.get(listed, []) if i != item_id]
    return Change(kind, item_id, directory, Directory.model_validate(document), True)


def owners(directory: Directory, kind: Kind, item_id: str) -> set[str]:
    """The programmes an item belongs to: an organisation that runs them, a site of theirs, a
    permanence at one of their sites."""
    if kind == "permanences":
        permanence = next((p for p in directory.permanences if p.id == item_id), None)
        return set() if permanence is None else owners(directory, "sites", permanence.site)
    return {g.id for g in directory.programmes
            if item_id in (g.organisations if kind == "organisations" else g.sites)}


def coordinated(directory: Directory, org: str) -> set[str]:
    return {g.id for g in directory.programmes if org in g.coordinators}


def refusal(change: Change, org: str, programme: str | None = None) -> str | None:
    """Why a programme's coordination (`org`, programme:write) may not make `change` (None:
    it may). It may change what belongs only to programmes it coordinates, and create an
    item in one of them (`programme`)."""
    mine = coordinated(change.before, org)
    if not mine:
        return "Your organisation coordinates no programme of the directory."
    if programme is not None and programme not in mine:
        return f"Your organisation does not coordinate programme '{programme}'."
    before = owners(change.before, change.kind, change.id) if change.existed else set()
    after = owners(change.after, change.kind, change.id)
    if change.existed and not before:
        return (f"{change.id} belongs to no programme: only the directory's keeper "
                "(directory:write) changes it.")
    others = (before | after) - mine
    if others:
        return (f"{change.id} belongs to programme {', '.join(sorted(others))}, which your "
                "organisation does not coordinate.")
    if not change.existed and not after:
        return (f"Name the programme {change.id} is for (`programme`): your organisation "
                "creates only in the programmes it coordinates.")
    if change.kind == "organisations":
        return _organisation_refusal(change)
    if change.kind == "permanences":
        return _permanence_refusal(change, mine)
    if change.kind == "sites":
        emptied = [g.id for g in change.before.programmes if g.id in mine and g.sites
                   and not next(a for a in change.after.programmes if a.id == g.id).sites]
        if emptied:
            return (f"Programme {', '.join(emptied)} would be left without a site, and then "
                    "count its organisations' contacts everywhere: only the directory's "
                    "keeper (directory:write) does that.")
    return None


def _organisation_refusal(change: Change) -> str | None:
    before, after = change.before.get(change.id), change.after.get(change.id)
    if any(o is not None and o.kind in KEEPERS_KINDS for o in (before, after)):
        return ("Only the directory's keeper (directory:write) creates or changes a "
                "commission or the coordination.")
    if after is None:
        return None
    was = (before if before is not None else Organisation(
        id=after.id, name=after.name, kind=after.kind, email=after.email))
    changed = sorted(f for f in ROUTING if getattr(was, f) != getattr(after, f))
    if changed:
        return (f"{', '.join(changed)} make {change.id} a candidate of routing for the whole "
                "territory: only the directory's keeper (directory:write) sets them.")
    return None


def _permanence_refusal(change: Change, mine: set[str]) -> str | None:
    permanence = next((p for p in change.after.permanences if p.id == change.id), None)
    if permanence is None:
        return None
    ours = {o for g in change.after.programmes if g.id in mine
            for o in (*g.organisations, *g.coordinators)}
    strangers = sorted(set(permanence.organisations) - ours)
    if strangers:
        return (f"{', '.join(strangers)} take part in no programme your organisation "
                "coordinates: only the directory's keeper (directory:write) puts them at a "
                "permanence.")
    return None
