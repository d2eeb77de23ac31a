"""The baseline: a bare aiohttp endpoint doing the same two inserts as `POST /v1/intakes`
(the intake row and its outbox row, in one transaction), without token check, validation,
idempotency or events."""

from __future__ import annotations

import argparse
import json
import uuid

import asyncpg
from aiohttp import web

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


async def make_app(dsn: str) -> web.Application:
    app = web.Application()
    app[POOL] = await db.create_pool(dsn, 20)
    app.router.add_post("/v1/intakes", post)
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
