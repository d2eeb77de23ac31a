"""The coordination's page: referrals past their deadline across the territory, and the
places each partner declares (editable, through the same unit of work as the API's
`PUT /v1/partners/{id}/capacity`)."""

from __future__ import annotations

from aiohttp import web

from services.referral import handlers, lifecycle, store
from services.runtime import web as screens
from services.runtime.app import RUNTIME
from services.runtime.auth import Principal


async def _show(request: web.Request, principal: Principal, *, status: int = 200,
                error: str | None = None, saved: str | None = None) -> web.Response:
    runtime = request.app[RUNTIME]
    now = runtime.clock()
    partners = [p for p in await store.partner_rows(runtime.pool)
                if p["kind"] not in ("commission", "coordination", "outreach_team")]
    return screens.render(
        request, "referral/coordination.html", status=status, now=now,
        overdue=await store.overdue(runtime.pool, now), partners=partners,
        names=await store.partner_names(runtime.pool), error=error, saved=saved)


@screens.page
async def coordination(request: web.Request) -> web.StreamResponse:
    principal = await screens.require(request, "directory:write")
    saved = request.query.get("enregistre")
    return await _show(request, principal, saved=saved)


@screens.page
async def places(request: web.Request) -> web.StreamResponse:
    principal = await screens.require(request, "directory:write")
    fields = await screens.form(request)
    partner_id = request.match_info["id"]
    text = fields.get("open_places", "").strip()
    if text and not (text.isascii() and text.isdigit() and int(text) <= 100_000):
        return await _show(request, principal, status=422,
                           error="Le nombre de places est un nombre entier (ou vide si "
                                 "inconnu).")
    try:
        row = await handlers.set_capacity(
            request.app[RUNTIME].pool, principal, partner_id, int(text) if text else None,
            fields.get("waiting_list") == "oui")
    except lifecycle.Refused:
        return await _show(request, principal, status=403, error="Vous ne pouvez pas changer "
                           "les places de ce partenaire.")
    if row is None:
        raise screens.PageError(404, "Partenaire introuvable", "Ce partenaire n'est pas dans "
                                "l'annuaire.")
    raise web.HTTPSeeOther(f"/coordination?enregistre={partner_id}#places")


def routes(app: web.Application) -> None:
    app.router.add_get("/coordination", coordination)
    app.router.add_post("/coordination/places/{id}", places)
