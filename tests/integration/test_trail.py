"""The consent trail on a real PostgreSQL: the database itself refuses changes; an export
verifies offline; rows changed or deleted behind the database's back are found and named."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import rfc8785

from services.consent import merkle, trail, trail_store
from services.runtime.app import RUNTIME
from tests.conftest import wait_until
from tests.e2e.conftest import Tokens
from tests.integration.conftest import Client

SCOPES = "intake:write consent:write people:read audit:read"
INTAKE = {"site": "qpv-etouvie", "channel": "mobile_permanence",
          "contacted_at": "2026-11-20T10:00:00+01:00", "needs": ["employment"],
          "identity": {"first_name": "Léa"}}


async def fill(client: Client, tokens: Tokens, people: int = 3, before: int = 0) -> list[str]:
    """Consents for some people, and a read of each one's data (logged into the trail), after
    `before` entries already there."""
    persons = []
    for _ in range(people):
        headers = tokens.headers("equipe-aller-vers", SCOPES,
                                 **{"Idempotency-Key": str(uuid.uuid4())})
        intake = await (await client.post("/v1/intakes", json=INTAKE, headers=headers)).json()
        person = intake["person_id"]
        response = await client.post("/v1/consents", headers=tokens.headers(
            "equipe-aller-vers", SCOPES, **{"Idempotency-Key": str(uuid.uuid4())}), json={
            "person_id": person, "purposes": ["referral_partner"],
            "recipients": ["mission-locale"], "categories": ["identity"],
            "notice_version": "2026-01", "method": "signed_screen", "captured_by": "x"})
        assert response.status == 201
        read = await client.get(f"/v1/people/{person}", headers=tokens.headers(
            "equipe-aller-vers", SCOPES))
        assert read.status == 200
        persons.append(person)
    pool = client.app[RUNTIME].pool

    async def all_in_and_signed() -> bool:
        size = await pool.fetchval("SELECT count(*) FROM consent.trail")
        signed = await pool.fetchval("SELECT max(size) FROM consent.checkpoints")
        return bool(size == before + 2 * people and signed == size)

    await wait_until(all_in_and_signed, 30, "the trail to hold and sign every entry")
    return persons


async def export(client: Client, tokens: Tokens, path: Path) -> Path:
    response = await client.get("/v1/audit/consent-trail/export",
                                headers=tokens.headers("cnil", "audit:read"))
    assert response.status == 200
    path.write_bytes(await response.read())
    return path


def verify(export_file: Path, key_file: Path | None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", "audit", "verify", str(export_file),
         *(["--key", str(key_file)] if key_file else [])],
        capture_output=True, text=True)


@pytest.fixture
async def keys(client: Client, tmp_path: Path) -> Path:
    path = tmp_path / "keys.json"
    path.write_text(await (await client.get("/v1/audit/keys")).text())
    return path


async def test_the_database_refuses_to_change_the_trail(client: Client, tokens: Tokens) -> None:
    await fill(client, tokens, 1)
    pool = client.app[RUNTIME].pool
    for statement in ("UPDATE consent.trail SET entry = 'x'", "DELETE FROM consent.trail",
                      "TRUNCATE consent.trail", "DELETE FROM consent.checkpoints"):
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await pool.execute(statement)


async def test_an_export_verifies_offline_and_logs_who_read_what(
    client: Client, tokens: Tokens, tmp_path: Path, keys: Path
) -> None:
    persons = await fill(client, tokens)
    result = verify(await export(client, tokens, tmp_path / "trail.jsonl"), keys)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("OK: 6 entries")
    text = (tmp_path / "trail.jsonl").read_text()
    assert "Léa" not in text, "no personal data in the trail"
    log = await (await client.get(f"/v1/audit/access-log?person_id={persons[0]}",
                                  headers=tokens.headers("cnil", "audit:read"))).json()
    [read] = log["reads"]
    assert read["org"] == "equipe-aller-vers" and read["categories"] == ["contact", "identity",
                                                                         "note"]


async def test_consents_recorded_side_by_side_make_one_chain(
    client: Client, tokens: Tokens, tmp_path: Path, keys: Path
) -> None:
    """The trail's head is read under its append lock (consent.trail_append): consents
    recorded at once are appended one after the other, each on the one before."""
    async def one() -> int:
        headers = tokens.headers("equipe-aller-vers", SCOPES,
                                 **{"Idempotency-Key": str(uuid.uuid4())})
        intake = await (await client.post("/v1/intakes", json=INTAKE, headers=headers)).json()
        response = await client.post("/v1/consents", headers=tokens.headers(
            "equipe-aller-vers", SCOPES, **{"Idempotency-Key": str(uuid.uuid4())}), json={
            "person_id": intake["person_id"], "purposes": ["referral_partner"],
            "recipients": ["mission-locale"], "categories": ["identity"],
            "notice_version": "2026-01", "method": "signed_screen", "captured_by": "x"})
        return response.status

    assert await asyncio.gather(*(one() for _ in range(24))) == [201] * 24
    pool = client.app[RUNTIME].pool
    assert [r["seq"] for r in await pool.fetch("SELECT seq FROM consent.trail ORDER BY seq")
            ] == list(range(24))

    async def signed() -> bool:
        return bool(await pool.fetchval("SELECT max(size) FROM consent.checkpoints") == 24)

    await wait_until(signed, 30, "the checkpoint of the whole trail")
    result = verify(await export(client, tokens, tmp_path / "trail.jsonl"), keys)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("OK: 24 entries")


FIELDS: dict[str, Any] = {
    "A": 1, "pre": "\u0001", "prevs": ["é", '"prev":""'], "q": {"z": None, "b": 1.5, "a": [2]},
    "r\u00e9": True, "sez": "x", "t": "\\", "\U0001f600": "😀", "\uffff": -0.0, "Z": 10**15}
"""Keys that sort before, between and after `prev` and `seq` (in UTF-16, as RFC 8785 says: the
emoji's surrogates before U+FFFF), values JSON escapes."""


async def test_the_database_writes_each_entry_as_python_encodes_it(client: Client) -> None:
    """consent.trail_append writes an entry around its `prev` and `seq`, from the empty trail
    on: byte for byte the entry `trail.encode_entry` makes, with its leaf hash."""
    pool, person = client.app[RUNTIME].pool, uuid.uuid4()
    appended: list[list[tuple[str, uuid.UUID | None, dict[str, Any]]]] = [
        [("test.first", None, FIELDS), ("test.second", person, {"b": 2})],
        [("test.third", person, FIELDS)]]
    for items in appended:
        async with pool.acquire() as conn, conn.transaction():
            await trail_store.append(conn, items)
    rows = await pool.fetch("SELECT seq, entry, leaf_hash, person_id FROM consent.trail"
                            " ORDER BY seq")
    assert [r["seq"] for r in rows] == [0, 1, 2]
    prev = None
    for row, (kind, person_id, fields) in zip(rows, itertools.chain(*appended), strict=True):
        at = datetime.fromisoformat(json.loads(row["entry"])["at"])
        assert row["entry"] == trail.encode_entry(row["seq"], prev, at, kind, fields)
        assert row["leaf_hash"] == merkle.leaf_hash(row["entry"])
        assert row["person_id"] == person_id
        prev = row["leaf_hash"]
    with pytest.raises(ValueError, match="cannot hold"):
        trail.entry_parts(datetime.now(UTC), "test.bad", {"seq": 1})


async def _tamper(client: Client, statement: str, *args: Any) -> None:
    """What someone with the database's superuser could do behind the application's back."""
    async with client.app[RUNTIME].pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")  # triggers off
        await conn.execute(statement, *args)


async def test_a_changed_entry_is_found_and_named(client: Client, tokens: Tokens,
                                                  tmp_path: Path, keys: Path) -> None:
    await fill(client, tokens)
    entry = await client.app[RUNTIME].pool.fetchval(
        "SELECT entry FROM consent.trail WHERE seq = 2")
    forged = json.loads(entry) | {"recipients": ["france-travail"]}
    await _tamper(client, "UPDATE consent.trail SET entry = $1 WHERE seq = 2",
                  json.dumps(forged).encode())
    result = verify(await export(client, tokens, tmp_path / "t.jsonl"), keys)
    assert result.returncode == 1
    assert "entry 2 was altered" in result.stdout


async def test_a_changed_last_entry_is_named_by_its_checkpoint(
    client: Client, tokens: Tokens, tmp_path: Path, keys: Path
) -> None:
    """No entry follows the last one: its signed checkpoint alone shows the change."""
    await fill(client, tokens)
    last = await client.app[RUNTIME].pool.fetchval("SELECT max(seq) FROM consent.trail")
    entry = await client.app[RUNTIME].pool.fetchval(
        "SELECT entry FROM consent.trail WHERE seq = $1", last)
    await _tamper(client, "UPDATE consent.trail SET entry = $1 WHERE seq = $2",
                  json.dumps(json.loads(entry) | {"org": "ailleurs"}).encode(), last)
    result = verify(await export(client, tokens, tmp_path / "t.jsonl"), keys)
    assert result.returncode == 1
    assert f"entry {last} was altered (checkpoint {last + 1} no longer matches" in result.stdout


async def test_a_deleted_entry_is_found_and_named(client: Client, tokens: Tokens,
                                                  tmp_path: Path, keys: Path) -> None:
    await fill(client, tokens)
    await _tamper(client, "DELETE FROM consent.trail WHERE seq = 3")
    result = verify(await export(client, tokens, tmp_path / "t.jsonl"), keys)
    assert result.returncode == 1
    assert "entry 3 is missing" in result.stdout


async def test_a_forged_checkpoint_or_a_foreign_key_is_refused(
    client: Client, tokens: Tokens, tmp_path: Path, keys: Path
) -> None:
    await fill(client, tokens, 2)
    path = await export(client, tokens, tmp_path / "t.jsonl")
    lines = path.read_text().splitlines()
    last = json.loads(lines[-1])
    lines[-1] = json.dumps(last | {"root": "00" * 32})
    (tmp_path / "forged.jsonl").write_text("\n".join(lines))
    result = verify(tmp_path / "forged.jsonl", keys)
    assert result.returncode == 1 and "signature" in result.stdout
    other = tmp_path / "other-keys.json"
    other.write_text(json.dumps({"keys": [{**json.loads(keys.read_text())["keys"][0],
                                           "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}))
    assert verify(path, other).returncode == 1


async def test_entries_and_checkpoints_come_with_proofs_an_auditor_can_check(
    client: Client, tokens: Tokens, keys: Path
) -> None:
    persons = await fill(client, tokens, 2)
    pool = client.app[RUNTIME].pool
    await client.post("/v1/consents", headers=tokens.headers(
        "equipe-aller-vers", SCOPES, **{"Idempotency-Key": str(uuid.uuid4())}), json={
        "person_id": persons[0], "purposes": ["recontact"], "recipients": ["ccas"],
        "categories": ["contact"], "notice_version": "2026-01", "method": "signed_paper",
        "captured_by": "x"})

    async def second_checkpoint() -> bool:
        return bool(await pool.fetchval("SELECT count(*) FROM consent.checkpoints") >= 2
                    and await pool.fetchval("SELECT max(size) FROM consent.checkpoints") == 5)

    await wait_until(second_checkpoint, 30, "a checkpoint covering the new entry")
    auditor = tokens.headers("cnil", "audit:read")
    key = trail.public_key_of(json.loads(keys.read_text())["keys"][0])

    extract = await (await client.get(f"/v1/audit/consent-trail?person_id={persons[0]}",
                                      headers=auditor)).json()
    head = extract["checkpoint"]
    key.verify(base64.b64decode(head["signature"]), trail.checkpoint_payload(
        head["size"], bytes.fromhex(head["root"]), head["signed_at"], head["kid"]))
    assert [e["entry"]["kind"] for e in extract["entries"]] == [
        "consent.granted", "personal_data.read", "consent.granted"]
    for item in extract["entries"]:
        leaf = merkle.leaf_hash(rfc8785.dumps(item["entry"]))
        assert leaf.hex() == item["leaf_hash"]
        assert merkle.verify_inclusion(item["seq"], head["size"], leaf,
                                       [bytes.fromhex(p) for p in item["inclusion_proof"]],
                                       bytes.fromhex(head["root"]))

    heads = (await (await client.get("/v1/audit/checkpoints", headers=auditor)).json())["items"]
    for old, new in itertools.pairwise(heads):
        assert new["consistency_from"] == old["size"]
        assert merkle.verify_consistency(old["size"], new["size"], bytes.fromhex(old["root"]),
                                         bytes.fromhex(new["root"]),
                                         [bytes.fromhex(p) for p in new["consistency_proof"]])


async def test_erasing_a_person_leaves_the_trail_whole(client: Client, tokens: Tokens,
                                                       tmp_path: Path, keys: Path) -> None:
    persons = await fill(client, tokens, 2)
    erased = await client.delete(f"/v1/people/{persons[0]}", headers=tokens.headers(
        "equipe-aller-vers", "people:erase"))
    assert erased.status == 204
    result = verify(await export(client, tokens, tmp_path / "t.jsonl"), keys)
    assert result.returncode == 0, result.stdout
    assert persons[0] in (tmp_path / "t.jsonl").read_text(), "pseudonymous ids stay"


async def test_a_rotated_key_signs_from_then_on_and_the_old_signatures_still_verify(
    client: Client, tokens: Tokens, settings: Any, tmp_path: Path
) -> None:
    """Issue #14: `relais audit rotate-key` (the command, as the operator runs it, while
    Relais serves): the old key's private half is destroyed, its public half still
    published; an export with checkpoints by both keys verifies."""
    await fill(client, tokens, 1)
    pool = client.app[RUNTIME].pool
    [old] = [r["kid"] for r in await pool.fetch("SELECT DISTINCT kid FROM consent.checkpoints")]
    env = os.environ | {"RELAIS_DATABASE_URL": settings.database_url,
                        "RELAIS_DATA_DIR": str(settings.data_dir), "RELAIS_LOG_LEVEL": "ERROR"}
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "services.cli", "audit", "rotate-key"],
        env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"Retired: {old}" in done.stdout
    retired = await pool.fetchrow("SELECT sealed_key, private_key, retired_at FROM"
                                  " consent.audit_keys WHERE kid = $1", old)
    assert retired["sealed_key"] is None and retired["private_key"] is None
    assert retired["retired_at"] is not None
    await fill(client, tokens, 1, before=2)  # signed by the new key

    async def both() -> bool:
        return bool(await pool.fetchval("SELECT count(DISTINCT kid) FROM consent.checkpoints")
                    == 2)

    await wait_until(both, 30, "a checkpoint signed by the new key")
    keys = tmp_path / "keys.json"
    published = await (await client.get("/v1/audit/keys")).text()
    keys.write_text(published)
    assert old in published, "the retired key's public half stays published"
    result = verify(await export(client, tokens, tmp_path / "trail.jsonl"), keys)
    assert result.returncode == 0, result.stdout + result.stderr


async def test_rotating_under_another_master_key_changes_nothing(
    client: Client, tokens: Tokens, settings: Any, tmp_path: Path
) -> None:
    """Run without the services' master key, `relais audit rotate-key` would seal the new key
    under a key nobody has and destroy the old ones: it refuses, and nothing is retired."""
    await fill(client, tokens, 1)
    pool = client.app[RUNTIME].pool
    before = [dict(r) for r in await pool.fetch("SELECT kid, retired_at FROM consent.audit_keys")]
    env = os.environ | {"RELAIS_DATABASE_URL": settings.database_url,
                        "RELAIS_DATA_DIR": str(tmp_path / "elsewhere"), "RELAIS_LOG_LEVEL": "ERROR"}
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "services.cli", "audit", "rotate-key"],
        env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "nothing was changed" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert [dict(r) for r in await pool.fetch(
        "SELECT kid, retired_at FROM consent.audit_keys")] == before
