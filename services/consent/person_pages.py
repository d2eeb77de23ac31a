"""The receipt of a consent and the person's own page (issue #11, point 6).

After the consent is recorded, the counsellor shows the person their **receipt**
(`POST /terrain/accord/{intake}/{consent}/recu`, a button on the confirmation page): what
they agreed to, to whom, for what, which data, until when, and a personal link (as a QR code)
and code to see and withdraw their consents. Link and code are made then and shown once
(services/consent/receipt.py: the link is sealed, the code kept as a keyed hash only); the
page prints well (static/recu.css).

The person, without an account, opens `/mon-accord/<token>` (the QR code) or types the code
at `/mon-accord`, sees their consents in plain French, and withdraws a whole consent, one
recipient or one purpose of it, in one tap: through the same unit of work as
`POST /v1/consents/{id}/withdraw` (`api.withdraw_locked`), requested by the person, by the
`online` channel, recorded by BY_THE_PERSON, so it is on the trail and the recipients are
told to stop as for any withdrawal. Its forms are checked for their origin and carry a token
bound to the link (there is no session). Wrong codes and altered links show no data, say
the same words, are throttled (per address and overall) and logged, never with the code."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import segno
from aiohttp import web
from pydantic import ValidationError

from schemas.api import ConsentHistory, ConsentOut, WithdrawIn
from schemas.vocab import Purpose, WithdrawalChannel, WithdrawalRequester
from services.consent import api, audit, domain, outreach, receipt, store
from services.runtime import to_person
from services.runtime import web as pages
from services.runtime.app import RUNTIME
from services.runtime.http import client_address
from services.runtime.logging import get_logger
from services.runtime.problem import Problem
from services.runtime.ratelimit import buckets

log = get_logger("relais.consent.receipt")
KEYS = web.AppKey("receipt_keys", receipt.Keys)
THROTTLE = web.AppKey("receipt_throttle", receipt.Throttle)
BY_THE_PERSON = "relais"
"""Who records a withdrawal the person made on their own page (the history's and the
event's `org`): Relais itself, as for what it does on its own; with `requested_by` person
and the `online` channel, it reads "the person, through their receipt's link"."""
REQUESTED_BY = WithdrawalRequester.person
CHANNEL = WithdrawalChannel.online
PURPOSES: dict[str, str] = {  # what the person agreed to, said to them
    Purpose.referral_commission: "étudier votre situation en commission de remobilisation",
    Purpose.referral_partner: "vous orienter vers un partenaire",
    Purpose.share_dossier: "partager votre dossier", Purpose.recontact: "vous recontacter",
}
CATEGORIES = {"identity": "votre identité", "contact": "vos coordonnées",
              "situation": "votre situation", "needs": "vos besoins",
              "note": "les notes de l'équipe"}
REFUSED = ("Ce code ne correspond à aucun reçu. Recopiez-le depuis votre reçu : "
           f"{receipt.CODE_LENGTH} caractères, lettres et chiffres. Après plusieurs erreurs, "
           "il faut attendre une minute.")
TOO_MANY = ("Trop d'essais : attendez une minute avant de réessayer. Si vous avez perdu votre "
            "reçu, demandez à l'équipe qui vous a rencontré.")
NO_LINK = ("Ce lien ne permet pas d'ouvrir vos accords. Vérifiez qu'il est recopié en entier, "
           "ou tapez le code de votre reçu.")


def qr_code(uri: str) -> str:
    """The QR code of `uri` as an SVG `data:` URI (the pages' CSP allows `img-src data:`):
    black on white with the standard quiet zone, whatever the theme."""
    return segno.make(uri, error="m", micro=False).svg_data_uri(
        scale=5, border=4, dark="#000", light="#fff")


def _names(names: dict[str, str]) -> dict[str, str]:
    """Names as French is printed: « Le Camion » never broken inside its quotes."""
    return {k: v.replace("« ", "«\u00a0").replace(" »", "\u00a0»") for k, v in names.items()}


def _private(response: web.Response) -> web.Response:
    """A page with a secret in it, or about a person: kept by no cache, indexed by nobody."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Robots-Tag"] = "noindex"
    return response


# --- the counsellor shows the receipt -------------------------------------------------------

@pages.page
async def give(request: web.Request) -> web.StreamResponse:
    """A new receipt for this consent: its link and code, shown once."""
    principal = await pages.require(request, "consent:write")
    fields = await pages.form(request)
    contact = await outreach._contact(request, principal)
    consent_id = outreach._id(request.match_info["consent"])
    pool = request.app[RUNTIME].pool
    row = await store.get_consent(pool, consent_id, principal.org) if consent_id else None
    if row is None or row["person_id"] != contact.intake.person_id:
        raise pages.PageError(404, "Accord introuvable", "Cet accord n'existe pas, ou il n'a "
                              "pas été recueilli par votre structure pour ce contact.")
    keys = request.app[KEYS]
    await store.keep_names(pool, contact.names)
    receipt_id, code = uuid.uuid4(), receipt.new_code()
    for _attempt in range(3):  # two receipts with the same code: most unlikely, never kept
        try:
            await store.insert_receipt(pool, receipt_id, row["person_id"], row["id"],
                                       principal.org, receipt.code_hash(keys, code),
                                       principal.who[:120])
            break
        except asyncpg.UniqueViolationError:
            code = receipt.new_code()
    log.info("receipt_given", receipt_id=str(receipt_id), consent_id=str(row["id"]),
             org=principal.org)
    base = request.app[RUNTIME].settings.base_url.rstrip("/")
    link = f"{base}/mon-accord/{receipt.token(keys, receipt_id)}"
    parts = urlsplit(base)
    consent, names = domain.consent_out(row), _names(contact.names)
    short, grouped = f"{parts.netloc}{parts.path}/mon-accord", receipt.grouped(code)
    emailed: tuple[bool, str | None] | None = None
    channel = fields.get("envoi")
    if channel in ("courriel", "sms"):  # the same receipt, where the person asked
        emailed = await to_person.send(
            request, row["person_id"], "courriel" if channel == "courriel" else "sms",
            "Votre accord : ce que vous avez accepté, et comment le retirer",
            receipt_text(consent, names, link, short, grouped),
            f"Relais : votre accord du {consent.granted_at.astimezone(pages.PARIS):%d/%m/%Y}. "
            f"Pour le voir ou le retirer : {link} (ou le code {grouped} sur {short}). Gardez "
            "ce code pour vous.", "receipt")
    return _private(pages.render(
        request, "consent/recu.html", intake=contact.intake, consent=consent, names=names,
        link=link, qr=qr_code(link), code=grouped, short=short, purposes=PURPOSES,
        categories=CATEGORIES, emailed=emailed, channel=channel))


def receipt_text(consent: ConsentOut, names: dict[str, str], link: str, short: str,
                 code: str) -> str:
    """The receipt as an email says it (French, plain text)."""
    paris = consent.granted_at.astimezone(pages.PARIS)
    until = consent.valid_until.astimezone(pages.PARIS)
    return "\n".join([
        "Bonjour,", "",
        f"Le {paris:%d/%m/%Y}, vous avez accepté que {names.get(consent.org, consent.org)} "
        "transmette certaines de vos informations.", "",
        "Pour quoi faire : " + ", ".join(PURPOSES.get(p, p) for p in consent.purposes) + ".",
        "À qui : " + ", ".join(names.get(r, r) for r in consent.recipients) + ".",
        "Quelles informations : "
        + ", ".join(CATEGORIES.get(c, c) for c in consent.categories) + ".",
        f"Jusqu'à quand : jusqu'au {until:%d/%m/%Y}.", "",
        "Vous pouvez retirer votre accord quand vous voulez, en entier ou en partie, sans "
        "compte et sans vous justifier. Pour voir vos accords ou les retirer, ouvrez ce lien :",
        link, "",
        f"ou allez sur {short} et tapez ce code : {code}", "",
        "Gardez ce courriel et ce code pour vous : avec eux, on peut voir vos accords et les "
        "retirer.", "", "Relais",
    ])


# --- the person's own pages -----------------------------------------------------------------

def _address(request: web.Request) -> str:
    return client_address(request, request.app[RUNTIME].settings.trusted_proxies)


@pages.page
async def code_form(request: web.Request) -> web.StreamResponse:
    return _private(pages.render(request, "consent/mon-accord-code.html", error=None))


@pages.page
async def code_entered(request: web.Request) -> web.StreamResponse:
    """The code typed: the person's page if it is one, else the same words whatever went
    wrong; no code is checked while this address (or everyone) must wait."""
    fields = await pages.form(request, with_session=False)
    address, throttle = _address(request), request.app[THROTTLE]
    wait = await throttle.wait(address)
    if wait:
        log.warning("receipt_code_throttled", address=address)
        response = pages.render(request, "consent/mon-accord-code.html", status=429,
                                error=TOO_MANY)
        response.headers["Retry-After"] = str(max(1, round(wait)))
        return _private(response)
    keys, pool = request.app[KEYS], request.app[RUNTIME].pool
    code = receipt.clean(fields.get("code", ""))
    found = await store.receipt_by_code(pool, receipt.code_hash(keys, code)) if code else None
    if found is None:
        await throttle.failed(address)
        log.warning("receipt_code_refused", address=address)
        return _private(pages.render(request, "consent/mon-accord-code.html", status=401,
                                     error=REFUSED))
    raise web.HTTPSeeOther(f"/mon-accord/{receipt.token(keys, found['id'])}")


async def _receipt_of(request: web.Request) -> asyncpg.Record:
    """The receipt the link names; nothing shown (and a failure counted) otherwise."""
    keys, pool = request.app[KEYS], request.app[RUNTIME].pool
    try:
        receipt_id: uuid.UUID | None = receipt.open_token(keys, request.match_info["token"])
    except receipt.ReceiptError:
        receipt_id = None
    found = await store.receipt(pool, receipt_id) if receipt_id else None
    if found is None:
        address = _address(request)
        await request.app[THROTTLE].failed(address)
        log.warning("receipt_link_refused", address=address)
        raise pages.PageError(404, "Lien non valable", NO_LINK)
    return found


def _state(history: ConsentHistory, now: datetime) -> str:
    consent = history.consent
    if consent.status == "expired" or (consent.status == "active"
                                       and consent.valid_until <= now):
        return "expired"
    if consent.status == "withdrawn":
        return "withdrawn"
    return "partial" if any(c.kind == "withdrawn" for c in history.changes) else "active"


def _view(history: ConsentHistory, names: dict[str, str], now: datetime) -> dict[str, Any]:
    """A consent as the person reads it."""
    consent = history.consent
    taken = [c for c in history.changes if c.kind == "withdrawn"]
    return {
        "id": consent.id, "state": _state(history, now),
        "org": names.get(consent.org, consent.org), "granted_at": consent.granted_at,
        "valid_until": consent.valid_until,
        "purposes": [(str(p), PURPOSES.get(p, p)) for p in consent.purposes],
        "recipients": [(r, names.get(r, r)) for r in consent.recipients],
        "categories": [CATEGORIES.get(c, c) for c in consent.categories],
        "taken": [names.get(r, r) for c in taken for r in c.recipients]
        + [PURPOSES.get(p, p) for c in taken for p in c.purposes],
    }


async def _show(request: web.Request, found: asyncpg.Record) -> web.Response:
    pool = request.app[RUNTIME].pool
    rows = await store.every_consent_of(pool, found["person_id"])
    names = _names(await store.names(pool))
    now = datetime.now(UTC)
    shown = [_view(h, names, now) for h in reversed(await audit.histories(pool, rows))]
    token = request.match_info["token"]
    return _private(pages.render(
        request, "consent/mon-accord.html", consents=shown, token=token,
        form_token=receipt.form_token(request.app[KEYS], token),
        done=request.query.get("retrait")))


@pages.page
async def own_page(request: web.Request) -> web.StreamResponse:
    return await _show(request, await _receipt_of(request))


@pages.page
async def withdraw(request: web.Request) -> web.StreamResponse:
    """The person takes back a whole consent (`retrait=tout`), one recipient
    (`destinataire:<id>`) or one purpose (`finalite:<purpose>`) of it."""
    found = await _receipt_of(request)
    fields = await pages.form(request, with_session=False)
    token = request.match_info["token"]
    if not receipt.form_token_matches(request.app[KEYS], token, fields.get("csrf", "")):
        raise pages.PageError(403, "Formulaire expiré", "Ce formulaire ne vient pas de votre "
                              "page ou a expiré. Rouvrez le lien de votre reçu et recommencez.")
    kind, _, value = fields.get("retrait", "").partition(":")
    purposes = [value] if kind == "finalite" else []
    recipients = [value] if kind == "destinataire" else []
    consent_id = outreach._id(fields.get("accord", ""))
    try:
        if consent_id is None or (kind != "tout" and not value):
            raise ValueError("no consent or nothing named")
        body = WithdrawIn.model_validate({"purposes": purposes, "recipients": recipients,
                                          "requested_by": REQUESTED_BY, "channel": CHANNEL})
    except (ValueError, ValidationError) as invalid:
        raise pages.PageError(422, "Retrait impossible", "Ce formulaire ne dit pas quoi "
                              "retirer. Rouvrez le lien de votre reçu et recommencez.") \
            from invalid
    pool = request.app[RUNTIME].pool
    async with pool.acquire() as conn, conn.transaction():
        row = await store.lock_consent_of_person(conn, consent_id, found["person_id"])
        if row is None:
            raise pages.PageError(404, "Accord introuvable", "Cet accord n'est pas dans vos "
                                  "accords. Rouvrez le lien de votre reçu.")
        try:
            await api.withdraw_locked(conn, row, purposes, recipients, BY_THE_PERSON, body)
            said = "fait"
        except Problem:  # withdrawn already (another tap, another device): nothing to do
            said = "deja"
    log.info("consent_withdrawn_by_person", receipt_id=str(found["id"]),
             consent_id=str(consent_id), outcome=said)
    raise web.HTTPSeeOther(f"/mon-accord/{token}?retrait={said}")


def routes(app: web.Application) -> None:
    app[THROTTLE] = receipt.Throttle.per_minute("receipt-codes", buckets(app))
    app.router.add_post("/terrain/accord/{id}/{consent}/recu", give)
    app.router.add_get("/mon-accord", code_form)
    app.router.add_post("/mon-accord", code_entered)
    app.router.add_get("/mon-accord/{token}", own_page)
    app.router.add_post("/mon-accord/{token}", withdraw)
