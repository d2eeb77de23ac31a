"""The audit page, for data-protection officers and auditors (`audit:read`): a person's
consents and their history, their trail entries with each inclusion proof checked here, who
read their data, the signed checkpoints, and the downloads to verify the whole trail offline.

It calls the API's units of work (`audit`) and checks the proofs with the code an auditor
runs on the API's answers (`trail.signature_holds`, `trail.proof_holds`,
`trail.consistent`), under the keys Relais holds; the offline check, under the auditor's own
copy of the keys, is `relais audit verify`."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from markupsafe import Markup, escape

from schemas import vocab_fr as fr
from schemas.api import ConsentHistory, Identity, identity_tag
from schemas.vocab import ConsentMethod, WithdrawalChannel, WithdrawalRequester
from services.consent import art30, audit, store, trail, trail_store
from services.directory import Directory
from services.runtime import peers
from services.runtime import web as pages
from services.runtime.app import RUNTIME
from services.runtime.problem import Problem

PARIS = ZoneInfo("Europe/Paris")
SHOWN_HEADS = 10
EXAMPLE_ID = "5d0c1f8e-2b7a-4c3d-9e61-3a8f0b2c4d5e"
KEYS_URL = "/v1/audit/keys"
COMMAND = "relais audit verify trail.jsonl --key keys.json"
"""What the auditor runs on the two files downloaded from the page (their names)."""
STATIC = Path(__file__).resolve().parent / "static"
WORDS: dict[str, dict[str, str]] = {
    "kinds": {"consent.granted": "Accord donné", "consent.withdrawn": "Accord retiré",
              "consent.expired": "Accord arrivé à échéance",
              "personal_data.read": "Données consultées",
              "personal_data.rectified": "Données corrigées",
              "person.restricted": "Traitement arrêté à sa demande",
              "person.restriction_lifted": "Traitement repris"},
    "changes": {"granted": "Donné", "withdrawn": "Retiré", "expired": "Arrivé à échéance"},
    "statuses": {"active": "En cours", "withdrawn": "Retiré", "expired": "Arrivé à échéance"},
    "badges": {"active": "success", "withdrawn": "warning", "expired": "info"},
    "methods": {ConsentMethod.signed_paper: "signé sur papier",
                ConsentMethod.signed_screen: "signé sur écran",
                ConsentMethod.oral_witnessed: "oral, devant témoin"},
    "requesters": {WithdrawalRequester.person: "la personne elle-même",
                   WithdrawalRequester.legal_representative: "son représentant légal",
                   WithdrawalRequester.counsellor_on_behalf:
                       "un conseiller ou une conseillère, à sa demande"},
    "channels": {WithdrawalChannel.in_person: "en personne",
                 WithdrawalChannel.phone: "par téléphone",
                 WithdrawalChannel.email: "par courriel",
                 WithdrawalChannel.letter: "par courrier",
                 WithdrawalChannel.online: "en ligne"},
}


@dataclass(frozen=True, slots=True)
class Checked:
    """A trail entry or a signed tree head, and what the checks of its proofs said (None:
    nothing to check yet)."""

    item: dict[str, Any]
    holds: bool | None
    consistent: bool | None = None


@dataclass(frozen=True, slots=True)
class Person:
    """What Relais holds on a person, for an auditor: no personal data, only what was agreed,
    done and read under their pseudonymous id."""

    id: uuid.UUID
    consents: list[tuple[asyncpg.Record, ConsentHistory]]
    head: dict[str, Any] | None
    """The last signed tree head, which the entries' proofs lead to."""
    head_signed: bool
    entries: list[Checked]
    reads: list[dict[str, object]]
    restricted: datetime | None = None
    """Since when processing is stopped at their request (restriction, objection)."""

    def counted(self, holds: bool | None) -> int:
        return sum(entry.holds is holds for entry in self.entries)


def when(moment: Any) -> str:
    """A date and time in Paris, to the second (an audit compares moments); what is not one
    (in a tampered entry) as it is."""
    try:
        if isinstance(moment, str):
            moment = datetime.fromisoformat(moment)
        if isinstance(moment, datetime) and moment.tzinfo is not None:
            return moment.astimezone(PARIS).strftime("%d/%m/%Y à %H:%M:%S")
    except ValueError:
        pass
    return "" if moment is None else str(moment)


def breakable(text: str, every: int = 16) -> Markup:
    """A long hash that may wrap on a phone (<wbr>), and still copies in one piece."""
    return Markup("<wbr>").join(escape(text[i:i + every]) for i in range(0, len(text), every))


VOCABS: dict[str, dict[str, str]] = {"purposes": fr.PURPOSES, "categories": fr.CATEGORIES}


def labels(values: Any, vocab: str = "") -> str:
    """A list's values in French (an organisation's id as it is). What a tampered entry may
    hold instead of a list is shown as it is, never an error."""
    words = VOCABS.get(vocab, {})
    items = values if isinstance(values, list) else [] if values is None else [values]
    return ", ".join(words.get(str(v), str(v)) for v in items)


def count(number: int, one: str, many: str) -> str:
    """A number and its noun: French puts 0 and 1 in the singular (0 accord, 2 accords)."""
    return f"{number} {one if number <= 1 else many}"


def describe(entry: Mapping[str, Any]) -> str:
    """A trail entry in a sentence, from the entry itself (the one its proof is checked on)."""
    kind, org = str(entry.get("kind")), entry.get("org", "?")
    if kind == "consent.granted":
        return (f"Recueilli par {org} : {labels(entry.get('purposes'), 'purposes')}, vers "
                f"{labels(entry.get('recipients'))} ; données : "
                f"{labels(entry.get('categories'), 'categories')}.")
    if kind == "consent.withdrawn":
        taken = " ; ".join(part for part in (labels(entry.get("removed_purposes"), "purposes"),
                                             labels(entry.get("removed_recipients"))) if part)
        asked = (f"{WORDS['requesters'].get(str(entry.get('requested_by')), 'non précisé')}, "
                 f"{WORDS['channels'].get(str(entry.get('channel')), 'moyen non précisé')}")
        left = (f"reste : {labels(entry.get('purposes'), 'purposes')}, vers "
                f"{labels(entry.get('recipients'))}" if entry.get("status") == "active"
                else "plus rien n'est permis")
        return f"Enregistré par {org}, demandé par {asked} : retiré {taken} ; {left}."
    if kind == "consent.expired":
        return f"L'accord recueilli par {org} est arrivé à échéance : plus rien n'est permis."
    if kind == "personal_data.read":
        who = entry.get("read_by") or f"{org} ({entry.get('client_id', '?')})"
        return (f"{who} a lu : "
                f"{labels(entry.get('categories'), 'categories')}.")
    if kind == "person.restricted":
        right = ("opposition (article 21)" if entry.get("right") == "objection"
                 else "limitation (article 18)")
        return (f"{org} a arrêté le traitement à la demande de la personne ({right}) : ses "
                "accords en cours sont retirés.")
    if kind == "person.restriction_lifted":
        return f"{org} a levé la limitation ou l'opposition : le traitement peut reprendre."
    if kind == "personal_data.rectified":
        who = entry.get("rectified_by") or f"{org} ({entry.get('client_id', '?')})"
        fields = ", ".join(FIELDS.get(str(f), str(f)) for f in entry.get("fields") or [])
        return f"{who} a corrigé, à la demande de la personne : {fields or 'rien'}."
    return "Entrée illisible ou d'un type inconnu."


FIELDS = {"first_name": "prénom", "last_name": "nom", "birth_date": "date de naissance",
          "phone": "téléphone", "email": "courriel"}


def _person_id(said: str) -> tuple[uuid.UUID | None, str | None]:
    """The id typed in the form, or what is wrong with it, in French."""
    if not said:
        return None, "Indiquez l'identifiant de la personne."
    try:
        return uuid.UUID(said), None
    except ValueError:
        return None, (f"« {said[:80]} » n'est pas un identifiant de personne. Il compte 36 "
                      f"caractères, chiffres, lettres de a à f et tirets, comme {EXAMPLE_ID}.")


async def _keys(pool: asyncpg.Pool) -> dict[str, Ed25519PublicKey]:
    return {k["kid"]: trail.public_key_of(k) for k in await trail_store.public_keys(pool)}


async def _heads(pool: asyncpg.Pool, keys: dict[str, Ed25519PublicKey]) -> list[Checked]:
    """The last signed tree heads, newest first: signature, and consistency with the one
    before (asked for one more than shown, so that each shown has its previous one)."""
    items = [i.model_dump(mode="json") for i in (await audit.heads(pool, SHOWN_HEADS + 1)).items]
    checked = [Checked(item, trail.signature_holds(item, keys),
                       trail.consistent(items[n - 1], item) if n else None)
               for n, item in enumerate(items)]
    return checked[-SHOWN_HEADS:][::-1]


async def _person(pool: asyncpg.Pool, person_id: uuid.UUID,
                  keys: dict[str, Ed25519PublicKey]) -> Person | None:
    """What Relais holds on a person, each proof checked; None when it holds nothing."""
    rows = await store.every_consent_of(pool, person_id)
    extract = (await audit.extract(pool, person_id)).model_dump(mode="json")
    if not rows and not extract["entries"]:
        return None
    head = extract["checkpoint"]
    head_signed = head is not None and trail.signature_holds(head, keys)
    entries = [Checked(item, trail.proof_holds(item, head) if head_signed
                       else (None if head is None else False))
               for item in extract["entries"]]
    return Person(person_id, list(zip(rows, await audit.histories(pool, rows), strict=True)),
                  head, head_signed, entries, (await audit.reads(pool, person_id)).reads,
                  await store.restricted_since(pool, person_id))


@pages.page
async def audit_page(request: web.Request) -> web.StreamResponse:
    principal = await pages.require(request, "audit:read")
    pool = request.app[RUNTIME].pool
    keys = await _keys(pool)
    said = request.query.get("personne")
    person, error, status = None, None, 200
    if said is not None:
        said = said.strip()
        person_id, error = _person_id(said)
        if person_id is not None:
            person = await _person(pool, person_id, keys)
            if person is None:
                error, status = (f"Relais ne connaît aucun accord ni aucune trace pour "
                                 f"l'identifiant {person_id}. Vérifiez qu'il est recopié en "
                                 "entier.", 404)
        else:
            status = 422
    return pages.render(request, "consent/audit.html", status=status, said=said or "",
                        error=error, person=person, heads=await _heads(pool, keys),
                        shown_heads=SHOWN_HEADS, words=WORDS, when=when, labels=labels,
                        count=count, describe=describe, breakable=breakable,
                        keys_url=KEYS_URL, example_id=EXAMPLE_ID, command=COMMAND,
                        may_export="people:export" in principal.scopes,
                        may_restrict="people:restrict" in principal.scopes,
                        may_rectify="people:rectify" in principal.scopes,
                        corrected=_corrected(request.query.get("corrige")))


# --- the person's rights (issue #14), through the intake service's API ----------------------

def _path_person(request: web.Request) -> uuid.UUID:
    person_id, error = _person_id(request.match_info["id"])
    if person_id is None:
        raise pages.PageError(404, "Personne inconnue", error or "")
    return person_id


def _intake_unavailable() -> pages.PageError:
    return pages.PageError(503, "Service indisponible", "Le service d'accueil ne répond pas : "
                           "réessayez dans quelques instants.")


@pages.page
async def person_data(request: web.Request) -> web.StreamResponse:
    """Everything Relais holds about the person, as the French document to hand to them
    (`GET /v1/people/{id}/export`, as the signed-in officer: the read is logged)."""
    await pages.require(request, "people:export")
    person_id = _path_person(request)
    try:
        document = await peers.person_document(request, person_id)
    except Problem as unavailable:
        raise _intake_unavailable() from unavailable
    if document is None:
        raise pages.PageError(404, "Personne inconnue", "Aucune rencontre n'est enregistrée "
                              f"pour l'identifiant {person_id}.")
    return web.Response(text=document, content_type="text/html", charset="utf-8",
                        headers=pages.html_headers())


@pages.page
async def register_page(request: web.Request) -> web.StreamResponse:
    """The record of processing activities (GDPR art. 30), as `GET /v1/audit/register`."""
    await pages.require(request, "audit:read")
    try:
        directory = await peers.directory(request) or Directory(organisations=[])
    except Problem as unavailable:
        raise _intake_unavailable() from unavailable
    built = art30.build(directory, request.app[RUNTIME].settings, datetime.now(UTC))
    return web.Response(text=art30.document(built), content_type="text/html",
                        charset="utf-8", headers=pages.html_headers())


@pages.page
async def restrict_page(request: web.Request) -> web.StreamResponse:
    """Stop processing at the person's request (`POST /v1/people/{id}/restriction`)."""
    await pages.require(request, "people:restrict")
    person_id = _path_person(request)
    fields = await pages.form(request)
    right, channel = fields.get("droit", ""), fields.get("canal", "")
    if right not in ("restriction", "objection") or channel not in WORDS["channels"]:
        raise pages.PageError(422, "Demande incomplète", "Choisissez le droit exercé "
                              "(limitation ou opposition) et comment la personne l'a demandé.")
    try:
        await peers.restrict(request, person_id, right, channel)
    except Problem as refused:
        said = {404: "aucune rencontre n'est enregistrée pour cette personne.",
                410: "cette personne a été effacée : plus rien n'est traité."}
        raise pages.PageError(refused.status if refused.status in said else 503,
                              "Traitement non arrêté", "Relais n'a pas pu arrêter le "
                              "traitement : " + said.get(refused.status, "le service "
                              "d'accueil ne répond pas, réessayez dans quelques instants.")
                              ) from refused
    raise web.HTTPSeeOther(f"/audit?personne={person_id}#droits")


@pages.page
async def resume_page(request: web.Request) -> web.StreamResponse:
    """Lift it (`DELETE /v1/people/{id}/restriction`)."""
    await pages.require(request, "people:restrict")
    person_id = _path_person(request)
    await pages.form(request)
    try:
        await peers.lift_restriction(request, person_id)
    except Problem as refused:
        raise _intake_unavailable() from refused
    raise web.HTTPSeeOther(f"/audit?personne={person_id}#droits")


IDENTITY_FIELDS = {"prenom": "first_name", "nom": "last_name", "naissance": "birth_date",
                   "telephone": "phone", "courriel": "email"}
"""The identity form's fields (French names, as on the contact form) and the API's."""
IDENTITY_ERRORS = {
    "first_name": "Un prénom de 80 caractères au plus.",
    "last_name": "Un nom de 80 caractères au plus.",
    "birth_date": "Une date de naissance valable, au format jj/mm/aaaa, par exemple 02/04/2006.",
    "phone": "Un numéro de téléphone : des chiffres, avec des espaces, points ou tirets si vous "
             "voulez, par exemple 06 12 34 56 78.",
    "email": "Une adresse électronique valable, par exemple prenom.nom@exemple.fr.",
}
NOTHING_CORRECTED = "rien"
FRENCH_DATE = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})")


def _corrected(said: str | None) -> list[str] | None:
    """The fields a correction changed, in French, as the page it redirects to is told
    (`?corrige=phone,email`, or `rien`); None when there was no correction."""
    if said is None:
        return None
    return [FIELDS[f] for f in said.split(",") if f in FIELDS]


def _known(identity: Identity | None) -> dict[str, str]:
    """An identity as the API's JSON, without the fields it does not hold."""
    return {} if identity is None else identity.model_dump(mode="json", exclude_none=True)


def _form_values(known: Mapping[str, str]) -> dict[str, str]:
    """An identity as the form shows it: the birth date as people write it (jj/mm/aaaa)."""
    values = {name: known.get(field, "") for name, field in IDENTITY_FIELDS.items()}
    year, _, rest = values["naissance"].partition("-")
    if rest:
        month, _, day = rest.partition("-")
        values["naissance"] = f"{day}/{month}/{year}"
    return values


def _api_identity(values: Mapping[str, str]) -> dict[str, str]:
    """The form as the API's `Identity`: only what was filled in, a date written jj/mm/aaaa
    as ISO (anything else as typed, for the API to say what is wrong with it)."""
    identity = {IDENTITY_FIELDS[name]: value for name, value in values.items() if value}
    if written := FRENCH_DATE.fullmatch(identity.get("birth_date", "")):
        day, month, year = written.groups()
        identity["birth_date"] = f"{year}-{int(month):02}-{int(day):02}"
    return identity


def _identity_page(request: web.Request, person_id: uuid.UUID, values: Mapping[str, str],
                   before: str, errors: Mapping[str, str] | None = None,
                   status: int = 200) -> web.Response:
    return pages.render(request, "consent/identite.html", status=status, person_id=person_id,
                        values=values, before=before, errors=errors or {})


@pages.page
async def identity_form(request: web.Request) -> web.StreamResponse:
    """The person's identity and contact details as Relais holds them, to correct; read
    through the export, as the signed-in officer (who sees them: the read is logged)."""
    await pages.require(request, "people:rectify")
    person_id = _path_person(request)
    known = await _held_identity(request, person_id)
    return _identity_page(request, person_id, _form_values(known), json.dumps(known))


async def _held_identity(request: web.Request, person_id: uuid.UUID) -> dict[str, str]:
    """The identity as Relais holds it now, read through the export (a logged read)."""
    try:
        held = await peers.person_export(request, person_id)
    except Problem as unavailable:
        raise _intake_unavailable() from unavailable
    if held is None:
        raise pages.PageError(404, "Personne inconnue", "Aucune rencontre n'est enregistrée "
                              f"pour l'identifiant {person_id}.")
    if held.erased_at is not None:
        raise pages.PageError(410, "Personne effacée", "Les données de cette personne ont été "
                              "effacées : il n'y a plus rien à corriger.")
    return _known(held.identity)


def _identity_errors(refused: Problem) -> dict[str, str]:
    """The intake service's invalid fields, in French, by the form's field names ("form": what
    is wrong elsewhere)."""
    names = {field: name for name, field in IDENTITY_FIELDS.items()}
    errors: dict[str, str] = {}
    for error in refused.extra.get("errors") or []:
        field = str(error.get("field", "")) if isinstance(error, dict) else ""
        if field in names:
            errors.setdefault(names[field], IDENTITY_ERRORS[field])
        else:
            errors.setdefault("form", "Ce formulaire n'est plus valable : rechargez la page "
                              "et recommencez.")
    return errors or {"form": "Relais n'a pas accepté ces valeurs : vérifiez-les."}


def _opened(before: str) -> dict[str, object]:
    """What the form was opened with (its hidden field): the identity as the API gave it."""
    try:
        known = json.loads(before)
    except ValueError:
        known = None
    return known if isinstance(known, dict) else {}


def _changed(before: str, after: dict[str, str]) -> list[str]:
    """The fields whose value differs from what the form was opened with (as the intake
    service counts them for the trail)."""
    known = _opened(before)
    return sorted(k for k in known.keys() | after.keys() if known.get(k) != after.get(k))


async def _changed_meanwhile(request: web.Request, person_id: uuid.UUID,
                             typed: Mapping[str, str]) -> web.Response:
    """The form again, opened on the identity as it is now, with what was typed lost to no
    one: the officer sees both and saves again."""
    known = await _held_identity(request, person_id)
    now = _form_values(known)
    errors = {"form": "L'identité a changé depuis l'ouverture de ce formulaire (une rencontre "
              "a pu ajouter un téléphone, par exemple) : rien n'a été enregistré. Le "
              "formulaire montre maintenant ce que Relais garde ; reportez-y votre correction "
              "puis enregistrez."}
    errors |= {name: f"Vous aviez saisi : « {value} »." if value else "Vous l'aviez laissé "
               "vide." for name, value in typed.items() if value != now.get(name)}
    return _identity_page(request, person_id, now, json.dumps(known), errors, 409)


@pages.page
async def rectify_page(request: web.Request) -> web.StreamResponse:
    """Correct the person's identity at their request (`PUT /v1/people/{id}/identity`): what
    is typed replaces what was known, a field left empty is removed."""
    await pages.require(request, "people:rectify")
    person_id = _path_person(request)
    fields = await pages.form(request)
    values = {name: fields.get(name, "").strip() for name in IDENTITY_FIELDS}
    before = fields.get("avant", "")
    try:
        corrected = await peers.rectify(request, person_id, _api_identity(values),
                                        identity_tag(_opened(before)))
    except Problem as refused:
        if refused.status == 422:
            return _identity_page(request, person_id, values, before,
                                  _identity_errors(refused), 422)
        if refused.status == 412:  # changed meanwhile (a contact added a phone, say)
            return await _changed_meanwhile(request, person_id, values)
        said = {403: "votre rôle ne permet pas de corriger l'identité d'une personne.",
                404: "aucune rencontre n'est enregistrée pour cette personne.",
                410: "cette personne a été effacée : il n'y a plus rien à corriger."}
        if refused.status not in said:
            raise _intake_unavailable() from refused
        raise pages.PageError(refused.status, "Identité non corrigée", "Relais n'a pas pu "
                              "corriger l'identité : " + said[refused.status]) from refused
    changed = ",".join(_changed(before, _known(corrected.identity))) or NOTHING_CORRECTED
    raise web.HTTPSeeOther(f"/audit?personne={person_id}&corrige={changed}#droits")


@pages.page
async def export(request: web.Request) -> web.StreamResponse:
    """The API's export (`/v1/audit/consent-trail/export`), for a signed-in auditor, under
    the name the verification command uses."""
    await pages.require(request, "audit:read")
    return await audit.send_export(request, request.app[RUNTIME].pool, "trail.jsonl")


def routes(app: web.Application) -> None:
    pages.templates("consent", "services.consent")
    app.router.add_get("/audit", audit_page)
    app.router.add_get("/audit/export.jsonl", export)
    app.router.add_get("/audit/registre", register_page)
    app.router.add_get("/audit/personne/{id}/donnees", person_data)
    app.router.add_post("/audit/personne/{id}/limitation", restrict_page)
    app.router.add_post("/audit/personne/{id}/reprise", resume_page)
    app.router.add_get("/audit/personne/{id}/identite", identity_form)
    app.router.add_post("/audit/personne/{id}/identite", rectify_page)
    app.router.add_static("/static/consent/", STATIC, name="consent")
