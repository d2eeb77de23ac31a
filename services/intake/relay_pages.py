"""The relays of the network (issue #11, MiloMouv'): their personal links, their form, and the
open signals the mobile team answers.

- The coordination (`directory:write`) lists the relays at `/coordination/relais` and
  creates one for a mobile team (`POST /coordination/relais/nouveau`): its kind, its name,
  the team that receives its signals. Relais shows the relay's personal link once
  (services/intake/relays.py: only its keyed hash is kept). A link is revoked at once
  (`POST /coordination/relais/{id}/retrait`; a signal being recorded meanwhile is refused
  in its transaction). These pages are the intake service's, which owns the signals (nginx:
  `location /coordination/relais`).
- The relay, without an account, opens its link (`/signalement/<token>`): one short form (who
  the person is, how to reach them, what they need, commune and age if known), recorded
  through the same unit of work as `POST /v1/signals` (`api.signal_once`: the same model, the
  same NIR refusal, the hint sealed, the idempotency key in a hidden field so a double submit
  records once), with the relay's kind and name and its id. Then a page thanks it. The form
  is checked for its origin and carries a token bound to the link. An unknown link, or a
  revoked one, shows nothing (404, 410); wrong links are throttled per address and overall
  and logged without the token; these addresses are kept out of traces and the proxy's log.
- The mobile team sees its open signals on `/terrain` and picks one on the contact form
  (`open_signals`, used by services/intake/pages.py): the hint unsealed for the team's
  organisation only. The contact's `signal_id` closes the signal (`api.record_intake`)."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
from aiohttp import web
from multidict import MultiDict, MultiDictProxy
from pydantic import ValidationError

from schemas import vocab_fr as fr
from schemas.api import NIR, RelayKind, SignalIn
from schemas.vocab import AgeBracket, Need
from services import directory as reference
from services.intake import api, relays, store
from services.runtime import codes, idempotency
from services.runtime import web as pages
from services.runtime.app import RUNTIME
from services.runtime.http import client_address
from services.runtime.logging import get_logger
from services.runtime.problem import Problem
from services.runtime.ratelimit import buckets

SCOPE = "directory:write"
TEAM_KIND = "outreach_team"
NAME_MAX = 120
WHO_MAX = 200
REACH_MAX = 200
THROTTLE = web.AppKey("relay_link_throttle", codes.Throttle)
OPEN_SIGNALS = web.RequestKey("open_signals", list[dict[str, Any]])
"""Where the contact form's handlers keep the open signals for the form (`open_signals`)."""
log = get_logger("relais.intake.relay")


def _private(response: web.Response) -> web.Response:
    """A page whose address is a secret, or with personal data: no cache, no index."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Robots-Tag"] = "noindex"
    return response


def _names(directory: reference.Directory) -> dict[str, str]:
    return {o.id: o.name.replace("« ", "«\u00a0").replace(" »", "\u00a0»")
            for o in directory.organisations}


async def _directory(request: web.Request) -> reference.Directory:
    return await request.app[api.DIRECTORY].get(request.app[RUNTIME].pool)


# --- the coordination: relays and their links -----------------------------------------------

def _teams(directory: reference.Directory) -> list[reference.Organisation]:
    return sorted((o for o in directory.organisations if o.kind == TEAM_KIND),
                  key=lambda o: o.name)


async def _relays_page(request: web.Request, *, status: int = 200,
                       values: dict[str, str] | None = None,
                       errors: dict[str, str] | None = None) -> web.Response:
    directory = await _directory(request)
    teams = _teams(directory)
    values = values or {"type": "", "nom": "", "equipe": teams[0].id if len(teams) == 1
                        else ""}
    revoked = request.query.get("retire")
    rows = await store.relays(request.app[RUNTIME].pool)
    return pages.render(request, "intake/relais.html", status=status, relays=rows,
                        names=_names(directory), teams=teams, kinds=list(RelayKind),
                        values=values, errors=errors or {},
                        revoked=next((r for r in rows if str(r["id"]) == revoked), None))


@pages.page
async def relay_list(request: web.Request) -> web.StreamResponse:
    await pages.require(request, SCOPE)
    return await _relays_page(request)


@pages.page
async def create_relay(request: web.Request) -> web.StreamResponse:
    """A relay and its personal link, shown once (only its keyed hash is kept)."""
    principal = await pages.require(request, SCOPE)
    fields = await pages.form(request)
    values = {name: fields.get(name, "").strip() for name in ("type", "nom", "equipe")}
    directory = await _directory(request)
    errors = {}
    if values["type"] not in set(RelayKind):
        errors["type"] = "Choisissez le type de relais dans la liste."
    if not values["nom"] or len(values["nom"]) > NAME_MAX:
        errors["nom"] = (f"Le nom du relais, {NAME_MAX} caractères au plus, par exemple "
                         "« Mairie de Saleux ».")
    if values["equipe"] not in {t.id for t in _teams(directory)}:
        errors["equipe"] = "Choisissez l'équipe mobile qui recevra ses signalements."
    if errors:
        return await _relays_page(request, status=422, values=values, errors=errors)
    relay_id, token = uuid.uuid4(), relays.new_token()
    master = request.app[api.MASTER_KEY]
    await store.insert_relay(request.app[RUNTIME].pool, relay_id, values["equipe"],
                             values["type"], values["nom"],
                             relays.link_hash(relays.key(master), token), principal.who[:120])
    log.info("relay_created", relay_id=str(relay_id), org=values["equipe"],
             kind=values["type"], by_org=principal.org)
    base = request.app[RUNTIME].settings.base_url.rstrip("/")
    return _private(pages.render(
        request, "intake/relais-lien.html", relay_name=values["nom"],
        kind=fr.RELAY_KINDS[values["type"]], team=_names(directory)[values["equipe"]],
        link=f"{base}/signalement/{token}"))


@pages.page
async def revoke_relay(request: web.Request) -> web.StreamResponse:
    """The relay's link stops working now."""
    principal = await pages.require(request, SCOPE)
    await pages.form(request)
    try:
        relay_id = uuid.UUID(request.match_info["id"])
    except ValueError:
        relay_id = None
    row = (await store.revoke_relay(request.app[RUNTIME].pool, relay_id, principal.who[:120])
           if relay_id else None)
    if row is None:
        raise pages.PageError(404, "Relais introuvable", "Ce relais n'existe pas. Revenez à la "
                              "liste des relais du réseau.")
    log.info("relay_revoked", relay_id=str(relay_id), org=row["org"], by_org=principal.org)
    raise web.HTTPSeeOther(f"/coordination/relais?retire={relay_id}#relais")


# --- the relay's own pages ------------------------------------------------------------------

NO_LINK = ("Ce lien ne permet pas de signaler une personne. Vérifiez qu'il est recopié en "
           "entier, ou demandez le vôtre à la coordination du territoire.")
REVOKED = ("Ce lien a été retiré par la coordination du territoire : il ne permet plus de "
           "signaler une personne. Pour en avoir un nouveau, adressez-vous à elle.")
TOO_MANY = ("Trop de liens erronés depuis votre connexion : attendez une minute avant de "
            "réessayer.")


def _refused(request: web.Request, status: int, title: str, detail: str) -> web.Response:
    return _private(pages.render(request, "intake/signalement-refus.html", status=status,
                                 title=title, detail=detail))


async def _relay_of(request: web.Request) -> asyncpg.Record | web.Response:
    """The relay whose link this is, or the page that says why not: nothing is looked up
    while this address (or everyone) must wait; a wrong link counts against the throttle
    and is logged with the address, never the token."""
    settings = request.app[RUNTIME].settings
    address = client_address(request, settings.trusted_proxies)
    throttle = request.app[THROTTLE]
    wait = await throttle.wait(address)
    if wait:
        log.warning("relay_link_throttled", address=address)
        response = _refused(request, 429, "Trop d'essais", TOO_MANY)
        response.headers["Retry-After"] = str(max(1, round(wait)))
        return response
    token = request.match_info["token"]
    relay = None
    if relays.well_formed(token):
        relay = await store.relay_by_link(request.app[RUNTIME].pool, relays.link_hash(
            relays.key(request.app[api.MASTER_KEY]), token))
    if relay is None:
        await throttle.failed(address)
        log.warning("relay_link_refused", address=address)
        return _refused(request, 404, "Lien non valable", NO_LINK)
    if relay["revoked_at"] is not None:
        log.warning("relay_link_revoked", relay_id=str(relay["id"]), address=address)
        return _refused(request, 410, "Lien retiré", REVOKED)
    return relay


ERRORS = {
    "qui": "Dites-nous son prénom, ou comment la reconnaître ("
           f"{WHO_MAX} caractères au plus).",
    "joindre": f"Comment la joindre : {REACH_MAX} caractères au plus.",
    "needs": "Choisissez ses besoins dans la liste.",
    "commune": "Le code INSEE de la commune : 5 caractères, par exemple 80021 pour Amiens. "
               "Laissez vide si vous ne le savez pas.",
    "age_bracket": "Choisissez une tranche d'âge de la liste.",
}
NIR_REFUSED = ("N'écrivez pas de numéro de sécurité sociale : il ne doit jamais être "
               "enregistré dans Relais. Retirez-le, puis envoyez.")
EXPIRED = "Ce formulaire n'est plus valable : rechargez la page et recommencez."


def _signal_payload(fields: MultiDictProxy[str], relay: asyncpg.Record) -> dict[str, Any]:
    """The form as the API's body (`SignalIn`): the relay's kind and name are the relay's,
    never typed."""
    who, reach = fields.get("qui", "").strip(), fields.get("joindre", "").strip()
    payload: dict[str, Any] = {"relay_kind": relay["kind"], "relay_name": relay["name"],
                               "needs": fields.getall("besoins", [])}
    if who:
        payload["hint"] = relays.hint(who, reach or None)
    for name, key in (("commune", "commune"), ("age", "age_bracket")):
        if fields.get(name, "").strip():
            payload[key] = fields[name].strip()
    return payload


def _signal_errors(fields: MultiDictProxy[str], invalid: ValidationError | None) -> dict[str,
                                                                                         str]:
    """Each invalid field's French message, by the form's field name."""
    errors: dict[str, str] = {}
    who, reach = fields.get("qui", "").strip(), fields.get("joindre", "").strip()
    if not who or len(who) > WHO_MAX:
        errors["qui"] = ERRORS["qui"]
    if len(reach) > REACH_MAX:
        errors["joindre"] = ERRORS["joindre"]
    for name, text in (("qui", who), ("joindre", reach)):
        if NIR.search(text):
            errors[name] = NIR_REFUSED
    for error in invalid.errors() if invalid is not None else ():
        field = str((error["loc"] or ("",))[0])
        if field in ERRORS:
            errors.setdefault(field, ERRORS[field])
        elif field == "hint":  # the hint is the two text fields: said next to them above
            if not {"qui", "joindre"} & errors.keys():
                errors["qui"] = NIR_REFUSED
        else:
            errors.setdefault("form", EXPIRED)
    return errors


def _signal_form(request: web.Request, relay: asyncpg.Record, directory: reference.Directory,
                 *, status: int = 200, fields: MultiDictProxy[str] | None = None,
                 errors: dict[str, str] | None = None, notice: str | None = None
                 ) -> web.Response:
    given = fields if fields is not None else MultiDictProxy(MultiDict[str]())
    token = request.match_info["token"]
    values = {"cle": given.get("cle") or str(uuid.uuid4()), "qui": given.get("qui", ""),
              "joindre": given.get("joindre", ""), "besoins": given.getall("besoins", []),
              "commune": given.get("commune", ""), "age": given.get("age", "")}
    return _private(pages.render(
        request, "intake/signalement.html", status=status, relay=relay,
        team=_names(directory).get(relay["org"], relay["org"]), values=values,
        errors=errors or {}, notice=notice, token=token,
        form_token=relays.form_token(relays.key(request.app[api.MASTER_KEY]), token),
        needs=list(Need), ages=["", *AgeBracket], age_labels={"": "Je ne sais pas"} | fr.AGES,
        who_max=WHO_MAX, reach_max=REACH_MAX))


@pages.page
async def signal_form(request: web.Request) -> web.StreamResponse:
    relay = await _relay_of(request)
    if isinstance(relay, web.Response):
        return relay
    return _signal_form(request, relay, await _directory(request))


@pages.page
async def send_signal(request: web.Request) -> web.StreamResponse:
    """The signal, through POST /v1/signals's unit of work, under the form's idempotency key
    (prefixed with the relay's id): a second submit of the same form records nothing more."""
    relay = await _relay_of(request)
    if isinstance(relay, web.Response):
        return relay
    fields = await pages.form(request, with_session=False)
    token = request.match_info["token"]
    master = request.app[api.MASTER_KEY]
    if not relays.form_token_matches(relays.key(master), token, fields.get("csrf", "")):
        return _refused(request, 403, "Formulaire expiré", "Ce formulaire ne vient pas de "
                        "votre page ou a expiré. Rouvrez votre lien et recommencez.")
    directory = await _directory(request)
    payload = _signal_payload(fields, relay)
    key = fields.get("cle", "").strip()
    scoped = f"relay:{relay['id']}:{key}"  # a relay's keys are its own
    try:
        body = SignalIn.model_validate(payload)
        invalid = None
    except ValidationError as refused:
        body, invalid = None, refused
    errors = _signal_errors(fields, invalid)
    if not (key and len(scoped) <= idempotency.MAX_KEY and key.isascii()
            and key.isprintable()):
        errors["form"] = EXPIRED
    if errors or body is None:
        return _signal_form(request, relay, directory, status=422, fields=fields,
                            errors=errors or {"form": EXPIRED})
    try:
        signal, replayed = await api.signal_once(
            request.app[RUNTIME].pool, relay["org"], scoped, payload, body, master,
            relay["id"])
    except Problem as refused:
        if refused.status == 410:  # revoked while the form was being sent
            return _refused(request, 410, "Lien retiré", REVOKED)
        if refused.status != 422 or "reused" not in refused.title:
            raise
        fresh = MultiDictProxy(MultiDict((k, v) for k, v in fields.items() if k != "cle"))
        return _signal_form(request, relay, directory, status=422, fields=fresh, notice=(
            "Ce formulaire a déjà servi à signaler une personne. Celui-ci est un nouveau "
            "formulaire : vérifiez-le, puis envoyez."))
    log.info("relay_signal", relay_id=str(relay["id"]), signal_id=str(signal.id),
             org=relay["org"], replayed=replayed)
    raise web.HTTPSeeOther(f"/signalement/{token}/merci")


@pages.page
async def thanks(request: web.Request) -> web.StreamResponse:
    relay = await _relay_of(request)
    if isinstance(relay, web.Response):
        return relay
    directory = await _directory(request)
    return _private(pages.render(request, "intake/signalement-merci.html", relay=relay,
                                 team=_names(directory).get(relay["org"], relay["org"]),
                                 token=request.match_info["token"]))


# --- the mobile team's open signals ---------------------------------------------------------

async def open_signals(request: web.Request, org: str) -> list[dict[str, Any]]:
    """The organisation's open signals, the newest first, their hints unsealed (for the
    organisation's own pages only)."""
    master = request.app[api.MASTER_KEY]
    rows = await store.list_signals(request.app[RUNTIME].pool, org, "open", api.PAGE)
    shown = []
    for row in rows:
        hint = (master.open(row["hint"], api.HINT_CONTEXT.format(row["id"])).decode()
                if row["hint"] is not None else "")
        lines = hint.splitlines() or ["Sans indication"]
        shown.append({
            "id": str(row["id"]), "who": lines[0], "more": lines[1:],
            "relay": row["relay_name"], "kind": fr.RELAY_KINDS.get(row["relay_kind"],
                                                                   row["relay_kind"]),
            "needs": [fr.NEEDS.get(n, n) for n in row["needs"]],
            "age": fr.AGES.get(row["age_bracket"] or "", ""), "commune": row["commune"],
            "at": row["created_at"]})
    return shown


def routes(app: web.Application) -> None:
    app[THROTTLE] = codes.Throttle.per_minute("relay-links", buckets(app))
    app.router.add_get("/coordination/relais", relay_list)
    app.router.add_post("/coordination/relais/nouveau", create_relay)
    app.router.add_post("/coordination/relais/{id}/retrait", revoke_relay)
    app.router.add_get("/signalement/{token}", signal_form)
    app.router.add_post("/signalement/{token}", send_signal)
    app.router.add_get("/signalement/{token}/merci", thanks)
