"""The outreach team's consent page (`/terrain/accord/{intake}`): the current information
notice on screen, then what the person agrees to, pre-filled from what routing proposed for
the contact (its referrals awaiting consent) and changeable, and how they agree.

The consent is recorded through the same unit of work as `POST /v1/consents`
(`api.record_once`: the same model, the same checks, the same idempotency key, carried in
the form, so a double submit records once). It is served by the consent service, which owns
that unit of work; the contact and the proposal are read from the intake and referral
services' APIs as the signed-in person (`peers`), as a partner's system would. Its address
is under `/terrain/accord/` so that the proxy sends it here by prefix (deploy/nginx).

A refusal: the consent API has no notion of it (a consent is granted, then withdrawn or
expired), so nothing is recorded and nothing is handed off, and the page says so."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from aiohttp import web
from multidict import MultiDict, MultiDictProxy
from pydantic import ValidationError

from schemas.api import ConsentIn, ConsentOut, IntakeOut, ReferralOut
from schemas.vocab import ConsentMethod, DataCategory, Purpose, ReferralStatus
from services.consent import api, domain, store
from services.directory import Directory
from services.runtime import idempotency, peers
from services.runtime import web as pages
from services.runtime.app import RUNTIME
from services.runtime.auth import Principal
from services.runtime.problem import Problem

LABELS = {ConsentMethod.oral_witnessed: "Oral, devant un témoin",
          ConsentMethod.signed_screen: "Signé sur l'écran",
          ConsentMethod.signed_paper: "Signé sur papier"}
METHODS = {m: LABELS[m] for m in (ConsentMethod.oral_witnessed,)}
"""The methods the page offers (the signature drawn on the screen and the photo of a signed
paper come with the next slices of issue #11)."""
HAND_OFF_WAIT = 3.0
"""How long the confirmation waits for the referral service to hand the referral off (it
does on the consent's event) before it says that it is under way."""
ERRORS = {
    "purposes": "Choisissez au moins une finalité, parmi celles de la liste.",
    "recipients": "Choisissez au moins une structure à qui transmettre.",
    "categories": "Choisissez au moins une catégorie d'informations, parmi celles de la liste.",
    "method": "Choisissez comment la personne donne son accord.",
    "witness": "Donnez le nom du témoin : un accord oral se recueille devant un témoin nommé, "
               "120 caractères au plus.",
}
EXPIRED = "Ce formulaire n'est plus valable : rechargez la page et recommencez."
REUSED = ("Ce formulaire a déjà servi à enregistrer un autre accord. Celui-ci est un nouveau "
          "formulaire : vérifiez-le avec la personne, puis enregistrez.")


@dataclass(frozen=True, slots=True)
class Contact:
    """A contact of the counsellor's organisation, what routing proposed for it, and the
    directory's names of organisations."""

    intake: IntakeOut
    referrals: list[ReferralOut]
    directory: Directory | None

    @property
    def names(self) -> dict[str, str]:
        return {o.id: o.name for o in self.directory.organisations} if self.directory else {}

    @property
    def awaiting(self) -> list[ReferralOut]:
        return [r for r in self.referrals if r.status is ReferralStatus.awaiting_consent]


def _id(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


async def _contact(request: web.Request, principal: Principal) -> Contact:
    """The contact the address names, if the counsellor's organisation recorded it."""
    intake_id = _id(request.match_info["id"])
    try:
        intake = await peers.intake(request, intake_id) if intake_id else None
        if intake is None or intake.org != principal.org:
            raise pages.PageError(404, "Contact introuvable", "Ce contact n'existe pas, ou il "
                                  "n'a pas été enregistré par votre structure.")
        referrals = (await peers.referrals_of_intake(request, intake.id)).items
        directory = await peers.directory(request)
    except Problem as failed:
        raise _unavailable() from failed
    return Contact(intake, referrals, directory)


def _unavailable() -> pages.PageError:
    return pages.PageError(503, "Service momentanément indisponible", "Relais n'a pas pu lire "
                           "ce contact ou sa proposition. Réessayez dans quelques secondes.")


def paragraphs(text: str) -> tuple[str, list[str]]:
    """A notice's title and its paragraphs, each on one line (the text is wrapped)."""
    blocks = [" ".join(line.strip() for line in block.splitlines())
              for block in text.strip().split("\n\n") if block.strip()]
    return (blocks[0], blocks[1:]) if blocks else ("", [])


def proposed_categories(intake: IntakeOut) -> list[str]:
    """The data the contact holds: what the proposal says the recipient could receive."""
    chosen = [DataCategory.needs.value]
    if intake.age_bracket or intake.commune or intake.flags:
        chosen.append(DataCategory.situation.value)
    if intake.has_identity:
        chosen += [DataCategory.identity.value, DataCategory.contact.value]
    if intake.has_note:
        chosen.append(DataCategory.note.value)
    return chosen


async def _form(request: web.Request, contact: Contact, *, status: int = 200,
                fields: MultiDictProxy[str] | None = None,
                errors: dict[str, str] | None = None, notice: str | None = None) -> web.Response:
    pool = request.app[RUNTIME].pool
    given = fields if fields is not None else MultiDictProxy(MultiDict[str]())
    shown = (await store.notice(pool, given["notice"]) if given.get("notice") else None) \
        or await store.current_notice(pool)
    if shown is None:
        raise pages.PageError(503, "Notice d'information introuvable", "Aucune notice "
                              "d'information n'est enregistrée : l'accord ne peut pas être "
                              "recueilli. Prévenez la coordination du territoire.")
    awaiting = contact.awaiting
    targets = list(dict.fromkeys(r.target for r in awaiting))
    opened = fields is None
    values = {
        "cle": given.get("cle") or str(uuid.uuid4()),
        "moment": given.get("moment") or request.app[RUNTIME].clock().astimezone(UTC)
        .isoformat(timespec="seconds"),
        "notice": shown["version"],
        "finalites": list(dict.fromkeys(r.purpose.value for r in awaiting)) if opened
        else given.getall("finalites", []),
        "destinataires": targets if opened else given.getall("destinataires", []),
        "donnees": proposed_categories(contact.intake) if opened
        else given.getall("donnees", []),
        "methode": given.get("methode", next(iter(METHODS))),
        "temoin": given.get("temoin", ""),
    }
    title, text = paragraphs(shown["text"])
    return pages.render(
        request, "consent/accord.html", status=status, intake=contact.intake,
        awaiting=awaiting, names=contact.names, values=values, errors=errors or {},
        notice=notice, notice_title=title, notice_text=text,
        purposes=[p.value for p in Purpose], targets=targets,
        categories=[c.value for c in DataCategory], methods=METHODS,
        statuses=[(contact.names.get(r.target, r.target), r.status)
                  for r in contact.referrals])


@pages.page
async def consent_form(request: web.Request) -> web.StreamResponse:
    principal = await pages.require(request, "consent:write")
    return await _form(request, await _contact(request, principal))


def payload(fields: MultiDictProxy[str], intake: IntakeOut,
            principal: Principal) -> dict[str, Any]:
    """The form as the API's body (`ConsentIn`)."""
    body: dict[str, Any] = {
        "person_id": str(intake.person_id), "purposes": fields.getall("finalites", []),
        "recipients": fields.getall("destinataires", []),
        "categories": fields.getall("donnees", []),
        "notice_version": fields.get("notice", "").strip(),
        "method": fields.get("methode", "").strip(), "captured_by": principal.who[:120],
        "captured_at_site": intake.site, "granted_at": fields.get("moment", "").strip(),
    }
    witness = fields.get("temoin", "").strip()
    if witness:
        body["witness"] = witness
    return body


def errors_of(invalid: ValidationError) -> dict[str, str]:
    """Each invalid field's French message, by the API's field name."""
    errors: dict[str, str] = {}
    for error in invalid.errors():
        field = str(error["loc"][0]) if error["loc"] else ""
        if not field and "witness" in str(error.get("msg", "")):
            field = "witness"
        if field in ERRORS:
            errors.setdefault(field, ERRORS[field])
        else:  # the form's time, the notice or the person: the form is to be opened again
            errors.setdefault("form", EXPIRED)
    return errors


@pages.page
async def record(request: web.Request) -> web.StreamResponse:
    """The consent, through POST /v1/consents's unit of work under the form's idempotency
    key; or the person's refusal, which records nothing."""
    principal = await pages.require(request, "consent:write")
    fields = await pages.form(request)
    contact = await _contact(request, principal)
    if fields.get("decision") == "refus":
        return pages.render(request, "consent/accord-refus.html", intake=contact.intake,
                            targets=[contact.names.get(r.target, r.target)
                                     for r in contact.awaiting])
    key = fields.get("cle", "").strip()
    body = payload(fields, contact.intake, principal)
    try:
        model = ConsentIn.model_validate(body)
        if not key or len(key) > idempotency.MAX_KEY or not (key.isascii()
                                                             and key.isprintable()):
            return await _form(request, contact, status=422, fields=fields,
                               errors={"form": EXPIRED})
        consent, _replayed = await api.record_once(request, principal.org, key, body, model)
    except ValidationError as invalid:
        return await _form(request, contact, status=422, fields=fields,
                           errors=errors_of(invalid))
    except Problem as refused:
        if refused.status == 422 and "reused" in refused.title:
            fresh = MultiDictProxy(MultiDict(
                (k, v) for k, v in fields.items() if k not in ("cle", "moment")))
            return await _form(request, contact, status=422, fields=fresh, notice=REUSED)
        if refused.status == 422:  # the notice shown, or the person, is no longer known
            return await _form(request, contact, status=422, fields=fields,
                               errors={"form": EXPIRED})
        if refused.status == 403:
            raise pages.PageError(403, "Accord impossible", "Seule une structure qui a "
                                  "rencontré la personne recueille son accord.") from refused
        raise _unavailable() from refused
    raise web.HTTPSeeOther(f"/terrain/accord/{contact.intake.id}/{consent.id}")


async def _handed_off(request: web.Request, intake: IntakeOut,
                      consent: ConsentOut) -> list[ReferralOut]:
    """The contact's referrals this consent covers, waiting a little for the referral service
    to hand them off (it does on the consent's event)."""
    deadline = time.monotonic() + HAND_OFF_WAIT
    while True:
        covered = [r for r in (await peers.referrals_of_intake(request, intake.id)).items
                   if r.target in consent.recipients and r.purpose in consent.purposes]
        waiting = [r for r in covered if r.status is ReferralStatus.awaiting_consent]
        if not waiting or time.monotonic() >= deadline:
            return covered
        await asyncio.sleep(0.3)


@pages.page
async def recorded(request: web.Request) -> web.StreamResponse:
    """What the person agreed to, to whom, until when, and what became of the referral."""
    principal = await pages.require(request, "consent:read")
    contact = await _contact(request, principal)
    consent_id = _id(request.match_info["consent"])
    row = await store.get_consent(request.app[RUNTIME].pool, consent_id, principal.org) \
        if consent_id else None
    if row is None or row["person_id"] != contact.intake.person_id:
        raise pages.PageError(404, "Accord introuvable", "Cet accord n'existe pas, ou il n'a "
                              "pas été recueilli par votre structure pour ce contact.")
    consent = domain.consent_out(row)
    try:
        referrals = await _handed_off(request, contact.intake, consent)
    except Problem as failed:
        raise _unavailable() from failed
    days = ({o.id: o.answer_days for o in contact.directory.organisations}
            if contact.directory else {})
    return pages.render(request, "consent/accord-fait.html", intake=contact.intake,
                        consent=consent, witness=row["witness"], names=contact.names,
                        methods=LABELS, referrals=referrals, days=days)


def routes(app: web.Application) -> None:
    pages.templates("consent", "services.consent")
    peers.setup(app)
    app.router.add_get("/terrain/accord/{id}", consent_form)
    app.router.add_post("/terrain/accord/{id}", record)
    app.router.add_get("/terrain/accord/{id}/{consent}", recorded)
