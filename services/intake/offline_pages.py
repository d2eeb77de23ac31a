"""The outreach app without a network (issue #11): an installable page that records contacts
and the person's answer on the device, and sends them when the network comes back.

- `/terrain/hors-ligne`: the page (fetched while online, kept by the service worker): today's
  places, the directory's partners, the current information notice, the vocabulary, and
  Relais's public key. Its script (`static/hors-ligne.js`) seals each entry to that key
  before it touches the device's storage (services/runtime/offline.py), keeps the queue in
  IndexedDB, shows what waits and what failed and why, and sends it in order.
- `/terrain/sw.js` (the service worker, scope `/`: it acts on `/terrain` pages and
  `/static/` only) and `/terrain/manifest.webmanifest`.
- `POST /terrain/envoi`: one entry's contact, opened here and recorded through the same unit
  of work as `POST /v1/intakes` (`api.record_once`), under the entry's id as idempotency key,
  at the time it was recorded on the device. The person's answer goes next to the consent
  service (`POST /terrain/accord/{intake}/envoi`, services/consent/outreach.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web
from multidict import MultiDict, MultiDictProxy
from pydantic import ValidationError

from schemas import vocab_fr as fr
from schemas.api import NOTE_MAX, IntakeIn
from schemas.vocab import AgeBracket, DataCategory, Need, Purpose, SituationFlag
from services import directory as reference
from services.intake import api
from services.intake import pages as contact_pages
from services.runtime import offline, peers
from services.runtime import web as pages
from services.runtime.app import RUNTIME
from services.runtime.http import json_response, read_json
from services.runtime.problem import Problem

STATIC = Path(__file__).resolve().parent / "static"
METHODS = {"signed_screen": "Signature sur l'écran", "oral_witnessed": "Oral, devant un témoin"}
"""How a person agrees offline (a paper form is photographed once online)."""
NOT_PARTNERS = frozenset({"outreach_team", "coordination"})
"""Kinds of organisations that do not follow people: never proposed as recipients."""


def recipients(directory: reference.Directory, org: str) -> list[reference.Organisation]:
    """Who may be proposed to the person when routing cannot be asked: the partners and
    commissions of the directory, commissions first."""
    chosen = [o for o in directory.organisations if o.kind not in NOT_PARTNERS and o.id != org]
    return sorted(chosen, key=lambda o: (o.kind != "commission", o.name))


def places(directory: reference.Directory, org: str, view: dict[str, Any],
           remembered: contact_pages.Place | None) -> list[dict[str, str]]:
    """Today's permanences, then every site: the value a contact names, and its label."""
    found = [{"value": t["place"].value,
              "label": f"{t['site'].name} · {', '.join(t['hours'])}"} for t in view["todays"]]
    found += [{"value": s["place"].value, "label": s["site"].name} for s in view["sites"]]
    if remembered is not None:  # the place of the day first
        found.sort(key=lambda p: p["value"] != remembered.value)
    return found


@pages.page
async def offline_page(request: web.Request) -> web.StreamResponse:
    principal = await pages.require(request, contact_pages.SCOPE)
    directory = await contact_pages._directory(request)
    try:
        notice = await peers.current_notice(request)
    except Problem as failed:
        raise pages.PageError(503, "Service momentanément indisponible", "Relais n'a pas pu "
                              "lire la notice d'information. Réessayez dans quelques "
                              "secondes.") from failed
    if notice is None:
        raise pages.PageError(503, "Notice d'information introuvable", "Aucune notice "
                              "d'information n'est enregistrée : l'accord ne peut pas être "
                              "recueilli. Prévenez la coordination du territoire.")
    remembered = contact_pages.remembered(request, directory)
    view = contact_pages._day_view(request, directory, principal.org)
    title, text = pages.paragraphs(notice.text)
    response = pages.render(
        request, "intake/hors-ligne.html", org=principal.org,
        places=places(directory, principal.org, view, remembered),
        partners=recipients(directory, principal.org), methods=METHODS,
        partners_names={o.id: o.name for o in directory.organisations}, notice=notice,
        notice_title=title, notice_text=text,
        public_key=offline.public_jwk(request.app[api.MASTER_KEY]),
        keep_hours=request.app[RUNTIME].settings.offline_keep_hours, needs=list(Need),
        flags=list(SituationFlag),
        ages=["", *AgeBracket], age_labels={"": "Non précisé"} | fr.AGES,
        durations=["", *map(str, contact_pages.DURATIONS)],
        duration_labels=contact_pages.DURATION_LABELS, purposes=list(Purpose),
        categories=list(DataCategory), note_max=NOTE_MAX, weekday=view["weekday"],
        day=view["day"])
    response.headers["Cache-Control"] = "no-cache"  # kept by the service worker, not reused
    return response


async def send_contact(request: web.Request) -> web.Response:
    """One entry's contact, recorded once under the entry's id."""
    principal = await pages.require_script(request, contact_pages.SCOPE)
    master = request.app[api.MASTER_KEY]
    try:
        sealed = offline.parse(await read_json(request))
        fields = offline.form_of(offline.open_entry(master, principal.org, sealed)
                                 .get("contact"))
    except offline.OpenError as failed:
        raise offline.unreadable() from failed
    directory = await contact_pages._directory(request)
    place = contact_pages.find(directory, fields.get("lieu", ""))
    if place is None:
        raise Problem(422, "Lieu inconnu", "Le lieu de ce contact n'est plus dans l'annuaire.")
    fields = MultiDictProxy(MultiDict([*((k, v) for k, v in fields.items() if k != "moment"),
                                       ("moment", offline.corrected(
                                           fields.get("moment", ""),
                                           request.headers.get(offline.DEVICE_TIME),
                                           request.app[RUNTIME].clock()))]))
    payload = contact_pages._payload(fields, place)
    payload["channel"] = payload["channel"] or place.channel.value
    try:
        model = IntakeIn.model_validate(payload)
    except ValidationError as invalid:
        said = contact_pages._errors(invalid)
        raise Problem(422, "Contact non valable", " ".join(dict.fromkeys(said.values())),
                      fields=sorted(said)) from invalid
    intake, replayed = await api.record_once(request.app[RUNTIME].pool, principal.org,
                                             sealed.id, payload, model, master, directory)
    return json_response({"intake_id": str(intake.id), "person_id": str(intake.person_id),
                          "replayed": replayed, "contact": f"/terrain/contacts/{intake.id}"},
                         status=200 if replayed else 201)


async def service_worker(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC / "sw.js", headers={
        "Content-Type": "text/javascript; charset=utf-8", "Cache-Control": "no-cache",
        "Service-Worker-Allowed": "/"})


async def manifest(request: web.Request) -> web.Response:
    return web.json_response({
        "name": "Relais – sur le terrain", "short_name": "Relais terrain", "lang": "fr",
        "start_url": "/terrain", "scope": "/terrain", "display": "standalone",
        "background_color": "#ffffff", "theme_color": "#000091",
        "icons": [{"src": f"/static/dsfr/favicon/android-chrome-{n}x{n}.png",
                   "sizes": f"{n}x{n}", "type": "image/png"} for n in (192, 512)],
    }, content_type="application/manifest+json")


def routes(app: web.Application) -> None:
    app.router.add_get("/terrain/hors-ligne", offline_page)
    app.router.add_post("/terrain/envoi", send_contact)
    app.router.add_get("/terrain/sw.js", service_worker)
    app.router.add_get("/terrain/manifest.webmanifest", manifest)
