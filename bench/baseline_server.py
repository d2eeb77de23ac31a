"""The baseline: bare aiohttp endpoints doing the same writes as Relais, without token check,
validation, idempotency or events.

`POST /v1/intakes`: the same two inserts (the intake row and its outbox row), in one
transaction; left out, the upsert of the person's last activity that Relais makes in the
intake's statement (for retention).

`POST /v1/consents`: the writes of `answer_consent` (services/consent/api.py) in its
transaction: the notice's hash read; the consent row; its outbox row (which Relais writes in
the statement of its idempotency key's row); the trail entry, chained as `trail_store.append`
did before consent migration 011 (the append lock, then the head read, in two statements,
where Relais now takes both in one: kept so that the ratios stay comparable with the
earlier rows of the README), the entry and its leaf hash; the consent_changes row (which
Relais writes in the consent's statement, before the trail entry, appended last). Left out,
as for intakes: the token, the validation (the body's, and the restriction read), the
idempotency key's row, the call to the intake service (who met the person) and the
directory's recipients; and the outbox row's `pg_notify`, also left out of the intakes one.
The outbox row and the trail entry carry the consent's fields in a plain dict, not Relais's
event envelope."""

from __future__ import annotations

import argparse
import json
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
from aiohttp import web

from services.consent import merkle, trail
from services.consent.trail_store import APPEND_LOCK
from services.runtime import db

POOL = web.AppKey("pool", asyncpg.Pool)


async def post(request: web.Request) -> web.Response:
    body = await request.json()
    intake_id, person_id = uuid.uuid4(), uuid.uuid4()
    async with request.app[POOL].acquire() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO intake.intakes (id, org, person_id, site, channel, contacted_at,"
            " needs, flags, visit_number) VALUES ($1, 'bench', $2, $3, $4, now(), $5, '{}', 1)",
            intake_id, person_id, body["site"], body["channel"], body["needs"],
        )
        await conn.execute(
            "INSERT INTO intake.outbox (topic, key, value, headers) VALUES"
            " ('relais.intake', $1, $2, '[]')",
            str(person_id).encode(), json.dumps(body).encode(),
        )
    return web.json_response({"id": str(intake_id)}, status=201)


async def post_consent(request: web.Request) -> web.Response:
    body = await request.json()
    consent_id, person_id = uuid.uuid4(), uuid.UUID(body["person_id"])
    now = datetime.now(UTC)
    valid_until = now + timedelta(days=365)
    async with request.app[POOL].acquire() as conn, conn.transaction():
        notice_hash = await conn.fetchval("SELECT hash FROM consent.notices WHERE version = $1",
                                          body["notice_version"])
        await conn.execute(
            "INSERT INTO consent.consents (id, org, person_id, purposes, recipients, categories,"
            " notice_version, method, captured_by, valid_until, notice_hash, granted_at)"
            " VALUES ($1, 'bench', $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            consent_id, person_id, body["purposes"], body["recipients"], body["categories"],
            body["notice_version"], body["method"], body["captured_by"], valid_until,
            notice_hash, now,
        )
        fields = {"consent_id": str(consent_id), "person_id": str(person_id), "org": "bench",
                  "purposes": body["purposes"], "recipients": body["recipients"],
                  "categories": body["categories"], "notice_version": body["notice_version"],
                  "notice_hash": notice_hash.hex(), "method": body["method"],
                  "evidence_sha256": None, "granted_at": now.isoformat(),
                  "valid_until": valid_until.isoformat()}
        await conn.execute(
            "INSERT INTO consent.outbox (topic, key, value, headers) VALUES"
            " ('relais.consent', $1, $2, '[]')",
            str(person_id).encode(), json.dumps(fields).encode(),
        )
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", APPEND_LOCK)
        head = await conn.fetchrow("SELECT seq, leaf_hash FROM consent.trail ORDER BY seq DESC"
                                   " LIMIT 1")
        seq, prev = (head["seq"] + 1, head["leaf_hash"]) if head else (0, None)
        entry = trail.encode_entry(seq, prev, now, "consent.granted", fields)
        await conn.execute(
            "INSERT INTO consent.trail (seq, entry, leaf_hash, person_id) VALUES ($1, $2, $3, $4)",
            seq, entry, merkle.leaf_hash(entry), person_id,
        )
        await conn.execute(
            "INSERT INTO consent.consent_changes (consent_id, kind, purposes, recipients, org)"
            " VALUES ($1, 'granted', $2, $3, 'bench')",
            consent_id, body["purposes"], body["recipients"],
        )
    return web.json_response({"id": str(consent_id)}, status=201)


async def make_app(dsn: str) -> web.Application:
    app = web.Application()
    app[POOL] = await db.create_pool(dsn, 20)
    app.router.add_post("/v1/intakes", post)
    app.router.add_post("/v1/consents", post_consent)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    web.run_app(make_app(args.dsn), host="127.0.0.1", port=args.port, print=None,
                access_log=None)


if __name__ == "__main__":
    main()
