"""An organisation's notification settings page
(`/coordination/organisations/{org}/notifications`): who is told and how (the team mailbox,
the counsellors' addresses, the channels, the kinds of email not wanted), and its webhook
endpoints with their last deliveries.

The same rules and writes as the API (`configuration`): the organisation itself and the
coordination read the settings, the coordination alone sets them (`PUT /v1/recipients/{org}`);
an organisation registers and stops its own webhook endpoints only, and the secret of one is
shown once, in the answer to its registration."""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web
from multidict import MultiDictProxy
from pydantic import ValidationError

from schemas.api import EndpointIn, NotifyChannel, RecipientIn
from services.notify import configuration, domain, handlers, store
from services.runtime import web as screens
from services.runtime.app import RUNTIME
from services.runtime.auth import Principal

KIND_LABELS: dict[str, str] = {
    domain.Kind.new_referral: "Nouvelle orientation",
    domain.Kind.answered: "Réponse d'un partenaire à une orientation envoyée",
    domain.Kind.reminder: "Rappel : orientation sans réponse",
    domain.Kind.escalation: "Orientation sans réponse après le délai (pour la coordination)",
    domain.Kind.stop_processing: "Ordre d'arrêter le traitement (consentement retiré ou expiré)",
    domain.Kind.cancelled: "Orientation annulée par l'équipe qui l'a envoyée",
    domain.Kind.expired: "Orientation expirée sans réponse",
}
CHANNEL_LABELS: dict[str, str] = {
    NotifyChannel.email: "Par courriel, à l'équipe et à chaque conseiller ou conseillère",
    NotifyChannel.inbox: "Dans la boîte de réception de Relais (en direct et par l'API)",
}
OUTCOMES: dict[str, tuple[str, str]] = {  # label, DSFR badge
    "delivered": ("Remis", "success"), "retry": ("Nouvel essai prévu", "warning"),
    "dead": ("Abandonné", "error"),
}
LAST_DELIVERIES = 3
Errors = dict[str, str]


def _path(org: str) -> str:
    return f"/coordination/organisations/{org}/notifications"


async def _reader(request: web.Request) -> tuple[Principal, str]:
    """The signed-in person, who may read this organisation's settings (as from the API)."""
    principal = await screens.require(request, "notification:read")
    org = request.match_info["org"]
    if not configuration.may_read(principal, org):
        raise screens.PageError(403, "Accès refusé", "Vous ne voyez que les réglages des "
                                "notifications de votre structure.")
    return principal, org


async def _show(request: web.Request, principal: Principal, org: str, *, status: int = 200,
                values: dict[str, Any] | None = None, errors: Errors | None = None,
                hook: dict[str, Any] | None = None, hook_errors: Errors | None = None,
                secret: str | None = None, notice: str | None = None) -> web.Response:
    pool = request.app[RUNTIME].pool
    recipient = await store.recipient(pool, org)
    if recipient is None:
        raise screens.PageError(404, "Structure introuvable", "Cette structure n'est pas dans "
                                "l'annuaire.")
    own = org == principal.org
    endpoints = [dict(e) | {"deliveries": await store.deliveries(pool, org, e["id"],
                                                                  LAST_DELIVERIES)}
                 for e in await store.endpoints_shown(pool, org)] if own else []
    response = screens.render(
        request, "notify/notifications.html", status=status, org=org, recipient=recipient,
        values=values or {"email": recipient["email"],
                          "counsellors": "\n".join(recipient["counsellors"]),
                          "channels": recipient["channels"], "muted": recipient["muted"]},
        errors=errors or {}, hook=hook or {"url": "", "kinds": []}, hook_errors=hook_errors or {},
        editable=configuration.SETS_RECIPIENTS in principal.scopes, own=own,
        manages=configuration.manages_endpoints(principal, org), endpoints=endpoints,
        secret=secret, notice=notice, kinds=KIND_LABELS, channels=CHANNEL_LABELS,
        mutable=[k for k in KIND_LABELS if k not in domain.MANDATORY],
        mandatory=[KIND_LABELS[k] for k in KIND_LABELS if k in domain.MANDATORY],
        outcomes=OUTCOMES)
    response.headers["Cache-Control"] = "no-store"
    return response


@screens.page
async def settings(request: web.Request) -> web.StreamResponse:
    principal, org = await _reader(request)
    notice = {"enregistre": "Réglages des notifications enregistrés.",
              "desactive": "Webhook désactivé : il ne reçoit plus rien."}.get(
        request.query.get("fait", ""))
    return await _show(request, principal, org, notice=notice)


# --- who is told, and how ------------------------------------------------------------------


def recipient_errors(exc: ValidationError, values: dict[str, Any]) -> Errors:
    """The API's validation failures, said in French next to their fields."""
    errors: Errors = {}
    wrong: list[str] = []
    for problem in exc.errors():
        field, index = problem["loc"][0], (problem["loc"][1:] or [None])[0]
        if field == "email":
            errors["email"] = "Saisissez une adresse électronique valide, par exemple " \
                              "accueil@structure.fr."
        elif field == "counsellors" and isinstance(index, int):
            wrong.append(f"« {values['counsellors'][index]} »")
        elif field == "counsellors":
            errors["counsellors"] = "Saisissez 50 adresses au plus."
        elif field == "channels":
            errors["channels"] = "Choisissez parmi le courriel et la boîte de réception."
        else:
            errors[str(field)] = "Cette valeur n'est pas acceptée."
    if wrong:
        errors["counsellors"] = ("Ces adresses ne sont pas des adresses électroniques "
                                 f"valides : {', '.join(wrong)}." if len(wrong) > 1 else
                                 f"Cette adresse n'est pas une adresse électronique valide : "
                                 f"{wrong[0]}.")
    return errors


def muted_error(unknown: list[str], mandatory: list[str]) -> str:
    if unknown:
        return f"Type de message inconnu : {', '.join(unknown)}."
    return "Ces messages sont toujours envoyés : " \
        f"{', '.join(KIND_LABELS[k].lower() for k in mandatory)}."


def _recipient_values(fields: MultiDictProxy[str]) -> dict[str, Any]:
    text = fields.get("counsellors", "")
    return {"email": fields.get("email", "").strip(),
            "counsellors": [a.strip() for a in text.replace(",", "\n").replace(";", "\n")
                            .splitlines() if a.strip()],
            "channels": fields.getall("channels", []), "muted": fields.getall("muted", [])}


@screens.page
async def save(request: web.Request) -> web.StreamResponse:
    principal = await screens.require(request, configuration.SETS_RECIPIENTS)
    org = request.match_info["org"]
    values = _recipient_values(await screens.form(request))
    errors: Errors = {}
    body: RecipientIn | None = None
    try:
        body = RecipientIn.model_validate(values)
    except ValidationError as exc:
        errors = recipient_errors(exc, values)
    unknown, mandatory = configuration.refused_muted(values["muted"])
    if unknown or mandatory:
        errors["muted"] = muted_error(unknown, mandatory)
    if body is None or errors:
        shown = values | {"counsellors": "\n".join(values["counsellors"])}
        return await _show(request, principal, org, status=422, values=shown, errors=errors)
    runtime = request.app[RUNTIME]
    row, notice = await configuration.set_recipient(runtime.pool, org, body, principal.who)
    if row is None:
        raise screens.PageError(404, "Structure introuvable", "Cette structure n'est pas dans "
                                "l'annuaire.")
    handlers.tell_later(runtime.settings, notice)
    raise web.HTTPSeeOther(f"{_path(org)}?fait=enregistre")


# --- webhook endpoints ---------------------------------------------------------------------


async def _manager(request: web.Request) -> tuple[Principal, str]:
    principal = await screens.require(request, "notification:write")
    org = request.match_info["org"]
    if not configuration.manages_endpoints(principal, org):
        raise screens.PageError(403, "Accès refusé", "Une structure déclare et arrête ses "
                                "propres webhooks seulement.")
    return principal, org


def endpoint_error(refused: configuration.EndpointRefused) -> str:
    if refused.host is None:
        return "Saisissez une adresse web complète, qui commence par https:// (ou http://) " \
               "suivi du nom du serveur."
    return f"Relais n'envoie les webhooks qu'à des adresses publiques d'Internet : " \
           f"« {refused.host} » mène à une adresse privée ou interne (réseau local, " \
           f"machine elle-même)."


@screens.page
async def add_endpoint(request: web.Request) -> web.StreamResponse:
    principal, org = await _manager(request)
    fields = await screens.form(request)
    hook = {"url": fields.get("url", "").strip(), "kinds": fields.getall("kinds", [])}
    runtime = request.app[RUNTIME]
    try:
        body = EndpointIn.model_validate(hook)
        _row, secret = await configuration.add_endpoint(
            runtime.pool, runtime.settings.webhook_allowed_networks, org, body)
    except ValidationError:
        return await _show(request, principal, org, status=422, hook=hook, hook_errors={
            "url": "L'adresse est trop longue (2 000 caractères au plus)."})
    except configuration.EndpointRefused as refused:
        return await _show(request, principal, org, status=422, hook=hook,
                           hook_errors={"url": endpoint_error(refused)})
    except configuration.UnknownKinds as unknown:
        return await _show(request, principal, org, status=422, hook=hook, hook_errors={
            "kinds": f"Type de message inconnu : {', '.join(unknown.kinds)}."})
    return await _show(request, principal, org, status=201, secret=secret)


@screens.page
async def stop_endpoint(request: web.Request) -> web.StreamResponse:
    principal, org = await _manager(request)
    await screens.form(request)
    try:
        endpoint_id = uuid.UUID(request.match_info["id"])
    except ValueError:
        endpoint_id = None
    if endpoint_id is None or not await store.deactivate_endpoint(
            request.app[RUNTIME].pool, endpoint_id, principal.org):
        raise screens.PageError(404, "Webhook introuvable", "Ce webhook n'existe pas ou est "
                                "déjà désactivé.")
    raise web.HTTPSeeOther(f"{_path(org)}?fait=desactive#webhooks")


def routes(app: web.Application) -> None:
    screens.templates("notify", "services.notify")
    app.router.add_get("/coordination/organisations/{org}/notifications", settings)
    app.router.add_post("/coordination/organisations/{org}/notifications", save)
    app.router.add_post("/coordination/organisations/{org}/webhooks", add_endpoint)
    app.router.add_post("/coordination/organisations/{org}/webhooks/{id}/desactiver",
                        stop_endpoint)
