"""The outreach team's consent page (`/terrain/accord/{intake}`): the current information
notice on screen, then what the person agrees to, pre-filled from what routing proposed for
the contact (its referrals awaiting consent) and changeable, and how they agree.

The consent is recorded through the same unit of work as `POST /v1/consents`
(`api.record_once`: the same model, the same checks, the same idempotency key, carried in
the form, so a double submit records once). It is served by the consent service, which owns
that unit of work; the contact and the proposal are read from the intake and referral
services' APIs as the signed-in person (`peers`), as a partner's system would. Its address
is under `/terrain/accord/` so that the proxy sends it here by prefix (deploy/nginx).

A signed consent comes with its proof: the signature drawn on the screen, or a photo of the
signed paper form (both made into an image by `static/signature.js`), sealed in the identity
vault first (`POST /v1/people/{id}/evidence`, as the signed-in person), then named by its
SHA-256 in the consent (`evidence_sha256`), and so on the trail.

A refusal, once confirmed, cancels the referrals that waited for the consent, through the
referral service's API as the sender (`POST /v1/referrals/{id}/cancel`, with the reason):
nothing is handed off, and the referral's history says why. Cancelling again changes
nothing, so a refusal sent twice (or replayed from a device) is recorded once."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from multidict import MultiDict, MultiDictProxy
from pydantic import ValidationError

from schemas.api import ConsentIn, ConsentOut, EvidenceIn, EvidenceKind, IntakeOut, ReferralOut
from schemas.vocab import ConsentMethod, DataCategory, Purpose, ReferralStatus
from services.consent import api, domain, store
from services.directory import Directory
from services.runtime import idempotency, offline, peers, sealing
from services.runtime import web as pages
from services.runtime.app import RUNTIME
from services.runtime.auth import Principal
from services.runtime.http import json_response, read_json
from services.runtime.problem import Problem

LABELS = {ConsentMethod.signed_screen: "Signé sur l'écran",
          ConsentMethod.oral_witnessed: "Oral, devant un témoin",
          ConsentMethod.signed_paper: "Signé sur papier"}
METHODS = {ConsentMethod.signed_screen: "Signature sur l'écran",
           ConsentMethod.oral_witnessed: "Oral, devant un témoin",
           ConsentMethod.signed_paper: "Formulaire papier signé, pris en photo"}
"""The methods the page offers, the first chosen by default."""
PROOF = {ConsentMethod.signed_screen: ("signature", EvidenceKind.signature),
         ConsentMethod.signed_paper: ("photo", EvidenceKind.signed_form)}
"""For a signed consent: the form's field that carries the image, and what it is."""
DATA_URL = re.compile(r"^data:(image/png|image/jpeg);base64,([A-Za-z0-9+/=]+)$")
REFUSAL = "La personne a refusé que ses informations soient transmises."
"""The reason a refusal gives to the referrals it cancels (their history shows it)."""
MASTER = web.AppKey("consent_master_key", sealing.Keyring)
SAME_CONTACT = timedelta(seconds=30)
"""An answer sent from a device names the time of its own contact: within this of the
contact's (the device's clock is corrected at each request, a few seconds apart)."""
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
    "signature": "Faites signer la personne dans le cadre, avec le doigt ou un stylet.",
    "photo": "Prenez en photo le formulaire signé (une image de 500 Ko au plus).",
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


paragraphs = pages.paragraphs


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
        "signature": given.get("signature", ""),
        "photo": given.get("photo", ""),
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


def image_of(data_url: str) -> tuple[str, str] | None:
    """The media type and base64 text of an image the page sent as a data URL (a PNG
    signature, a JPEG photo); None when there is none."""
    found = DATA_URL.match(data_url.strip())
    return (found.group(1), found.group(2)) if found else None


def proof_of(fields: MultiDictProxy[str]) -> tuple[str, EvidenceIn | None] | None:
    """For a signed consent: the form's field for its proof and the proof, if it is a right
    one (an image of the kind the method says, small enough); None for another method."""
    try:
        method = ConsentMethod(fields.get("methode", ""))
    except ValueError:
        return None
    if method not in PROOF:
        return None
    field, kind = PROOF[method]
    image = image_of(fields.get(field, ""))
    if image is None:
        return field, None
    try:
        return field, EvidenceIn.model_validate(
            {"kind": kind, "media_type": image[0], "content": image[1]})
    except ValidationError:
        return field, None


def not_in_directory(ids: list[str], names: dict[str, str]) -> str:
    """The French words for recipients the directory does not hold (any more: the
    coordination may have removed a partner since routing proposed it)."""
    quoted = [f"« {names.get(i, i)} »" for i in ids]
    named = quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} et {quoted[-1]}"
    if len(ids) == 1:
        return (f"{named} ne figure pas dans l'annuaire du territoire : Relais ne peut rien "
                "lui transmettre. Décochez-la, ou demandez à la coordination de l'y ajouter.")
    return (f"{named} ne figurent pas dans l'annuaire du territoire : Relais ne peut rien "
            "leur transmettre. Décochez-les, ou demandez à la coordination de les y ajouter.")


class Invalid(Exception):
    """The form cannot be recorded as it is: each field's French message (`form` for the
    whole form), and the fields to show again."""

    def __init__(self, errors: dict[str, str], fields: MultiDictProxy[str],
                 notice: str | None = None) -> None:
        super().__init__(" ".join(errors.values()) or notice or "")
        self.errors, self.fields, self.notice = errors, fields, notice


REFUSALS = {
    403: ("Accord impossible", "Seule une structure qui a rencontré la personne recueille "
          "son accord."),
    404: ("Accord impossible", "Seule une structure qui a rencontré la personne recueille "
          "son accord."),
    410: ("Personne effacée", "Les données de cette personne ont été effacées : enregistrez "
          "un nouveau contact."),
}


async def agree(request: web.Request, principal: Principal, contact: Contact,
                fields: MultiDictProxy[str]) -> ConsentOut:
    """The consent the form says, through POST /v1/consents's unit of work under the form's
    idempotency key (`cle`), its proof sealed first when it is signed. Raises `Invalid` for
    what the person at the screen can correct, a `Problem` otherwise."""
    key = fields.get("cle", "").strip()
    body = payload(fields, contact.intake, principal)
    proof = proof_of(fields)
    try:
        model = ConsentIn.model_validate(body)
        if not key or len(key) > idempotency.MAX_KEY or not (key.isascii()
                                                             and key.isprintable()):
            raise Invalid({"form": EXPIRED}, fields)
        if proof is not None and proof[1] is None:
            raise Invalid({proof[0]: ERRORS[proof[0]]}, fields)
        if proof is not None and proof[1] is not None:
            sealed = await peers.seal_evidence(request, contact.intake.person_id,
                                               proof[1].kind, proof[1].media_type,
                                               proof[1].content)
            body["evidence_sha256"] = sealed.sha256
            model = ConsentIn.model_validate(body)
        consent, _replayed = await api.record_once(request, principal.org, key, body, model)
        return consent
    except ValidationError as invalid:
        found = errors_of(invalid)
        if proof is not None and proof[1] is None:
            found[proof[0]] = ERRORS[proof[0]]
        raise Invalid(found, fields) from invalid
    except api.UnknownRecipients as unknown:
        names = await store.names(request.app[RUNTIME].pool)  # also those that left
        raise Invalid({"recipients": not_in_directory(unknown.recipients, names)},
                      fields) from unknown
    except Problem as refused:
        if refused.status == 422 and "reused" in refused.title:
            fresh = MultiDictProxy(MultiDict(
                (k, v) for k, v in fields.items() if k not in ("cle", "moment")))
            raise Invalid({}, fresh, REUSED) from refused
        if refused.status == 422:  # the notice shown, or the person, is no longer known
            raise Invalid({"form": EXPIRED}, fields) from refused
        raise


@pages.page
async def record(request: web.Request) -> web.StreamResponse:
    """The consent (`agree`), or the person's refusal."""
    principal = await pages.require(request, "consent:write")
    fields = await pages.form(request)
    contact = await _contact(request, principal)
    if fields.get("decision") in ("refus", "refus-confirme"):
        return await _refuse(request, contact, confirmed=fields["decision"] == "refus-confirme")
    try:
        consent = await agree(request, principal, contact, fields)
    except Invalid as invalid:
        return await _form(request, contact, status=422, fields=invalid.fields,
                           errors=invalid.errors, notice=invalid.notice)
    except Problem as refused:
        if refused.status in REFUSALS:
            raise pages.PageError(refused.status if refused.status != 404 else 403,
                                  *REFUSALS[refused.status]) from refused
        raise _unavailable() from refused
    raise web.HTTPSeeOther(f"/terrain/accord/{contact.intake.id}/{consent.id}")


async def cancel_waiting(request: web.Request, contact: Contact) -> list[ReferralOut]:
    """The person refuses: the referrals that waited for their consent are cancelled, with the
    reason (cancelling again changes nothing)."""
    return [await peers.cancel_referral(request, r.id, REFUSAL) for r in contact.awaiting]


async def _refuse(request: web.Request, contact: Contact, *,
                  confirmed: bool) -> web.StreamResponse:
    """The refusal: asked to be confirmed, then the waiting referrals cancelled."""
    waiting = contact.awaiting
    if confirmed:
        try:
            await cancel_waiting(request, contact)
        except Problem as failed:
            if failed.status == 503:
                raise _unavailable() from failed
            raise pages.PageError(409, "Refus non enregistré", "Une orientation de ce contact "
                                  "a changé entre-temps : revenez au contact et "
                                  "recommencez.") from failed
    return pages.render(request, "consent/accord-refus.html", intake=contact.intake,
                        confirmed=confirmed, targets=[contact.names.get(r.target, r.target)
                                                      for r in waiting])


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


async def send_answer(request: web.Request) -> web.Response:
    """The person's answer recorded without a network (services/runtime/offline.py), sent
    once the contact is recorded: the consent (`agree`, under the entry's id as idempotency
    key, at the time the person agreed, naming the notice shown), or the refusal (the
    referrals routing then proposed cancelled; a 409 while routing has not run yet, for the
    device to try again)."""
    principal = await pages.require_script(request, "consent:write")
    try:
        sealed = offline.parse(await read_json(request))
        content = offline.open_entry(request.app[MASTER], principal.org, sealed)
        fields = offline.form_of(content.get("accord"))
    except offline.OpenError as failed:
        raise offline.unreadable() from failed
    try:
        contact = await _contact(request, principal)
    except pages.PageError as missing:
        raise Problem(missing.status, missing.title, missing.detail) from missing
    device_now, now = request.headers.get(offline.DEVICE_TIME), request.app[RUNTIME].clock()
    made = offline.form_of(content.get("contact")).get("moment", "")
    at = _at(offline.corrected(made, device_now, now))
    if at is None or abs(at - contact.intake.contacted_at) > SAME_CONTACT:
        raise Problem(409, "Autre contact", "Cette réponse n'est pas celle de ce contact : "
                      "elle part avec le sien.")  # the entry names its own contact only
    if fields.get("decision") == "refus":
        return await _refusal_sent(request, contact)
    if fields.get("decision") != "accord":
        raise Problem(422, "Réponse illisible", "Cette fiche ne dit pas si la personne accepte.")
    form = MultiDictProxy(MultiDict([
        *((k, v) for k, v in fields.items() if k != "moment"), ("cle", sealed.id),
        ("moment", offline.corrected(fields.get("moment", ""), device_now, now))]))
    try:
        consent = await agree(request, principal, contact, form)
    except Invalid as invalid:
        raise Problem(422, "Accord non valable", str(invalid),
                      fields=sorted(invalid.errors)) from invalid
    except Problem as refused:
        if refused.status in REFUSALS:
            raise Problem(refused.status, *REFUSALS[refused.status]) from refused
        raise
    try:
        referrals = await _handed_off(request, contact.intake, consent)
        proposed = await _routed(request, contact)
    except Problem:
        referrals, proposed = [], contact
    uncovered = [proposed.names.get(r.target, r.target) for r in proposed.awaiting
                 if r.target not in consent.recipients or r.purpose not in consent.purposes]
    return json_response({"consent_id": str(consent.id), "uncovered": uncovered,
                          "handed_off": len(referrals)}, status=201)


def _at(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


async def _routed(request: web.Request, contact: Contact) -> Contact:
    """The contact once routing has proposed something for it (waiting a little)."""
    deadline = time.monotonic() + HAND_OFF_WAIT
    while not contact.referrals and time.monotonic() < deadline:
        await asyncio.sleep(0.3)
        contact = await _contact(request, request["principal"])
    return contact


async def _refusal_sent(request: web.Request, contact: Contact) -> web.Response:
    """A refusal cancels what routing proposed; until routing has, a 409 for the device to
    try again (the entry stays on it: a refusal is never taken as having nothing to cancel
    while routing may still propose)."""
    contact = await _routed(request, contact)
    if not contact.referrals:
        raise Problem(409, "Proposition en cours", "Relais calcule encore la proposition pour "
                      "ce contact : le refus partira au prochain essai.",
                      headers={"Retry-After": "5"})
    cancelled = await cancel_waiting(request, contact)
    return json_response({"cancelled": len(cancelled)})


def routes(app: web.Application) -> None:
    pages.templates("consent", "services.consent")
    peers.setup(app)
    app.router.add_get("/terrain/accord/{id}", consent_form)
    app.router.add_post("/terrain/accord/{id}", record)
    app.router.add_get("/terrain/accord/{id}/{consent}", recorded)
    app.router.add_post("/terrain/accord/{id}/envoi", send_answer)
