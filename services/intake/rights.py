"""The person's rights that change what Relais holds or does (issue #14), for the
data-protection officer: rectification (GDPR art. 16), `PUT /v1/people/{id}/identity`;
restriction (art. 18) and objection (art. 21), `POST` and `DELETE
/v1/people/{id}/restriction`.

The identity and contact details given replace what was known, whole: a field left out is
removed. The old values are gone from the vault (the sealed record is replaced; PostgreSQL
drops the old row version at its next vacuum) and from the search by name; the correction is
logged on the consent trail (`person_rectified`: which fields, by whom, never their values).

A restriction or an objection stops processing without erasing: the `person_restricted` event
makes the consent service withdraw every live consent of the person (so their referrals stop
and the recipients are told, as any withdrawal does) and refuse new ones; here no new contact is
recorded for them (409) and nobody reads their data (403) but the officer's export, until it is
lifted (`person_restriction_lifted`; a withdrawn consent stays withdrawn)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from uuid import UUID

import asyncpg
from aiohttp import web

from schemas.api import Identity, PersonOut, RestrictionIn, RestrictionOut, identity_tag
from schemas.events import (
    PERSON_RECTIFIED,
    PERSON_RESTRICTED,
    PERSON_RESTRICTION_LIFTED,
    PersonRectifiedV1,
    PersonRestrictedV1,
    PersonRestrictionLiftedV1,
)
from services.intake import names, store, vault
from services.intake.api import EXAMPLE_ID, MASTER_KEY, SOURCE, person_key
from services.runtime import outbox
from services.runtime.app import RUNTIME
from services.runtime.auth import Principal, authenticate
from services.runtime.events import new_event
from services.runtime.http import json_response, parse, path_uuid, read_json
from services.runtime.openapi import Operation, register
from services.runtime.problem import Problem
from services.runtime.sealing import Keyring


def changed(before: dict[str, object], after: dict[str, object]) -> list[str]:
    """The fields whose value differs (added, removed or corrected)."""
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


async def rectify(conn: asyncpg.Connection, principal: Principal, person_id: UUID,
                  identity: Identity, master: Keyring, expected: str | None = None
                  ) -> list[str]:
    """In the caller's transaction: the identity replaced, the name index following, the
    correction on its way to the trail. The fields changed (none: nothing written)."""
    if not await store.contacts_of(conn, person_id):
        raise Problem(404, "Not found", "No person with this id.")
    person = await store.person(conn, person_id, lock=True)
    if person is not None and person["erased_at"] is not None:
        raise Problem(410, "Erased", "This person's data was erased.")
    key = await person_key(conn, person_id, person, master)
    before: dict[str, object] = {}
    if person is not None and person["identity"] is not None:
        before = json.loads(vault.open_sealed(key, person["identity"], f"identity/{person_id}"))
    if expected is not None and expected.strip() not in ("*", identity_tag(before)):
        raise Problem(412, "Precondition failed",
                      "The identity changed since you read it: read it again (its ETag is in "
                      "this answer's ETag header), then retry.",
                      headers={"ETag": identity_tag(before)})
    after = identity.model_dump(mode="json", exclude_none=True)
    fields = changed(before, after)
    if not fields:
        return []
    sealed = vault.seal(key, json.dumps(after).encode(), f"identity/{person_id}") \
        if after else None
    await store.set_identity(conn, person_id, sealed)
    await store.replace_name_terms(conn, person_id,
                                   names.terms(names.key(master), after))
    await outbox.add(conn, store.SCHEMA, [new_event(
        PERSON_RECTIFIED, SOURCE, str(person_id), PersonRectifiedV1(
            person_id=person_id, org=principal.org, client_id=principal.client_id,
            fields=fields, rectified_at=datetime.now(UTC),
            rectified_by=principal.who if principal.name else None))])
    return fields


async def put_identity(request: web.Request) -> web.Response:
    principal = await authenticate(request, "people:rectify")
    person_id = path_uuid(request)
    identity = parse(Identity, await read_json(request))
    async with request.app[RUNTIME].pool.acquire() as conn, conn.transaction():
        await rectify(conn, principal, person_id, identity, request.app[MASTER_KEY],
                      request.headers.get("If-Match"))
    known = identity.model_dump(mode="json", exclude_none=True)
    return json_response(PersonOut(person_id=person_id, categories=sorted(identity.categories),
                                   identity=identity, notes=None, consent_id=None),
                         headers={"ETag": identity_tag(known)})


async def restrict(conn: asyncpg.Connection, principal: Principal, person_id: UUID,
                   body: RestrictionIn) -> RestrictionOut:
    """In the caller's transaction: the restriction, and the event that stops processing
    everywhere (once: asked again, it stays as it was)."""
    if not await store.contacts_of(conn, person_id):
        raise Problem(404, "Not found", "No person with this id.")
    person = await store.person(conn, person_id, lock=True)
    if person is not None and person["erased_at"] is not None:
        raise Problem(410, "Erased", "This person's data was erased.")
    row, new = await store.restrict(conn, person_id, body.right, principal.org)
    if new:
        await outbox.add(conn, store.SCHEMA, [new_event(
            PERSON_RESTRICTED, SOURCE, str(person_id), PersonRestrictedV1(
                person_id=person_id, right=body.right, org=principal.org,
                client_id=principal.client_id, channel=body.channel, at=row["since"]))])
    return RestrictionOut.model_validate(dict(row))


async def post_restriction(request: web.Request) -> web.Response:
    principal = await authenticate(request, "people:restrict")
    person_id = path_uuid(request)
    body = parse(RestrictionIn, await read_json(request))
    async with request.app[RUNTIME].pool.acquire() as conn, conn.transaction():
        return json_response(await restrict(conn, principal, person_id, body))


async def delete_restriction(request: web.Request) -> web.Response:
    principal = await authenticate(request, "people:restrict")
    person_id = path_uuid(request)
    async with request.app[RUNTIME].pool.acquire() as conn, conn.transaction():
        if await store.lift_restriction(conn, person_id):
            await outbox.add(conn, store.SCHEMA, [new_event(
                PERSON_RESTRICTION_LIFTED, SOURCE, str(person_id), PersonRestrictionLiftedV1(
                    person_id=person_id, org=principal.org, client_id=principal.client_id,
                    at=datetime.now(UTC)))])
    return web.Response(status=204)


OPERATIONS = [
    Operation("PUT", "/v1/people/{id}/identity", put_identity,
              "Correct a person's identity and contact details at their request (GDPR art. "
              "16): what is given replaces what was known, a field left out is removed; "
              "logged", "People", "people:rectify", request=Identity, response=PersonOut,
              path_example={"id": EXAMPLE_ID}, errors=(404, 410), if_match=True,
              example={"first_name": "Léa", "last_name": "Martin-Dubois",
                       "phone": "06 12 34 56 78"}),
    Operation("POST", "/v1/people/{id}/restriction", post_restriction,
              "Stop processing a person's data without erasing it, at their request "
              "(restriction, GDPR art. 18, or objection, art. 21): every live consent "
              "withdrawn, no new contact, consent or read until lifted", "People",
              "people:restrict", request=RestrictionIn, response=RestrictionOut,
              path_example={"id": EXAMPLE_ID}, errors=(404, 410),
              example={"right": "objection", "channel": "letter"}),
    Operation("DELETE", "/v1/people/{id}/restriction", delete_restriction,
              "Lift a restriction or objection (withdrawn consents stay withdrawn)", "People",
              "people:restrict", status=204, path_example={"id": EXAMPLE_ID}),
]


def routes(app: web.Application) -> None:
    register(app, OPERATIONS)
