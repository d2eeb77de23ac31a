"""The directory's page (`/coordination/annuaire`): the organisations by kind with their
consortia and the places they declare, the sites, and the permanences with their weekly
schedule in plain French. The directory is read as the intake service serves it
(`GET /v1/directory`, as the signed-in person); the places are this service's own (those of
`GET /v1/partners`). Counsellors read it; the coordination also reaches each organisation's
notification settings from it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aiohttp import web

from services.directory import Directory, Organisation
from services.referral import store
from services.runtime import peers
from services.runtime import web as screens
from services.runtime.app import RUNTIME
from services.runtime.problem import Problem
from services.runtime.web import schedule

KINDS: dict[str, str] = {
    "coordination": "Coordination du territoire", "outreach_team": "Équipes « aller vers »",
    "commission": "Commissions", "mission_locale": "Missions locales",
    "france_travail": "France Travail", "cap_emploi": "Cap emploi",
    "ccas": "Centres communaux d'action sociale", "plie": "PLIE", "association": "Associations",
}
"""The kinds of organisation, in the order the page shows them (any other kind comes after,
under its own name)."""
SITE_KINDS: dict[str, str] = {
    "qpv_square": "Espace public en quartier prioritaire", "social_centre": "Centre social",
    "public_space": "Espace public", "online": "En ligne", "other": "Autre lieu",
}
def by_kind(organisations: Iterable[Organisation]) -> list[tuple[str, list[Organisation]]]:
    """(label, organisations) per kind, in the order of KINDS, each sorted by name."""
    groups: dict[str, list[Organisation]] = {}
    for o in organisations:
        groups.setdefault(o.kind, []).append(o)
    kinds = [k for k in KINDS if k in groups] + sorted(k for k in groups if k not in KINDS)
    return [(KINDS.get(k, k), sorted(groups[k], key=lambda o: o.name.lower())) for k in kinds]


def _view(directory: Directory) -> dict[str, Any]:
    names = {o.id: o.name for o in directory.organisations}
    return {
        "groups": by_kind(directory.organisations),
        "consortia_of": {o.id: [c.name for c in directory.consortia if o.id in c.members]
                         for o in directory.organisations},
        "consortia": [{"name": c.name, "members": [names[m] for m in c.members]}
                      for c in directory.consortia],
        "sites": [{"site": s, "kind": SITE_KINDS.get(s.kind, s.kind), "permanences": [
            {"id": p.id, "mobile": p.mobile, "schedule": schedule(p.schedule, p.recurrences),
             "organisations": [names[o] for o in p.organisations]}
            for p in directory.permanences if p.site == s.id]} for s in directory.sites],
    }


@screens.page
async def annuaire(request: web.Request) -> web.StreamResponse:
    principal = await screens.require(request, "referral:read")
    try:
        directory = await peers.directory(request)
    except Problem as exc:  # the intake service did not answer
        raise screens.PageError(503, "Annuaire indisponible", "L'annuaire n'a pas pu être lu "
                                "pour le moment. Réessayez dans quelques instants.") from exc
    places = {r["id"]: r for r in await store.partner_rows(request.app[RUNTIME].pool)}
    view = _view(directory or Directory(organisations=[]))
    return screens.render(request, "referral/annuaire.html", places=places,
                          coordination="directory:write" in principal.scopes, **view)


def routes(app: web.Application) -> None:
    app.router.add_get("/coordination/annuaire", annuaire)
