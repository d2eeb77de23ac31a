"""The person's right of access (GDPR art. 15, issue #14): `GET /v1/people/{id}/export`
gathers everything Relais holds about a person, from every service, for the data-protection
officer (`people:export`, territory-wide like `audit:read`): their identity, contact details
and notes (opened from the vault), their contacts, who read their data, their consents with
their history (consent service), their referrals with their history (referral service) and the
notifications about them (notify service), each asked with the officer's own token. As JSON,
or, asked with `Accept: text/html`, as a readable French document to hand to the person.

The export is itself a read of their personal data: it is in the access log and, through the
`personal_data_read` event, on the consent trail."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from schemas.api import (
    ConsentList,
    ExportRead,
    NotificationList,
    PersonExport,
    ReferralHeld,
)
from schemas.events import PERSONAL_DATA_READ, PersonalDataReadV1
from services.intake import domain, store
from services.intake.api import DIRECTORY, EXAMPLE_ID, MASTER_KEY, SOURCE, open_vault
from services.runtime import outbox, peers
from services.runtime.app import RUNTIME
from services.runtime.auth import authenticate
from services.runtime.events import new_event
from services.runtime.http import path_uuid
from services.runtime.openapi import Operation, register
from services.runtime.problem import Problem
from services.runtime.web import environment, html_headers

EVERYTHING = frozenset({"identity", "contact", "situation", "needs", "note"})


async def get_export(request: web.Request) -> web.Response:
    principal = await authenticate(request, "people:export")
    person_id = path_uuid(request)
    runtime = request.app[RUNTIME]
    now = datetime.now(UTC)
    async with runtime.pool.acquire() as conn, conn.transaction():
        contacts = await store.contacts_of(conn, person_id)
        if not contacts:
            raise Problem(404, "Not found", "No person with this id.")
        person = await store.person(conn, person_id)
        erased_at = person["erased_at"] if person is not None else None
        identity, notes = (None, []) if erased_at is not None else await open_vault(
            conn, person_id, person, request.app[MASTER_KEY], EVERYTHING)
        reads = [ExportRead.model_validate(dict(r)) for r in await store.reads_of(conn,
                                                                                 person_id)]
        if erased_at is None:
            await store.log_access(conn, person_id, principal.org, principal.client_id, None,
                                   sorted(EVERYTHING))
            await outbox.add(conn, store.SCHEMA, [new_event(
                PERSONAL_DATA_READ, SOURCE, str(person_id), PersonalDataReadV1(
                    person_id=person_id, org=principal.org, client_id=principal.client_id,
                    consent_id=None, categories=sorted(EVERYTHING), read_at=now,
                    read_by=principal.who if principal.name else None))])
    consents, referrals, notifications = await _held(request, person_id)
    export = PersonExport(
        person_id=person_id, exported_at=now, exported_by=principal.org, erased_at=erased_at,
        identity=identity, notes=notes or [], contacts=[domain.intake_out(r) for r in contacts],
        reads=reads, consents=consents.items, referrals=referrals.items,
        notifications=notifications.items)
    if "text/html" in request.headers.get("Accept", ""):
        directory = await request.app[DIRECTORY].get(runtime.pool)
        names = {o.id: o.name for o in directory.organisations}
        return web.Response(text=document(export, names), content_type="text/html",
                            charset="utf-8", headers=html_headers())
    return web.json_response(text=export.model_dump_json())


async def _held(request: web.Request, person_id: object
                ) -> tuple[ConsentList, ReferralHeld, NotificationList]:
    """What the consent, referral and notify services hold, asked as the officer."""
    settings = request.app[RUNTIME].settings
    query = f"?person_id={person_id}"
    consents = await peers.get_all(request, f"/v1/consents:held{query}", ConsentList,
                                   peers.service_base(request, "consent",
                                                      settings.consent_url), "Consent")
    referrals = await peers.get_all(request, f"/v1/referrals:held{query}", ReferralHeld,
                                    peers.service_base(request, "referral",
                                                       settings.referral_url), "Referral")
    notifications = await peers.get_all(request, f"/v1/notifications:held{query}",
                                        NotificationList, peers.service_base(
                                            request, "notify", settings.notify_url), "Notify")
    return consents, referrals, notifications


def document(export: PersonExport, names: dict[str, str]) -> str:
    """The export as a French document the person can read (services/intake/screens/
    export.html): no code, no jargon, organisations by their names."""
    return environment().get_template("intake/export.html").render(
        export=export, names=names)


OPERATIONS = [
    Operation("GET", "/v1/people/{id}/export", get_export,
              "Everything Relais holds about a person, from every service (their access "
              "request; logged). JSON, or a French document with `Accept: text/html`",
              "People", "people:export", response=PersonExport,
              path_example={"id": EXAMPLE_ID}, errors=(404,), also_media="text/html"),
]


def routes(app: web.Application) -> None:
    register(app, OPERATIONS)
