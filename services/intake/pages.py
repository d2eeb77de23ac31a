"""The outreach team's pages (`/terrain`): the day's permanence, a contact recorded in under a
minute, and what routing proposes for it. A contact is recorded through the same unit of work
as `POST /v1/intakes` (`api.record_once`: the same model, the same checks, the same
idempotency keys, the same event); what routing proposed is read from the referral service's
API as the signed-in person (`peers.referrals_of_intake`), as a partner's system would.

A person met before is recognised by the code of the card given to them at a contact
(`POST /terrain/contacts/{id}/carte`, services/intake/card.py): typed on the contact form, a
right code attaches the new contact to the same person (the intake's `person_id`, as the API
does, with the access rule); a wrong one, or one of a person the organisation never met, gets
the same French words, nothing is written, and failures are throttled per address and
overall and logged without the code. Or by their name (`/terrain/recherche`,
services/intake/search.py): one lookup of a keyed blind index (services/intake/names.py)
among the people the organisation met, only the matches unsealed and each logged as a read;
picking one opens the contact form with the person's id (`?personne=`), which attaches the
contact as a card does (the same check that the organisation met them, the same unit of
work). Searches are throttled per person signed in; the name is posted, never in an address
or a log.

The place of the day is remembered in a cookie (`relais_terrain`, this path only): the date
in Paris and a permanence or a site of the directory, nothing personal. It lasts until
midnight, Paris time, and says nothing once the date has passed or the directory no longer
has that place."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from aiohttp import web
from multidict import MultiDict, MultiDictProxy
from pydantic import ValidationError

from schemas import vocab_fr as fr
from schemas.api import NOTE_MAX, IntakeIn, IntakeOut, ReferralOut
from schemas.vocab import AgeBracket, Arrival, Channel, Need, SituationFlag
from services import directory as reference
from services.directory import calendar
from services.intake import api, card, domain, names, relay_pages, search, store
from services.runtime import codes, idempotency, peers, to_person
from services.runtime import web as pages
from services.runtime.app import RUNTIME
from services.runtime.auth import Principal
from services.runtime.http import client_address
from services.runtime.logging import get_logger
from services.runtime.problem import Problem
from services.runtime.ratelimit import buckets

SCOPE = "intake:write"
COOKIE = "relais_terrain"
DURATIONS = (5, 10, 15, 20, 30, 45, 60)
DURATION_LABELS = {"": "Non précisée"} | {
    str(m): f"{m}\u00a0min" if m < 60 else "1\u00a0h" for m in DURATIONS}
ROUTING_WAIT = 3.0
"""How long the proposal page waits for routing (which runs on the intake's event) before it
says that the proposal is being computed."""
SITE_CHANNELS = {"online": Channel.online}
STATIC = Path(__file__).resolve().parent / "static"
THROTTLE = web.AppKey("card_throttle", codes.Throttle)
SEARCH_THROTTLE = web.AppKey("name_search_throttle", codes.Throttle)
SEARCHES_PER_ACCOUNT = 10
"""Searches by name a minute for one person signed in (each shows personal data)."""
SEARCHES_OVERALL = 120
PATH_CONTACTS = 10
"""A person's last contacts whose referrals the search shows (their remobilisation path)."""
log = get_logger("relais.intake.card")
search_log = get_logger("relais.intake.search")


@dataclass(frozen=True, slots=True)
class Place:
    """Where the team is today: a permanence of the directory, or a site without one."""

    site: reference.Site
    permanence: reference.Permanence | None = None

    @property
    def value(self) -> str:
        return (f"permanence:{self.permanence.id}" if self.permanence
                else f"site:{self.site.id}")

    @property
    def channel(self) -> Channel:
        if self.permanence is not None:
            return (Channel.mobile_permanence if self.permanence.mobile
                    else Channel.fixed_permanence)
        return SITE_CHANNELS.get(self.site.kind, Channel.fixed_permanence)


def today(request: web.Request) -> date:
    return request.app[RUNTIME].clock().astimezone(pages.PARIS).date()


def find(directory: reference.Directory, value: str) -> Place | None:
    """The place a form or the cookie names (`permanence:<id>` or `site:<id>`), if the
    directory has it."""
    kind, _, ident = value.partition(":")
    if kind == "permanence":
        permanence = next((p for p in directory.permanences if p.id == ident), None)
        site = directory.site(permanence.site) if permanence else None
        return Place(site, permanence) if site else None
    site = directory.site(ident) if kind == "site" else None
    return Place(site) if site else None


def remembered(request: web.Request, directory: reference.Directory) -> Place | None:
    """Today's place, as picked on this device today."""
    day, _, value = request.cookies.get(COOKIE, "").partition("|")
    return find(directory, value) if day == today(request).isoformat() else None


def _slots_on(permanence: reference.Permanence, day: date) -> list[reference.Slot]:
    """Its hours on `day`, by its slots of every week and its recurrences (none: not today)."""
    weekday = list(reference.Weekday)[day.weekday()]
    return [reference.Slot(weekday=weekday, start=start, end=end)
            for start, end in calendar.on(permanence, day)]


def describe(place: Place, directory: reference.Directory, org: str, day: date) -> str:
    """"Étouvie, place du marché · camion · 9 h 30 – 12 h 30 · avec Mission locale"."""
    parts = [place.site.name]
    if place.permanence is not None:
        parts.append("camion" if place.permanence.mobile else "permanence")
        parts += [pages.slot(s, weekday=False) for s in _slots_on(place.permanence, day)]
        others = _partners(place.permanence, directory, org)
        if others:
            parts.append("avec " + ", ".join(others))
    return " · ".join(parts)


def _partners(permanence: reference.Permanence, directory: reference.Directory,
              org: str) -> list[str]:
    """The organisations present besides the counsellor's own, by name."""
    names = {o.id: o.name for o in directory.organisations}
    return [names.get(o, o) for o in permanence.organisations if o != org]


def _day_view(request: web.Request, directory: reference.Directory,
              org: str) -> dict[str, Any]:
    """Today's permanences, in the order of their hours, then every site."""
    day = today(request)
    now = request.app[RUNTIME].clock().astimezone(pages.PARIS).time()
    todays: list[dict[str, Any]] = []
    for p in directory.permanences:
        slots = _slots_on(p, day)
        site = directory.site(p.site)
        if not slots or site is None:
            continue
        state = ("en cours" if any(s.start <= now < s.end for s in slots)
                 else "terminée" if all(s.end <= now for s in slots) else "à venir")
        todays.append({"place": Place(site, p), "site": site, "permanence": p,
                       "hours": [pages.slot(s, weekday=False) for s in slots],
                       "start": slots[0].start, "state": state,
                       "partners": _partners(p, directory, org)})
    todays.sort(key=lambda t: (t["start"], t["place"].site.name))
    sites = [{"place": Place(s), "site": s, "schedule": [
        line for p in directory.permanences if p.site == s.id
        for line in pages.schedule(p.schedule, p.recurrences)]} for s in directory.sites]
    return {"day": day, "weekday": pages.WEEKDAYS[list(reference.Weekday)[day.weekday()]],
            "todays": todays, "sites": sites}


async def _directory(request: web.Request) -> reference.Directory:
    return await request.app[api.DIRECTORY].get(request.app[RUNTIME].pool)


# --- the day --------------------------------------------------------------------------------

@pages.page
async def day(request: web.Request) -> web.StreamResponse:
    principal = await pages.require(request, SCOPE)
    directory = await _directory(request)
    chosen = remembered(request, directory)
    return pages.render(request, "intake/terrain.html", chosen=chosen,
                        chosen_text=describe(chosen, directory, principal.org, today(request))
                        if chosen else "", **_day_view(request, directory, principal.org),
                        signals=await relay_pages.open_signals(request, principal.org))


@pages.page
async def pick(request: web.Request) -> web.StreamResponse:
    """The place of the day, remembered on this device until midnight (Paris time)."""
    await pages.require(request, SCOPE)
    fields = await pages.form(request)
    directory = await _directory(request)
    place = find(directory, fields.get("lieu", ""))
    if place is None:
        raise pages.PageError(422, "Lieu inconnu", "Ce lieu n'est pas dans l'annuaire. "
                              "Revenez à la page « Sur le terrain » et choisissez-en un.")
    now = request.app[RUNTIME].clock().astimezone(pages.PARIS)
    midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(),
                                tzinfo=pages.PARIS)
    response = web.HTTPSeeOther("/terrain/contact")
    response.set_cookie(COOKIE, f"{now.date().isoformat()}|{place.value}", path="/terrain",
                        max_age=max(60, int((midnight - now).total_seconds())),
                        httponly=True, samesite="Lax",
                        secure=request.app[RUNTIME].settings.base_url.startswith("https:"))
    raise response


# --- a contact ------------------------------------------------------------------------------

ERRORS = {
    "channel": "Choisissez comment la personne a été rencontrée.",
    "needs": "Choisissez au moins un besoin.",
    "flags": "Choisissez des situations de la liste.",
    "age_bracket": "Choisissez une tranche d'âge de la liste.",
    "birth_year": "Une année à 4 chiffres, par exemple 2006.",
    "commune": "Le code INSEE de la commune : 5 caractères, par exemple 80021 pour Amiens.",
    "duration_minutes": "Choisissez une durée de la liste.",
    "first_name": "Un prénom de 80 caractères au plus.",
    "last_name": "Un nom de 80 caractères au plus.",
    "phone": "Un numéro de téléphone : des chiffres, avec des espaces, points ou tirets si "
             "vous voulez, par exemple 06 12 34 56 78.",
    "email": "Une adresse électronique valable, par exemple prenom.nom@exemple.fr.",
    "note": f"La note compte au plus {NOTE_MAX} caractères.",
    "signal_id": "Choisissez un signalement de la liste.",
    "arrival": "Choisissez « Sans rendez-vous » ou « Sur rendez-vous ».",
    "for_org": "Choisissez un partenaire présent à cette permanence.",
}
CARD_REFUSED = ("Ce code ne correspond à aucune personne rencontrée par votre structure. "
                f"Recopiez-le depuis sa carte : {codes.CODE_LENGTH} caractères, lettres et "
                "chiffres. Sinon, videz ce champ : ce sera un premier contact.")
CARD_TOO_MANY = ("Trop de codes erronés : attendez une minute avant de réessayer, ou videz ce "
                 "champ pour enregistrer le contact comme un premier contact.")
EXPIRED = "Ce formulaire n'est plus valable : rechargez la page et recommencez."
PERSON_REFUSED = ("Cette personne n'est pas, ou plus, parmi celles que votre structure a "
                  "rencontrées. Cherchez-la de nouveau, ou enregistrez un premier contact.")
SIGNAL_REFUSED = ("Ce signalement n'est pas, ou plus, parmi ceux de votre structure : "
                  "choisissez-en un de la liste, ou « Aucun ».")
NIR_REFUSED = ("La note ne doit pas contenir de numéro de sécurité sociale : retirez-le, il "
               "ne doit jamais être enregistré dans Relais.")


def _payload(fields: MultiDictProxy[str], place: Place) -> dict[str, Any]:
    """The form as the API's body (`IntakeIn`): only what was filled in."""
    def text(name: str) -> str:
        return fields.get(name, "").strip()

    payload: dict[str, Any] = {
        "site": place.site.id, "channel": text("canal"), "contacted_at": text("moment"),
        "needs": fields.getall("besoins", []), "flags": fields.getall("situation", []),
    }
    if place.permanence is not None:
        payload["permanence"] = place.permanence.id
    for name, key in (("age", "age_bracket"), ("commune", "commune"), ("note", "note"),
                      ("arrivee", "arrival"), ("partenaire", "for_org")):
        if text(name):
            payload[key] = text(name)
    for name, key in (("annee", "birth_year"), ("duree", "duration_minutes")):
        if text(name):
            payload[key] = int(text(name)) if text(name).isdigit() else text(name)
    identity = {key: text(name) for name, key in (("prenom", "first_name"),
                                                  ("nom", "last_name"),
                                                  ("telephone", "phone"),
                                                  ("courriel", "email")) if text(name)}
    if identity:
        payload["identity"] = identity
    if text("signalement"):  # the signal of the network this contact answers
        payload["signal_id"] = text("signalement")
    return payload


def _errors(invalid: ValidationError) -> dict[str, str]:
    """Each invalid field's French message, by the API's field name."""
    errors: dict[str, str] = {}
    for error in invalid.errors():
        loc = [str(part) for part in error["loc"]]
        field = loc[1] if loc[:1] == ["identity"] and len(loc) > 1 else (loc or [""])[0]
        if field == "note" and "social security" in str(error.get("msg", "")):
            errors["note"] = NIR_REFUSED
        elif field in ERRORS:
            errors.setdefault(field, ERRORS[field])
        else:  # the time the form was opened, or the place: the form is to be opened again
            errors.setdefault("form", EXPIRED)
    return errors


def _contact_form(request: web.Request, principal: Principal, directory: reference.Directory,
                  place: Place, *, status: int = 200, fields: MultiDictProxy[str] | None = None,
                  errors: dict[str, str] | None = None, notice: str | None = None,
                  returning: asyncpg.Record | None = None) -> web.Response:
    now = request.app[RUNTIME].clock()
    given = fields if fields is not None else MultiDictProxy(MultiDict[str]())
    values = {
        "key": given.get("cle") or str(uuid.uuid4()),
        "moment": given.get("moment") or now.astimezone(UTC).isoformat(timespec="seconds"),
        "canal": given.get("canal", place.channel.value),
        "besoins": given.getall("besoins", []), "situation": given.getall("situation", []),
        "age": given.get("age", ""), "annee": given.get("annee", ""),
        "commune": given.get("commune", place.site.commune or ""),
        "duree": given.get("duree", ""), "prenom": given.get("prenom", ""),
        "nom": given.get("nom", ""),
        "telephone": given.get("telephone", ""), "courriel": given.get("courriel", ""),
        "note": given.get("note", ""), "carte": given.get("carte", ""),
        "signalement": given.get("signalement", request.query.get("signalement", "")),
        "personne": given.get("personne", ""),
        "arrivee": given.get("arrivee", ""), "partenaire": given.get("partenaire", ""),
    }
    partners = _shared_with(place, directory, principal.org)
    errors = errors or {}
    return pages.render(
        request, "intake/contact.html", status=status, values=values, errors=errors,
        notice=notice, place_text=describe(place, directory, principal.org, today(request)),
        identity_open=bool(values["prenom"] or values["nom"] or values["telephone"]
                           or values["courriel"]
                           or {"first_name", "last_name", "phone", "email"} & errors.keys()),
        returning=returning, signals=request.get(relay_pages.OPEN_SIGNALS, []),
        channels=list(Channel), needs=list(Need), flags=list(SituationFlag),
        ages=["", *AgeBracket], age_labels={"": "Non précisé"} | fr.AGES,
        durations=["", *map(str, DURATIONS)], duration_labels=DURATION_LABELS,
        arrivals=["", *Arrival], arrival_labels={"": "Non précisé"} | fr.ARRIVALS,
        partners=["", *partners], partner_labels={"": "Aucun en particulier"} | partners,
        note_max=NOTE_MAX)


def _shared_with(place: Place, directory: reference.Directory, org: str) -> dict[str, str]:
    """At a permanence shared with partners: those partners (id: name), for the contact to
    name the one it was for; else nothing."""
    if place.permanence is None:
        return {}
    names = {o.id: o.name for o in directory.organisations}
    return {o: names.get(o, o) for o in place.permanence.organisations if o != org}


async def _place_of_today(request: web.Request,
                          directory: reference.Directory) -> Place:
    place = remembered(request, directory)
    if place is None:  # the day starts with its place
        raise web.HTTPSeeOther("/terrain")
    return place


@pages.page
async def contact_form(request: web.Request) -> web.StreamResponse:
    """The form; `?personne=` (from the search by name) attaches it to a person the
    organisation met, and says how many times it met them."""
    principal = await pages.require(request, SCOPE)
    directory = await _directory(request)
    place = await _place_of_today(request, directory)
    request[relay_pages.OPEN_SIGNALS] = await relay_pages.open_signals(request, principal.org)
    if "personne" not in request.query:
        return _contact_form(request, principal, directory, place)
    person_id = await _person_met(request, principal.org, request.query["personne"])
    if person_id is None:
        raise pages.PageError(404, "Personne introuvable", PERSON_REFUSED)
    return _contact_form(request, principal, directory, place,
                         fields=MultiDictProxy(MultiDict(personne=str(person_id))),
                         returning=await store.visits_by(request.app[RUNTIME].pool, person_id,
                                                         principal.org))


@pages.page
async def record(request: web.Request) -> web.StreamResponse:
    """The contact, through POST /v1/intakes's unit of work under the form's idempotency key
    (a second submit of the same form records nothing more and shows the same contact)."""
    principal = await pages.require(request, SCOPE)
    fields = await pages.form(request)
    directory = await _directory(request)
    place = await _place_of_today(request, directory)
    request[relay_pages.OPEN_SIGNALS] = await relay_pages.open_signals(request, principal.org)
    key = fields.get("cle", "").strip()
    payload = _payload(fields, place)
    refused_card: dict[str, str] = {}
    found = fields.get("personne", "").strip()
    if found:  # a person met before, picked from the search by name
        person_id = await _person_met(request, principal.org, found)
        if person_id is None:
            return _contact_form(request, principal, directory, place, status=422,
                                 fields=fields, errors={"form": PERSON_REFUSED})
        payload["person_id"] = str(person_id)
    elif fields.get("carte", "").strip():  # a person met before, by the code of their card
        address = client_address(request, request.app[RUNTIME].settings.trusted_proxies)
        throttle = request.app[THROTTLE]
        wait = await throttle.wait(address)
        if wait:
            log.warning("card_code_throttled", address=address, org=principal.org)
            response = _contact_form(request, principal, directory, place, status=429,
                                     fields=fields, errors={"card": CARD_TOO_MANY})
            response.headers["Retry-After"] = str(max(1, round(wait)))
            return response
        person_id = await _person_of_card(request, principal.org, fields["carte"])
        if person_id is None:
            await throttle.failed(address)
            log.warning("card_code_refused", address=address, org=principal.org)
            refused_card = {"card": CARD_REFUSED}
        else:
            payload["person_id"] = str(person_id)
    try:
        body = IntakeIn.model_validate(payload)
        if refused_card:
            return _contact_form(request, principal, directory, place, status=422,
                                 fields=fields, errors=refused_card)
        if not key or len(key) > idempotency.MAX_KEY or not (key.isascii()
                                                             and key.isprintable()):
            return _contact_form(request, principal, directory, place, status=422,
                                 fields=fields, errors={"form": EXPIRED})
        runtime = request.app[RUNTIME]
        intake, _replayed = await api.record_once(runtime.pool, principal.org, key, payload,
                                                  body, request.app[api.MASTER_KEY], directory)
    except ValidationError as invalid:
        return _contact_form(request, principal, directory, place, status=422, fields=fields,
                             errors=_errors(invalid) | refused_card)
    except Problem as refused:
        if refused.title in ("Unknown person", "Person erased"):  # since it was checked
            return _contact_form(request, principal, directory, place, status=422,
                                 fields=fields, errors={"form": PERSON_REFUSED} if found
                                 else {"card": CARD_REFUSED})
        if any(e.get("field") == "for_org" for e in refused.extra.get("errors") or []):
            return _contact_form(request, principal, directory, place, status=422,
                                 fields=fields, errors={"for_org": ERRORS["for_org"]})
        if refused.title == "Unknown signal":
            return _contact_form(request, principal, directory, place, status=422,
                                 fields=fields, errors={"signal_id": SIGNAL_REFUSED})
        if refused.status == 422 and "reused" in refused.title:  # the form served already
            notice = ("Ce formulaire a déjà servi à enregistrer un contact. Celui-ci est un "
                      "nouveau formulaire : vérifiez-le, puis enregistrez.")
            fresh = MultiDictProxy(MultiDict(
                (k, v) for k, v in fields.items() if k not in ("cle", "moment")))
            return _contact_form(request, principal, directory, place, status=422,
                                 fields=fresh, notice=notice)
        return _contact_form(request, principal, directory, place, status=422, fields=fields,
                             errors={"form": "Ce lieu n'est plus dans l'annuaire : choisissez "
                                     "de nouveau votre lieu du jour."})
    raise web.HTTPSeeOther(f"/terrain/contacts/{intake.id}")


async def _person_of_card(request: web.Request, org: str, typed: str) -> uuid.UUID | None:
    """The person whose card has this code, if the organisation met them (whoever else, and
    whatever else was typed: None)."""
    code = codes.clean(typed)
    if code is None:
        return None
    pool = request.app[RUNTIME].pool
    person_id = await store.person_of_card(
        pool, card.code_hash(card.key(request.app[api.MASTER_KEY]), code))
    if person_id is None or org not in await store.orgs_that_met(pool, person_id):
        return None
    return person_id


async def _person_met(request: web.Request, org: str, given: str) -> uuid.UUID | None:
    """The person a form names (by id, from the search by name), if the organisation met
    them, as for a card: whoever else, and whatever else was given, None."""
    try:
        person_id = uuid.UUID(given)
    except ValueError:
        return None
    met = await store.orgs_that_met(request.app[RUNTIME].pool, person_id)
    return person_id if org in met else None


# --- the search by name ---------------------------------------------------------------------

SEARCH_TOO_SHORT = (f"Tapez au moins {names.MIN_LETTERS} lettres : son prénom, son nom, ou "
                    f"les deux (au plus {names.MAX_TYPED} caractères).")
SEARCH_TOO_MANY = ("Trop de recherches en une minute : attendez un peu avant de chercher de "
                   "nouveau.")


async def _search_page(request: web.Request, principal: Principal,
                       place: Place | None = None, *, status: int = 200, typed: str = "",
                       errors: dict[str, str] | None = None,
                       found: list[dict[str, Any]] | None = None,
                       more: bool = False) -> web.Response:
    directory = await _directory(request)
    place = place or await _place_of_today(request, directory)
    response = pages.render(
        request, "intake/recherche.html", status=status, typed=typed, errors=errors or {},
        found=found, more=more, shown=search.SHOWN, min_letters=names.MIN_LETTERS,
        max_typed=names.MAX_TYPED,
        place_text=describe(place, directory, principal.org, today(request)))
    response.headers["X-Robots-Tag"] = "noindex"
    return response


@pages.page
async def search_form(request: web.Request) -> web.StreamResponse:
    principal = await pages.require(request, SCOPE)
    return await _search_page(request, principal)


@pages.page
async def find_person(request: web.Request) -> web.StreamResponse:
    """People the organisation met, by their name: one lookup of the blind index, only the
    matches unsealed, each logged as a read of their identity; throttled per person signed
    in. The name goes in the form's body, never in an address or a log."""
    principal = await pages.require(request, SCOPE)
    fields = await pages.form(request)
    place = await _place_of_today(request, await _directory(request))
    typed = fields.get("nom", "")
    master = request.app[api.MASTER_KEY]
    term = names.query_term(names.key(master), typed)
    if term is None:
        return await _search_page(request, principal, place, status=422, typed=typed,
                                  errors={"name": SEARCH_TOO_SHORT})
    throttle, account = request.app[SEARCH_THROTTLE], principal.who
    wait = await throttle.wait(account)
    if wait:
        search_log.warning("name_search_throttled", org=principal.org)
        response = await _search_page(request, principal, place, status=429, typed=typed,
                                      errors={"name": SEARCH_TOO_MANY})
        response.headers["Retry-After"] = str(max(1, round(wait)))
        return response
    await throttle.failed(account)  # every search counts: each may show personal data
    people, more = await search.find(request.app[RUNTIME].pool, principal, master, term)
    search_log.info("name_search", org=principal.org, shown=len(people), more=more)
    paths = await _paths(request, people)
    return await _search_page(request, principal, place, typed=typed, more=more, found=[
        {"person": p, "path": paths.get(p.person_id)} for p in people])


async def _paths(request: web.Request,
                 people: list[search.Found]) -> dict[uuid.UUID, list[dict[str, Any]]]:
    """Each person's remobilisation path: the referrals the organisation sent for its last
    contacts with them, as the referral service serves them (read as the person signed in);
    nobody's when it cannot be read now."""
    asked = [(p.person_id, i) for p in people for i in p.intake_ids[-PATH_CONTACTS:]]
    try:
        pages_read = await asyncio.gather(*(peers.referrals_of_intake(request, intake_id)
                                            for _person, intake_id in asked))
    except Problem:
        return {}
    directory = await _directory(request)
    org_names = {o.id: o.name for o in directory.organisations}
    paths: dict[uuid.UUID, list[dict[str, Any]]] = {p.person_id: [] for p in people}
    seen: set[uuid.UUID] = set()  # a referral later contacts joined comes with each of them
    for (person_id, _intake), read in zip(asked, pages_read, strict=True):
        fresh = [r for r in read.items if r.id not in seen]
        seen.update(r.id for r in fresh)
        paths[person_id] += [{
            "at": r.requested_at or r.created_at, "target": org_names.get(r.target, r.target),
            "purpose": fr.PURPOSES.get(r.purpose, r.purpose),
            "status": fr.STATUSES.get(r.status, r.status),
            "badge": fr.STATUS_BADGES.get(r.status, "info"),
            "outcome": fr.OUTCOMES.get(r.outcome) if r.outcome else None,
            "reason": fr.REASONS.get(r.reject_reason) if r.reject_reason else None,
        } for r in fresh]
    for steps in paths.values():
        steps.sort(key=lambda step: step["at"])
    return paths


# --- what routing proposes ------------------------------------------------------------------

async def _proposals(request: web.Request, intake_id: uuid.UUID) -> list[ReferralOut]:
    """The referrals routing made for the intake, waiting a little for it (it runs on the
    intake's event)."""
    deadline = time.monotonic() + ROUTING_WAIT
    while True:
        found = (await peers.referrals_of_intake(request, intake_id)).items
        if found or time.monotonic() >= deadline:
            return found
        await asyncio.sleep(0.3)


def shared_data(intake: IntakeOut, target: str | None = None) -> list[str]:
    """What the recipient could receive, with the person's agreement, in plain French."""
    said = ["ses besoins (" + ", ".join(fr.NEEDS[n] for n in intake.needs) + ")"]
    situation = [fr.AGES[intake.age_bracket]] if intake.age_bracket else []
    situation += [f"commune {intake.commune}"] if intake.commune else []
    situation += [fr.FLAGS[f][:1].lower() + fr.FLAGS[f][1:] for f in intake.flags]
    if situation:
        said.append("sa situation (" + ", ".join(situation) + ")")
    if intake.has_identity:
        said.append("son identité et ses coordonnées, telles qu'elle les a données")
    if intake.has_note:
        said.append("la note de ce contact")
    return said


def _answer_days(directory: reference.Directory, org: str) -> int | None:
    organisation = directory.get(org)
    return organisation.answer_days if organisation else None


async def _own_contact(request: web.Request, principal: Principal) -> asyncpg.Record:
    """The contact of the address, recorded by the person's organisation; else a 404 page."""
    try:
        intake_id = uuid.UUID(request.match_info["id"])
    except ValueError:
        intake_id = None
    pool = request.app[RUNTIME].pool
    row = await store.get_intake(pool, intake_id, {principal.org}) if intake_id else None
    if row is None:
        raise pages.PageError(404, "Contact introuvable", "Ce contact n'existe pas, ou il n'a "
                              "pas été enregistré par votre structure.")
    return row


@pages.page
async def proposal(request: web.Request) -> web.StreamResponse:
    principal = await pages.require(request, SCOPE)
    row = await _own_contact(request, principal)
    intake = domain.intake_out(row)
    try:
        referrals = await _proposals(request, intake.id)
        unavailable = False
    except Problem:
        referrals, unavailable = [], True
    directory = await _directory(request)
    names = {o.id: o.name for o in directory.organisations}
    place = find(directory, f"permanence:{intake.permanence}") if intake.permanence else None
    place = place or Place(directory.site(intake.site) or reference.Site(
        id=intake.site, name=intake.site, kind=reference.SiteKind.other))
    shown = [{
        "referral": r, "target": names.get(r.target, r.target),
        "purpose": fr.PURPOSES.get(r.purpose, r.purpose),
        "why": pages.rule_in_words(r.explanation, names),
        "days": _answer_days(directory, r.target),
    } for r in referrals]
    return pages.render(request, "intake/proposition.html", intake=intake, place=place.site,
                        proposals=shown, data=shared_data(intake), unavailable=unavailable,
                        may_give_card=row["basis"] == "met")


# --- the person's card ----------------------------------------------------------------------

@pages.page
async def give_card(request: web.Request) -> web.StreamResponse:
    """A card for the person of this contact: its code made now, shown once, kept hashed; the
    person's earlier cards stop working."""
    principal = await pages.require(request, SCOPE)
    fields = await pages.form(request)
    row = await _own_contact(request, principal)
    pool = request.app[RUNTIME].pool
    person_id = row["person_id"]
    card_key, card_id = card.key(request.app[api.MASTER_KEY]), uuid.uuid4()
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                           f"intake.cards/{person_id}")  # one card at a time per person
        person = await store.person(conn, person_id)
        if (principal.org not in await store.orgs_that_met(conn, person_id)
                or (person is not None and person["erased_at"] is not None)):
            raise pages.PageError(403, "Carte impossible", "Seule une structure qui a "
                                  "rencontré la personne peut lui donner une carte.")
        for _attempt in range(3):  # two cards with the same code: most unlikely, never kept
            code = codes.new_code()
            try:
                async with conn.transaction():
                    replaced = await store.replace_cards(
                        conn, card_id, person_id, card.code_hash(card_key, code),
                        principal.org, principal.who[:120])
                break
            except asyncpg.UniqueViolationError:
                continue
        else:
            raise pages.PageError(503, "Carte impossible", "Réessayez dans un instant.")
    log.info("card_given", card_id=str(card_id), intake_id=str(row["id"]), org=principal.org,
             replaced=replaced)
    directory = await _directory(request)
    team = directory.get(principal.org)
    team_name = (team.name if team else principal.org).replace(
        "« ", "«\u00a0").replace(" »", "\u00a0»")
    emailed: tuple[bool, str | None] | None = None
    channel = fields.get("envoi")
    if channel in ("courriel", "sms"):  # the same card, where the person asked
        emailed = await to_person.send(
            request, person_id, "courriel" if channel == "courriel" else "sms",
            "Votre carte Relais", card_text(team_name, codes.grouped(code)),
            f"Relais : votre code personnel, donné par {team_name} : {codes.grouped(code)}. "
            "Montrez-le à l'équipe lors de votre prochaine venue. Gardez-le pour vous.", "card")
    response = pages.render(request, "intake/carte.html", intake_id=row["id"],
                            code=codes.grouped(code), replaced=replaced, team=team_name,
                            emailed=emailed, channel=channel)
    response.headers["X-Robots-Tag"] = "noindex"
    return response


def card_text(team: str, code: str) -> str:
    """The card as an email says it (French, plain text)."""
    return "\n".join([
        "Bonjour,", "",
        f"Voici votre code personnel, donné par {team} :", "", code, "",
        "Montrez-le à l'équipe lors de votre prochaine venue : elle vous reconnaîtra sans vous "
        "demander vos papiers. Gardez-le pour vous.", "", "Relais"])


def routes(app: web.Application) -> None:
    pages.templates("intake", "services.intake")
    peers.setup(app)
    app.router.add_get("/terrain", day)
    app.router.add_post("/terrain", pick)
    app.router.add_get("/terrain/contact", contact_form)
    app.router.add_post("/terrain/contact", record)
    app.router.add_get("/terrain/recherche", search_form)
    app.router.add_post("/terrain/recherche", find_person)
    app.router.add_get("/terrain/contacts/{id}", proposal)
    app.router.add_post("/terrain/contacts/{id}/carte", give_card)
    app.router.add_static("/static/intake/", STATIC, name="intake")
    app[THROTTLE] = codes.Throttle.per_minute("card-codes", buckets(app))
    app[SEARCH_THROTTLE] = codes.Throttle.per_minute("name-searches", buckets(app),
                                                     SEARCHES_PER_ACCOUNT, SEARCHES_OVERALL)
