"""Issue #14, point 3: the master key changes while Relais serves. Restarted with the new key
as RELAIS_MASTER_KEY and the old one as RELAIS_PREVIOUS_MASTER_KEY, Relais opens what either
sealed and seals only under the new one; `relais master-key rewrap` seals everything again
(people's keys, signal hints, second-factor secrets, token and trail signing keys, each
schema's derivation root) in batches while intakes keep coming, and can stop and go on; then
the old key can go: Relais serves with the new key alone, the codes, cards, links and name
index derived from the root have not changed, and the old key opens nothing any more."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
from typing import Any

import pytest

from services.auth import totp
from services.auth.api import KEYS
from services.cli import SERVICE_NAMES, sealed_columns, service_specs
from services.consent import trail_store
from services.intake import api as intake_api
from services.intake import card, names
from services.runtime import db, links, offline, rewrap, sealing
from services.runtime.app import RUNTIME
from services.runtime.settings import Settings
from tests.conftest import wait_until
from tests.e2e.conftest import Tokens
from tests.integration.conftest import running
from tests.integration.test_intake import IDENTITY, INTAKE, get, post
from tests.integration.test_totp import Clock, enrol

HINT = "Un jeune au city stade le mercredi"
SIGNAL = {"relay_kind": "sports_club", "relay_name": "US Étouvie foot", "commune": "80021",
          "age_bracket": "16_17", "needs": ["training"], "hint": HINT}


def with_keys(settings: Settings, master: bytes, previous: bytes | None = None) -> Settings:
    return settings.model_copy(update={
        "master_key": base64.b64encode(master).decode(),
        "previous_master_key": None if previous is None else base64.b64encode(previous).decode()})


def derived(ring: sealing.Keyring) -> tuple[bytes, ...]:
    """Everything derived from the root: what people and devices hold depends on it."""
    return (names.key(ring), card.key(ring), links.key(ring),
            offline.public_jwk(ring)["kid"].encode())


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAIS_")} | {
        "RELAIS_DATABASE_URL": str(settings.database_url),
        "RELAIS_DATA_DIR": str(settings.data_dir), "RELAIS_LOG_LEVEL": "ERROR"}
    for name in ("master_key", "previous_master_key"):
        if value := getattr(settings, name):
            env[f"RELAIS_{name.upper()}"] = value
    return subprocess.run([sys.executable, "-m", "services.cli", *args], env=env,
                          capture_output=True, text=True, timeout=300, check=False)


async def columns_left(pool: Any, ring: sealing.Keyring) -> dict[str, tuple[int, int]]:
    """Per sealed column: (rows not under the ring's current key, rows sealed at all)."""
    found = {}
    for schema, column in (rewrap.DERIVED, *sealed_columns(service_specs(SERVICE_NAMES))):
        total = await pool.fetchval(f'SELECT count({column.column}) FROM "{schema}".'
                                    f'"{column.table}"')
        found[f"{schema}.{column.table}.{column.column}"] = (
            await rewrap.left(pool, schema, column, ring.prefix), total)
    return found


async def test_the_master_key_changes_while_relais_serves(settings: Settings) -> None:
    # Before: one master key (made in the data directory), data sealed in every column.
    async with running(settings) as client:
        tokens = Tokens(await client.app[KEYS].signing(), settings)
        met = [(await post(client, tokens, "/v1/intakes", INTAKE | {"identity": IDENTITY}))[
            "person_id"] for _ in range(3)]
        person = met[0]
        signal = (await post(client, tokens, "/v1/signals", SIGNAL))["id"]
        secret = await enrol(client, Clock(client))
        pool = client.app[RUNTIME].pool

        async def trail_key() -> bool:
            return bool(await pool.fetchval("SELECT count(*) FROM consent.audit_keys"))

        await wait_until(trail_key, 30, "the trail's checkpoint key")
        before = derived(client.app[RUNTIME].keyring())
    old, new = sealing.master_key(settings), sealing.new_key()

    # The rotation: restarted with the new key, the old one as the previous.
    rotating = with_keys(settings, new, previous=old)
    async with running(rotating) as client:
        runtime = client.app[RUNTIME]
        pool, ring = runtime.pool, runtime.keyring()
        assert ring.current == new and derived(ring) == before
        tokens = Tokens(await client.app[KEYS].signing(), rotating)  # opened with the old key
        read = await (await get(client, tokens, f"/v1/people/{person}")).json()
        assert read["identity"]["last_name"] == IDENTITY["last_name"]
        started = await columns_left(pool, ring)
        assert all(total > 0 for _, total in started.values()), (
            f"every sealed column has something to seal again: {started}")
        assert started["intake.people.wrapped_key"] == (3, 3)

        posted: list[str] = []
        stop = asyncio.Event()

        async def load() -> None:  # intakes keep coming during the rewrap
            while not stop.is_set():
                body = INTAKE | {"identity": IDENTITY | {"first_name": f"P{len(posted)}"}}
                posted.append((await post(client, tokens, "/v1/intakes", body))["person_id"])
                await asyncio.sleep(0.01)

        async def some_posted() -> bool:
            return len(posted) >= 3

        loading = asyncio.create_task(load())
        await wait_until(some_posted, 30, "intakes posted during the rotation")
        people = service_specs(["intake"])[0].sealed[0]
        first = await rewrap.rewrap(pool, "intake", people, ring, batch=1, max_batches=1)
        assert (first.resealed, first.unopened) == (1, 0)
        assert await rewrap.left(pool, "intake", people, ring.prefix) == 2, (
            "stopped after one batch; the people met since are under the new key already")
        done = await asyncio.to_thread(cli, rotating, "master-key", "rewrap", "--batch", "2")
        assert done.returncode == 0, done.stderr
        assert "RELAIS_PREVIOUS_MASTER_KEY (or its _FILE or _COMMAND) can be removed" in (
            done.stdout)
        stop.set()
        await loading
        assert len(posted) >= 3
        assert {name: left for name, (left, _) in (await columns_left(pool, ring)).items()
                if left} == {}, "everything under the new key"
        status = await asyncio.to_thread(cli, rotating, "master-key", "status")
        assert status.returncode == 0 and "intake.people.wrapped_key: 0 not yet" in (
            status.stdout), status.stdout + status.stderr

    # After: the new key alone serves everything; the old one opens nothing.
    after = with_keys(settings, new)
    async with running(after) as client:
        runtime = client.app[RUNTIME]
        ring = runtime.keyring()
        assert ring.previous is None and derived(ring) == before
        tokens = Tokens(await client.app[KEYS].signing(), after)
        for someone in (*met, *posted):
            read = await (await get(client, tokens, f"/v1/people/{someone}")).json()
            assert read["identity"]["last_name"] == IDENTITY["last_name"], someone
        hint = await runtime.pool.fetchval("SELECT hint FROM intake.signals WHERE id = $1::uuid",
                                           signal)
        assert ring.open(hint, intake_api.HINT_CONTEXT.format(signal)).decode() == HINT
        user = await runtime.pool.fetchrow("SELECT id, totp_secret FROM auth.users")
        assert totp.open_secret(runtime.keyring(), user["id"],
                                user["totp_secret"]) == secret
        await trail_store.signing_key(runtime.pool, runtime.keyring())
        with pytest.raises(sealing.SealError):
            sealing.Keyring.single(old).open(hint, intake_api.HINT_CONTEXT.format(signal))

    seen = await asyncio.to_thread(cli, with_keys(settings, old), "master-key", "status")
    assert seen.returncode == 0 and "intake.people.wrapped_key: 0 not yet" not in seen.stdout
    assert "sealed under another key than the current one" in seen.stdout, seen.stdout
    with pytest.raises(sealing.MasterKeyUnavailable):
        async with running(with_keys(settings, old)):
            pass
    conn = await db.connect(str(settings.database_url))
    try:
        kept = [sealing.Keyring.single(new).open(r["sealed"], f"derived-key/{r['info']}")
                for r in await conn.fetch("SELECT info, sealed FROM relais_keys.derived")]
        assert kept and old not in kept and new not in kept, "no master key is kept, sealed"
        await conn.execute("DELETE FROM relais_keys.derived")  # as before an upgrade to them
    finally:
        await conn.close()
    with pytest.raises(sealing.MasterKeyUnavailable, match="does not open what the"):
        async with running(with_keys(settings, sealing.new_key())):  # a key that sealed nothing
            pass
