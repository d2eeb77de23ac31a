"""The intake HTTP API: thin handlers over the store, the domain and the vault."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from datetime import UTC, date, datetime

import asyncpg
from aiohttp import web
from pydantic import ValidationError

from schemas.api import (
    BatchIn,
    BatchOut,
    BatchResult,
    EvidenceContent,
    EvidenceIn,
    EvidenceOut,
    Identity,
    IntakeIn,
    IntakeOut,
    IntakePage,
    PersonOut,
    SignalClose,
    SignalIn,
    SignalList,
    SignalOut,
    StandingOut,
    identity_tag,
)
from schemas.events import (
    INTAKE_RECORDED,
    PERSONAL_DATA_READ,
    SIGNAL_CLOSED,
    SIGNAL_RECEIVED,
    PersonalDataReadV1,
    SignalClosedV1,
    SignalReceivedV1,
)
from services import directory as reference
from services.intake import domain, erasure, names, store, vault
from services.intake.directory import CachedDirectory
from services.runtime import access, idempotency, outbox, paging, peers
from services.runtime.access import Act
from services.runtime.app import RUNTIME
from services.runtime.auth import Principal, authenticate
from services.runtime.events import new_event
from services.runtime.http import json_response, parse, path_uuid, read_json
from services.runtime.openapi import Operation, Query, register
from services.runtime.problem import Problem, validation_problem
from services.runtime.ratelimit import charge
from services.runtime.sealing import Keyring

SOURCE = "/relais/intake"
MASTER_KEY = web.AppKey("master_key", Keyring)
HINT_CONTEXT = "signal/{}"
"""A signal's hint is sealed under the master key bound to the signal (`{}`: its id)."""
LEDGER = web.AppKey("erasure_ledger", erasure.Ledger)
DIRECTORY = web.AppKey("directory", CachedDirectory)
PAGE = 100


async def refuse_if_restricted(conn: asyncpg.Connection, person_id: uuid.UUID,
                               status: int) -> None:
    """A restricted person (services/intake/rights.py) is not processed: no new contact
    (409), no read (403)."""
    if await store.restriction(conn, person_id) is not None:
        raise _restricted(status)


def _restricted(status: int) -> Problem:
    return Problem(status, "Processing restricted", "At the person's request, their data is "
                   "not processed for now (restriction or objection): ask the data-protection "
                   "officer.")


def _not_found(what: str = "intake") -> Problem:
    return Problem(404, "Not found", f"No such {what}.")


# --- intakes -------------------------------------------------------------------------------

async def record_intake(conn: asyncpg.Connection, org: str, body: IntakeIn,
                        master: Keyring, directory: reference.Directory) -> IntakeOut:
    """One intake and its sealed personal data, in the caller's transaction (its event:
    `answer_intake`)."""
    site = _place(body, directory)
    person_id = body.person_id or uuid.uuid4()
    person = None
    visits = 0
    basis = "met"
    if body.person_id:
        person = await store.person(conn, person_id, lock=True)
        visits = await store.visits_so_far(conn, person_id)
        facts = await store.standing_facts(conn, person_id)
        standing = _decide(facts, org)
        if visits == 0 or not standing.may(Act.attach):
            raise _unknown_person()
        if person is not None and person["erased_at"] is not None:
            raise Problem(422, "Person erased", "This person was erased; record a new contact.")
        if facts.restricted:
            raise _restricted(409)
        if body.identity and not standing.may(Act.correct):
            raise Problem(403, "Forbidden", "The consent naming your organisation does not "
                          "cover this person's identity or contact: leave them out.")
        basis = "met" if standing.met else "consent"
    note = None
    if body.identity or body.note:
        key = await person_key(conn, person_id, person, master)
        if body.identity:
            await _merge_identity(conn, person_id, person, key, body.identity,
                                  names.key(master))
        if body.note:
            note = vault.seal(key, body.note.encode(), f"note/{person_id}")
    signal = (await store.get_signal(conn, body.signal_id, org, lock=True)
              if body.signal_id else None)
    if body.signal_id and signal is None:
        raise Problem(422, "Unknown signal", "No such signal for your organisation.")
    values = intake_values(org, person_id, site, body, visits + 1, note, basis)
    row = await store.insert_intake(conn, values)
    if signal is not None and signal["status"] == "open":  # answered once: the first contact
        await close_signal_now(conn, signal, "reached", row["id"])
    return domain.intake_out(row)


def intake_values(org: str, person_id: uuid.UUID, site: str, body: IntakeIn,
                  visit_number: int, note: bytes | None, basis: str) -> dict[str, object]:
    """A new contact's columns (`store.insert_intake`), all but its `created_at`."""
    return {
        "id": uuid.uuid4(), "org": org, "person_id": person_id, "site": site,
        "channel": body.channel, "contacted_at": body.contacted_at.astimezone(UTC),
        "duration_minutes": body.duration_minutes, "needs": list(body.needs),
        "flags": list(body.flags), "age_bracket": body.age_bracket or (
            domain.age_bracket_for(body.birth_year, date.today()) if body.birth_year else None),
        "commune": body.commune, "visit_number": visit_number, "note": note,
        "has_identity": body.identity is not None, "signal_id": body.signal_id,
        "permanence": body.permanence, "gender": body.gender, "basis": basis,
        "arrival": body.arrival, "for_org": body.for_org}


def new_person_plan(org: str, body: IntakeIn, directory: reference.Directory
                    ) -> tuple[idempotency.Answer, idempotency.Writes] | None:
    """The first contact of a new person with nothing sealed (no identity, note or signal):
    decided without reading anything, so written in one statement with its idempotency key
    and its event (`idempotency.once_in_one_statement`), its answer made here, its
    `created_at` from this process's clock. None for any other contact (it reads the person,
    their key or the signal first: `record_intake`, in a transaction)."""
    if body.person_id or body.identity or body.note or body.signal_id:
        return None
    values = intake_values(org, uuid.uuid4(), _place(body, directory), body, 1, None, "met")
    values["created_at"] = datetime.now(UTC)
    intake = domain.intake_out(values)
    answer = idempotency.Answer(
        201, intake.model_dump(mode="json"), {"Location": f"/v1/intakes/{intake.id}"},
        events=[new_event(INTAKE_RECORDED, SOURCE, str(intake.person_id),
                          domain.recorded_event(intake))])
    return answer, store.new_intake_writes(values)


def _unknown_person() -> Problem:
    """The same answer whether the id exists or not: an id learned elsewhere tells nothing."""
    return Problem(422, "Unknown person", "1 invalid field(s)",
                   type_="https://relais.example/problems/validation", errors=[{
                       "field": "person_id", "code": "unknown_person",
                       "message": "no person with this id for your organisation: quote only "
                       "an id your organisation recorded, or one a live consent names it for "
                       "(a person met elsewhere is a new contact)"}])


async def _standing(db: store.Db, person_id: uuid.UUID, org: str,
                    consent_id: uuid.UUID | None = None) -> access.Standing:
    """What `org` is to the person; under `consent_id` only, when given (a dossier)."""
    return _decide(await store.standing_facts(db, person_id), org, consent_id)


def _decide(facts: store.StandingFacts, org: str,
            consent_id: uuid.UUID | None = None) -> access.Standing:
    grants = [domain.grant(r) for r in facts.consents]
    if consent_id is not None:
        return access.under_consent(org, facts.met_by, grants, consent_id, datetime.now(UTC))
    return access.standing(org, facts.met_by, grants, datetime.now(UTC))


def _place(body: IntakeIn, directory: reference.Directory) -> str:
    """The site of the contact, checked against the directory (or that of its permanence)."""
    errors = []
    site = body.site
    permanence = None
    if body.permanence:
        permanence = next((p for p in directory.permanences if p.id == body.permanence), None)
        site = site or (permanence.site if permanence else None)
        if permanence is None or permanence.site != site:
            errors.append({"field": "permanence", "message": f"no permanence "
                           f"'{body.permanence}' at site '{site}'",
                           "code": "unknown_permanence"})
    if body.for_org and (permanence is None or body.for_org not in permanence.organisations):
        present = ", ".join(permanence.organisations) if permanence else ""
        errors.append({"field": "for_org", "message": f"'{body.for_org}' is not present at "
                       + (f"permanence '{permanence.id}' (present: {present})" if permanence
                          else "a permanence: give the permanence of the contact"),
                       "code": "not_at_permanence"})
    if site is None or (directory.sites and directory.site(site) is None):
        errors.append({"field": "site", "message": f"unknown site '{site}': see GET "
                       "/v1/directory", "code": "unknown_site"})
    if errors:
        raise Problem(422, "Invalid request", f"{len(errors)} invalid field(s)",
                      type_="https://relais.example/problems/validation", errors=errors)
    assert site is not None
    return site


async def person_key(conn: asyncpg.Connection, person_id: uuid.UUID,
                      person: asyncpg.Record | None, master: Keyring) -> bytes:
    if person is not None and person["wrapped_key"] is not None:
        return vault.unwrap(master, person_id, person["wrapped_key"])
    key = vault.new_person_key()
    await store.insert_person(conn, person_id, vault.wrap(master, person_id, key))
    return key


async def _merge_identity(conn: asyncpg.Connection, person_id: uuid.UUID,
                          person: asyncpg.Record | None, key: bytes, new: Identity,
                          index_key: bytes) -> None:
    """What is given now completes or corrects what was known; the search by name follows
    (services/intake/names.py), in the same transaction."""
    known: dict[str, object] = {}
    if person is not None and person["identity"] is not None:
        known = json.loads(vault.open_sealed(key, person["identity"], f"identity/{person_id}"))
    merged = known | new.model_dump(mode="json", exclude_none=True)
    sealed = vault.seal(key, json.dumps(merged).encode(), f"identity/{person_id}")
    await store.set_identity(conn, person_id, sealed)
    await store.replace_name_terms(conn, person_id, names.terms(index_key, merged))


OPERATION = "intake"
"""The idempotency keys' operation: one namespace per organisation for the API, the batch and
the outreach pages (a key serves once, whichever recorded it)."""


async def answer_intake(conn: asyncpg.Connection, org: str, body: IntakeIn, master: Keyring,
                        directory: reference.Directory) -> idempotency.Answer:
    """POST /v1/intakes's unit of work and its answer (201, the intake, where it is), with
    its event (written with the key's row)."""
    intake = await record_intake(conn, org, body, master, directory)
    return idempotency.Answer(201, intake.model_dump(mode="json"),
                              {"Location": f"/v1/intakes/{intake.id}"}, events=[new_event(
                                  INTAKE_RECORDED, SOURCE, str(intake.person_id),
                                  domain.recorded_event(intake))])


async def record_once(pool: asyncpg.Pool, org: str, key: str, payload: object,
                      body: IntakeIn, master: Keyring,
                      directory: reference.Directory) -> tuple[IntakeOut, bool]:
    """An intake recorded once per (organisation, key), as POST /v1/intakes does: the intake
    (the first one for a key used again with the same payload) and whether it is a replay.
    A key used again with another payload is a 422 problem; nothing is written then."""

    async def work(conn: asyncpg.Connection) -> idempotency.Answer:
        return await answer_intake(conn, org, body, master, directory)

    planned = new_person_plan(org, body, directory)
    if planned is not None:
        answer, replayed = await idempotency.once_in_one_statement(
            pool, store.SCHEMA, org, OPERATION, key, payload, *planned)
    else:
        answer, replayed = await idempotency.once(pool, store.SCHEMA, org, OPERATION, key,
                                                  payload, work)
    return IntakeOut.model_validate(answer.body), replayed


async def post_intake(request: web.Request) -> web.Response:
    master, cached = request.app[MASTER_KEY], request.app[DIRECTORY]

    async def work(conn: asyncpg.Connection, principal: Principal,
                   body: IntakeIn) -> idempotency.Answer:
        return await answer_intake(conn, principal.org, body, master, await cached.get(conn))

    async def plan(principal: Principal, body: IntakeIn
                   ) -> tuple[idempotency.Answer, idempotency.Writes] | None:
        return new_person_plan(principal.org, body, await cached.get(request.app[RUNTIME].pool))

    return await idempotency.create(request, "intake:write", IntakeIn, store.SCHEMA, OPERATION,
                                    work, plan=plan)


async def post_batch(request: web.Request) -> web.Response:
    """Up to 500 intakes, each with its own idempotency key and its own transaction."""
    principal = await authenticate(request, "intake:write")
    batch = parse(BatchIn, await read_json(request))
    await charge(request, principal.client_id, len(batch.items) - 1)  # one per intake in all
    pool, master = request.app[RUNTIME].pool, request.app[MASTER_KEY]
    directory = await request.app[DIRECTORY].get(pool)
    results: list[BatchResult] = []
    for item in batch.items:
        results.append(await _batch_item(pool, principal, master, directory,
                                         item.idempotency_key, item.intake))
    counts = {s: sum(r.status == s for r in results) for s in ("created", "duplicate",
                                                                "invalid")}
    return json_response(BatchOut(results=results, created=counts["created"],
                                  duplicates=counts["duplicate"], invalid=counts["invalid"]))


async def _batch_item(pool: asyncpg.Pool, principal: Principal, master: Keyring,
                      directory: reference.Directory, key: str,
                      payload: dict[str, object]) -> BatchResult:
    try:
        body = IntakeIn.model_validate(payload)
        intake, replayed = await record_once(pool, principal.org, key, payload, body, master,
                                             directory)
    except ValidationError as exc:
        return BatchResult(idempotency_key=key, status="invalid",
                           errors=validation_problem(exc).extra["errors"])
    except Problem as problem:
        errors = problem.extra.get("errors") or [
            {"field": "(intake)", "message": problem.detail or "", "code": problem.title}]
        return BatchResult(idempotency_key=key, status="invalid", errors=errors)
    return BatchResult(idempotency_key=key, status="duplicate" if replayed else "created",
                       intake=intake)


async def get_intake(request: web.Request) -> web.Response:
    principal = await authenticate(request, "intake:read")
    pool = request.app[RUNTIME].pool
    orgs = (await request.app[DIRECTORY].get(pool)).partners_of(principal.org)
    row = await store.get_intake(pool, path_uuid(request), orgs)
    if row is None:
        raise _not_found()
    return json_response(domain.intake_out(row))


async def list_intakes(request: web.Request) -> web.Response:
    principal = await authenticate(request, "intake:read")
    query = request.query
    try:
        since = datetime.fromisoformat(query["since"]) if "since" in query else None
        after = paging.decode_cursor(query["cursor"]) if "cursor" in query else None
        limit = min(int(query.get("limit", PAGE)), PAGE)
    except ValueError as exc:
        raise Problem(400, "Bad query",
                      "since: an ISO 8601 date-time; cursor: as given; limit: 1 to 100.") from exc
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    pool = request.app[RUNTIME].pool
    orgs = (await request.app[DIRECTORY].get(pool)).partners_of(principal.org)
    rows = await store.page_intakes(pool, orgs, query.get("site"), since, after,
                                    max(limit, 1))
    items = [domain.intake_out(r) for r in rows]
    next_cursor = (paging.encode_cursor(items[-1].created_at, items[-1].id)
                   if len(items) == max(limit, 1) else None)
    return json_response(IntakePage(items=items, next_cursor=next_cursor))


# --- people --------------------------------------------------------------------------------

async def get_person(request: web.Request) -> web.Response:
    """Personal data, to an organisation that met the person or under a live consent; every
    read is logged (access log and `personal_data_read` event). With `consent_id`, exactly
    what that one consent gives the caller (how a referral's dossier reads it)."""
    principal = await authenticate(request, "people:read", link=True)
    person_id = path_uuid(request)
    asked = request.query.get("consent_id")
    try:
        under = uuid.UUID(asked) if asked is not None else None
    except ValueError as exc:
        raise Problem(400, "Bad query", "consent_id must be a UUID.") from exc
    if principal.person is not None and principal.person != person_id:
        raise _not_found("person")  # a magic link reads its referral's person only
    master = request.app[MASTER_KEY]
    async with request.app[RUNTIME].pool.acquire() as conn, conn.transaction():
        standing = await _standing(conn, person_id, principal.org, under)
        categories = standing.categories
        if not categories:
            raise _not_found("person")
        consent_id = None if standing.met or standing.consent is None \
            else standing.consent.consent_id
        now = datetime.now(UTC)
        person = await store.person(conn, person_id)
        if person is not None and person["erased_at"] is not None:
            raise Problem(410, "Erased", "This person's data was erased.")
        await refuse_if_restricted(conn, person_id, 403)
        identity, notes = await open_vault(conn, person_id, person, master, categories)
        await store.log_access(conn, person_id, principal.org, principal.client_id, consent_id,
                               sorted(categories))
        await outbox.add(conn, store.SCHEMA, [new_event(
            PERSONAL_DATA_READ, SOURCE, str(person_id), PersonalDataReadV1(
                person_id=person_id, org=principal.org, client_id=principal.client_id,
                consent_id=consent_id, categories=sorted(categories), read_at=now,
                read_by=principal.who if principal.name else None))])
    whole = {"identity", "contact"} <= categories  # the identity as a correction replaces it
    tag = identity_tag({} if identity is None else identity.model_dump(
        mode="json", exclude_none=True)) if whole else None
    return json_response(PersonOut(person_id=person_id, categories=sorted(categories),
                                   identity=identity, notes=notes, consent_id=consent_id),
                         headers={"ETag": tag} if tag else None)


async def open_vault(conn: asyncpg.Connection, person_id: uuid.UUID,
                     person: asyncpg.Record | None, master: Keyring, categories: frozenset[str],
                     ) -> tuple[Identity | None, list[str] | None]:
    """The person's identity and notes, as far as `categories` go, opened from the vault."""
    if person is None or person["wrapped_key"] is None:
        return None, [] if "note" in categories else None
    key = vault.unwrap(master, person_id, person["wrapped_key"])
    identity = None
    if person["identity"] is not None and categories & {"identity", "contact"}:
        known = Identity.model_validate_json(
            vault.open_sealed(key, person["identity"], f"identity/{person_id}"))
        hidden = set()
        if "identity" not in categories:
            hidden |= {"first_name", "last_name", "birth_date"}
        if "contact" not in categories:
            hidden |= {"phone", "email"}
        identity = known.model_copy(update=dict.fromkeys(hidden))
    notes = None
    if "note" in categories:
        notes = [vault.open_sealed(key, n, f"note/{person_id}").decode()
                 for n in await store.notes_of(conn, person_id)]
    return identity, notes


async def delete_person(request: web.Request) -> web.Response:
    """Erase a person (crypto-shredding) and tell the other services to drop what they hold;
    the erasure is in the ledger before it commits (services/intake/erasure.py)."""
    principal = await authenticate(request, "people:erase")
    person_id = path_uuid(request)
    async with request.app[RUNTIME].pool.acquire() as conn, conn.transaction():
        if not (await _standing(conn, person_id, principal.org)).may(Act.erase):
            raise _not_found("person")
        person = await store.person(conn, person_id, lock=True)
        if person is not None and person["erased_at"] is not None:
            return web.Response(status=204)
        asked = erasure.Erasure(person_id, principal.org, datetime.now(UTC))
        try:
            await request.app[LEDGER].append(asked)
        except OSError as exc:  # a full disk, a volume gone: nothing erased, say to retry
            raise Problem(503, "Erasure ledger unavailable", "The erasure could not be "
                          "written to the erasure ledger: nothing was erased; try again.",
                          headers={"Retry-After": "30"}) from exc
        await erasure.erase(conn, asked)
    return web.Response(status=204)


# --- the proof of signed consents -----------------------------------------------------------

async def post_evidence(request: web.Request) -> web.Response:
    """A signature drawn on the screen, or the photo of a signed form, sealed with the person's
    key; named by its SHA-256, which the consent then records. Only an organisation that met
    the person adds it; the same image again is the same evidence (200)."""
    principal = await authenticate(request, "intake:write")
    body = parse(EvidenceIn, await read_json(request))
    person_id = path_uuid(request)
    digest = hashlib.sha256(body.content).hexdigest()
    async with request.app[RUNTIME].pool.acquire() as conn, conn.transaction():
        if not (await _standing(conn, person_id, principal.org)).met:
            raise _not_found("person")
        person = await store.person(conn, person_id, lock=True)
        if person is not None and person["erased_at"] is not None:
            raise Problem(410, "Erased", "This person's data was erased.")
        await refuse_if_restricted(conn, person_id, 409)
        key = await person_key(conn, person_id, person, request.app[MASTER_KEY])
        sealed = vault.seal(key, body.content, f"evidence/{person_id}/{digest}")
        row, created = await store.add_evidence(conn, person_id, digest, body.kind,
                                                body.media_type, len(body.content), sealed,
                                                principal.org)
    return json_response(EvidenceOut.model_validate(dict(row)), status=201 if created else 200,
                         headers={"Location": f"/v1/people/{person_id}/evidence/{digest}"})


async def get_evidence(request: web.Request) -> web.Response:
    """The image, unsealed, to an organisation that met the person (logged as a read of
    their identity: a signature is)."""
    principal = await authenticate(request, "people:read")
    person_id = path_uuid(request)
    digest = request.match_info["sha256"]
    async with request.app[RUNTIME].pool.acquire() as conn, conn.transaction():
        if not (await _standing(conn, person_id, principal.org)).met:
            raise _not_found("person")
        person = await store.person(conn, person_id)
        if person is not None and person["erased_at"] is not None:
            raise Problem(410, "Erased", "This person's data was erased.")
        await refuse_if_restricted(conn, person_id, 403)
        row = await store.evidence(conn, person_id, digest)
        if row is None or person is None or person["wrapped_key"] is None:
            raise _not_found("evidence")
        key = vault.unwrap(request.app[MASTER_KEY], person_id, person["wrapped_key"])
        content = vault.open_sealed(key, row["sealed"], f"evidence/{person_id}/{digest}")
        await store.log_access(conn, person_id, principal.org, principal.client_id, None,
                               ["identity"])
        await outbox.add(conn, store.SCHEMA, [new_event(
            PERSONAL_DATA_READ, SOURCE, str(person_id), PersonalDataReadV1(
                person_id=person_id, org=principal.org, client_id=principal.client_id,
                consent_id=None, categories=["identity"], read_at=datetime.now(UTC),
                read_by=principal.who if principal.name else None))])
    return json_response(EvidenceContent(
        **EvidenceOut.model_validate(dict(row)).model_dump(),
        content=base64.b64encode(content).decode()))


async def get_standing(request: web.Request) -> web.Response:
    """What the caller's organisation is to a person: the services ask it before acting for
    the caller (the consent service before recording a consent). 404 when it is nothing."""
    principal = await authenticate(request, None)
    found = await standing_of(request.app, path_uuid(request), principal.org)
    if found is None:
        raise _not_found("person")
    return json_response(found)


async def standing_of(app: web.Application, person_id: uuid.UUID, org: str
                      ) -> StandingOut | None:
    """What `org` is to the person, None when nothing (`GET /v1/people/{id}/standing`, and
    the consent service's question when it runs in this process: services/runtime/peers.py)."""
    facts = await store.standing_facts(app[RUNTIME].pool, person_id)
    standing = _decide(facts, org)
    if not standing.known:
        return None
    return StandingOut(
        person_id=person_id, met=standing.met,
        consent_id=standing.consent.consent_id if standing.consent else None,
        categories=sorted(standing.categories),
        may=[act.value for act in Act if standing.may(act)],
        restricted=facts.restricted)


# --- signals from the network --------------------------------------------------------------

SIGNAL_OPERATION = "signal"
"""The idempotency keys' operation for signals: the API's and the relays' links' (whose keys
are prefixed with the relay's id, services/intake/relay_pages.py)."""


async def answer_signal(conn: asyncpg.Connection, org: str, body: SignalIn, master: Keyring,
                        relay_id: uuid.UUID | None = None) -> idempotency.Answer:
    """POST /v1/signals's unit of work and its answer: the signal, its hint sealed, and its
    event, in the caller's transaction; `relay_id` when a relay's link sent it (a 410 problem
    once its link is revoked)."""
    if relay_id is not None and not await store.relay_still_active(conn, relay_id):
        raise Problem(410, "Link revoked", "This relay's link was revoked.")
    signal_id = uuid.uuid4()
    hint = master.seal(body.hint.encode(), HINT_CONTEXT.format(signal_id)) if body.hint else None
    row = await store.insert_signal(conn, signal_id, org, body.model_dump(mode="json"), hint,
                                    relay_id)
    signal = SignalOut.model_validate(dict(row))
    await outbox.add(conn, store.SCHEMA, [new_event(
        SIGNAL_RECEIVED, SOURCE, str(signal_id), SignalReceivedV1(
            signal_id=signal_id, org=org, relay_kind=body.relay_kind, commune=body.commune,
            site=body.site, age_bracket=body.age_bracket, needs=body.needs))])
    return idempotency.Answer(201, signal.model_dump(mode="json"),
                              {"Location": f"/v1/signals/{signal_id}"})


async def signal_once(pool: asyncpg.Pool, org: str, key: str, payload: object, body: SignalIn,
                      master: Keyring, relay_id: uuid.UUID | None = None) -> tuple[SignalOut,
                                                                                  bool]:
    """A signal recorded once per (organisation, key), as POST /v1/signals does: the signal
    (the first one for a key used again with the same payload) and whether it is a replay.
    A key used again with another payload is a 422 problem; nothing is written then."""

    async def work(conn: asyncpg.Connection) -> idempotency.Answer:
        return await answer_signal(conn, org, body, master, relay_id)

    answer, replayed = await idempotency.once(pool, store.SCHEMA, org, SIGNAL_OPERATION, key,
                                              payload, work)
    return SignalOut.model_validate(answer.body), replayed


async def close_signal_now(conn: asyncpg.Connection, signal: asyncpg.Record, outcome: str,
                           intake_id: uuid.UUID | None) -> asyncpg.Record:
    """Close an open signal (locked by the caller) and say so to the other services (the
    statistics per relay kind)."""
    row = await store.close_signal(conn, signal["id"], outcome, intake_id)
    await outbox.add(conn, store.SCHEMA, [new_event(
        SIGNAL_CLOSED, SOURCE, str(signal["id"]), SignalClosedV1(
            signal_id=signal["id"], org=signal["org"], relay_kind=signal["relay_kind"],
            outcome=outcome, intake_id=intake_id, closed_at=row["closed_at"]))])
    return row


async def post_signal(request: web.Request) -> web.Response:
    master = request.app[MASTER_KEY]

    async def work(conn: asyncpg.Connection, principal: Principal,
                   body: SignalIn) -> idempotency.Answer:
        return await answer_signal(conn, principal.org, body, master)

    return await idempotency.create(request, "intake:write", SignalIn, store.SCHEMA,
                                    SIGNAL_OPERATION, work)


async def list_signals(request: web.Request) -> web.Response:
    principal = await authenticate(request, "intake:read")
    status = request.query.get("status")
    if status not in (None, "open", "closed"):
        raise Problem(400, "Bad query", "status: open or closed.")
    rows = await store.list_signals(request.app[RUNTIME].pool, principal.org, status, PAGE)
    return json_response(SignalList(items=[SignalOut.model_validate(dict(r)) for r in rows]))


async def close_signal(request: web.Request) -> web.Response:
    principal = await authenticate(request, "intake:write")
    body = parse(SignalClose, await read_json(request))
    signal_id = path_uuid(request)
    async with request.app[RUNTIME].pool.acquire() as conn, conn.transaction():
        signal = await store.get_signal(conn, signal_id, principal.org, lock=True)
        if signal is None:
            raise _not_found("signal")
        if signal["status"] == "closed":
            raise Problem(409, "Already closed", "This signal is already closed.")
        row = await close_signal_now(conn, signal, body.outcome, body.intake_id)
    return json_response(SignalOut.model_validate(dict(row)))


INTAKE_EXAMPLE = {
    "site": "qpv-etouvie", "permanence": "camion-etouvie-mardi",
    "channel": "mobile_permanence", "contacted_at": "2026-11-17T10:15:00+01:00",
    "duration_minutes": 25, "arrival": "walk_in", "for_org": "mission-locale",
    "needs": ["employment", "mobility"],
    "flags": ["known_mission_locale"], "birth_year": 2006, "commune": "80021",
    "identity": {"first_name": "Léa", "phone": "06 12 34 56 78"},
    "note": "Cherche un apprentissage en cuisine ; pas de permis.",
}
EXAMPLE_ID = "5d0c1f8e-2b7a-4c3d-9e61-3a8f0b2c4d5e"
EXAMPLE_PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6k"
               "gAAAABJRU5ErkJggg==")
"""A 1×1 PNG: the smallest signature an example can send."""
EXAMPLE_SHA256 = hashlib.sha256(base64.b64decode(EXAMPLE_PNG)).hexdigest()
TAG = "Intakes"
OPERATIONS = [
    Operation("POST", "/v1/intakes", post_intake, "Record a contact", TAG, "intake:write",
              IntakeIn, IntakeOut, 201, INTAKE_EXAMPLE, idempotency_key=True,
              errors=(409,)),
    Operation("GET", "/v1/intakes", list_intakes,
              "List the intakes of your organisation and of its consortia", TAG,
              "intake:read", response=IntakePage, query=(
                  Query("site", "Only this site", example="qpv-etouvie"),
                  Query("since", "Contacts from this date-time (ISO 8601)",
                        {"type": "string", "format": "date-time"}),
                  Query("cursor", "The next_cursor of the previous page"),
                  Query("limit", "1 to 100", {"type": "integer", "minimum": 1,
                                              "maximum": 100}, example=50)),
              errors=(400,)),
    Operation("POST", "/v1/intakes:batch", post_batch, "Record up to 500 contacts", TAG,
              "intake:write", BatchIn, BatchOut, 200, {"items": [
                  {"idempotency_key": "tablette-2026-11-17-001",
                   "intake": {k: v for k, v in INTAKE_EXAMPLE.items()
                              if k not in ("identity", "note")}},
                  {"idempotency_key": "tablette-2026-11-17-002",
                   "intake": {"site": "centre-social-nord", "channel": "fixed_permanence",
                              "contacted_at": "2026-11-17T14:30:00+01:00",
                              "needs": ["housing", "rights"], "age_bracket": "30_49"}}]}),
    Operation("GET", "/v1/intakes/{id}", get_intake,
              "An intake of your organisation or of its consortia", TAG,
              "intake:read", response=IntakeOut, path_example={"id": EXAMPLE_ID},
              errors=(404,)),
    Operation("GET", "/v1/people/{id}", get_person,
              "A person's personal data, as far as you may read it (logged)", "People",
              "people:read", response=PersonOut, path_example={"id": EXAMPLE_ID},
              query=(Query("consent_id", "Read under this consent only: exactly the "
                           "categories it gives you (as a referral's dossier does); 404 when "
                           "it gives you none", {"type": "string", "format": "uuid"}),),
              errors=(400, 404, 410)),
    Operation("GET", "/v1/people/{id}/standing", get_standing,
              "What your organisation is to a person (met, or named by a live consent)",
              "People", response=StandingOut, path_example={"id": EXAMPLE_ID},
              errors=(404,)),
    Operation("DELETE", "/v1/people/{id}", delete_person,
              "Erase a person (crypto-shredding)", "People", "people:erase", status=204,
              path_example={"id": EXAMPLE_ID}, errors=(404,)),
    Operation("POST", "/v1/people/{id}/evidence", post_evidence,
              "Seal the proof of a signed consent (signature drawn, or photo of the form)",
              "People", "intake:write", EvidenceIn, EvidenceOut, 201, {
                  "kind": "signature", "media_type": "image/png",
                  "content": EXAMPLE_PNG}, path_example={"id": EXAMPLE_ID},
              also=(200,), errors=(404, 409, 410, 422)),
    Operation("GET", "/v1/people/{id}/evidence/{sha256}", get_evidence,
              "The proof of a signed consent, unsealed (logged)", "People", "people:read",
              response=EvidenceContent, path_example={"id": EXAMPLE_ID,
                                                      "sha256": EXAMPLE_SHA256},
              errors=(404, 410)),
    Operation("POST", "/v1/signals", post_signal, "Signal someone to reach", "Signals",
              "intake:write", SignalIn, SignalOut, 201, {
                  "relay_kind": "sports_club", "relay_name": "US Étouvie football",
                  "commune": "80021", "site": "qpv-etouvie", "age_bracket": "16_17",
                  "needs": ["training"], "hint": "Au city stade le mercredi après-midi"},
              idempotency_key=True),
    Operation("GET", "/v1/signals", list_signals, "Your organisation's signals", "Signals",
              "intake:read", response=SignalList, query=(
                  Query("status", "open or closed", {"enum": ["open", "closed"]},
                        example="open"),), errors=(400,)),
    Operation("POST", "/v1/signals/{id}/close", close_signal, "Close a signal", "Signals",
              "intake:write", SignalClose, SignalOut, 200, {"outcome": "not_found"},
              path_example={"id": EXAMPLE_ID}, errors=(404, 409)),
]


def routes(app: web.Application) -> None:
    app[DIRECTORY] = CachedDirectory()
    app[peers.LOCAL_STANDING] = standing_of
    register(app, OPERATIONS)
