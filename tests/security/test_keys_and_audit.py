"""Keys and the audit trail against a real Relais: `relais audit verify` never says OK
without a trusted key (an export re-signed with a forger's key would pass on its own
keys); the private keys that sign tokens and checkpoints are sealed under the master key in
PostgreSQL (plaintext rows left by an older version are sealed at start); `relais client
create` refuses an organisation the directory does not know."""

from __future__ import annotations

import argparse
import base64
import json
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import rfc8785
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from joserfc import jwt
from joserfc.jwk import OKPKey

from services.auth.api import KEYS
from services.cli import SERVICE_NAMES, client_command, service_specs
from services.consent import merkle, trail
from services.runtime.app import RUNTIME, create_app
from services.runtime.settings import Settings
from tests.e2e.conftest import Tokens
from tests.integration.conftest import Client
from tests.integration.test_oauth import get_token, new_client, read_intake
from tests.integration.test_trail import export, fill, verify


async def keys_file(client: Client, path: Path) -> Path:
    path.write_text(await (await client.get("/v1/audit/keys")).text())
    return path


def forge(export_file: Path, out: Path, key: Ed25519PrivateKey, kid: str) -> Path:
    """What someone who can rewrite an export does: change an entry, rebuild the chain and
    the tree heads, sign them with their own key and ship that key inside."""
    tree, lines = merkle.Frontier(), []
    for line in export_file.read_text().splitlines():
        item = json.loads(line)
        if item["type"] == "keys":
            lines.append(trail.keys_line([trail.public_jwk(kid, key.public_key())]))
        elif item["type"] == "entry":
            body = json.loads(item["entry"])
            if body["seq"] == 0:
                body["recipients"] = ["france-travail"]
            body["prev"] = tree.last
            text = rfc8785.dumps(body)
            tree.append(merkle.leaf_hash(text))
            lines.append(trail.entry_line(text))
        elif item["type"] == "checkpoint":
            root = tree.root()
            signature = trail.sign_checkpoint(key, tree.size, root, item["signed_at"], kid)
            lines.append(trail.checkpoint_line(tree.size, root, item["signed_at"], kid,
                                               signature))
    out.write_text("\n".join(lines) + "\n")
    return out


# --- 4. audit verify --------------------------------------------------------------------------

async def test_audit_verify_without_a_trusted_key_never_says_ok(
    client: Client, tokens: Tokens, tmp_path: Path
) -> None:
    await fill(client, tokens, 2)
    honest = await export(client, tokens, tmp_path / "trail.jsonl")
    real_keys = await keys_file(client, tmp_path / "keys.json")
    real_kid = json.loads(real_keys.read_text())["keys"][0]["kid"]

    for kid in ("forger-1", real_kid):
        forged = forge(honest, tmp_path / f"forged-{kid}.jsonl", Ed25519PrivateKey.generate(),
                       kid)
        alone = verify(forged, None)
        assert not alone.stdout.startswith("OK"), alone.stdout
        assert alone.returncode == 3, alone.stdout + alone.stderr
        assert "NOT VERIFIED" in alone.stdout and "--key" in alone.stdout
        checked = verify(forged, real_keys)
        assert checked.returncode == 1 and checked.stdout.startswith("FAILED"), checked.stdout

    plain = verify(honest, None)
    assert plain.returncode == 3 and plain.stdout.startswith("NOT VERIFIED"), plain.stdout
    assert "signatures" in plain.stdout
    assert verify(honest, real_keys).stdout.startswith("OK")

    # An entry cut out, and the checkpoints with it (which would otherwise tell first, or
    # not, depending on where the signer happened to sign): the chain alone tells.
    lines = [line for line in honest.read_text().splitlines()
             if json.loads(line)["type"] != "checkpoint"]
    entries = [n for n, line in enumerate(lines) if json.loads(line)["type"] == "entry"]
    assert len(entries) == 4  # two consents and two reads, all signed (`fill`)
    del lines[entries[1]]
    (tmp_path / "cut.jsonl").write_text("\n".join(lines))
    cut = verify(tmp_path / "cut.jsonl", None)
    assert cut.returncode == 1 and "entry 1 is missing" in cut.stdout, "the chain is checked"


# --- 5. sealed private keys -------------------------------------------------------------------

def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


async def _auth_rows(pool: asyncpg.Pool) -> list[str]:
    return [r[0] for r in await pool.fetch("SELECT row_to_json(k)::text FROM auth.signing_keys k")]


async def _audit_private_keys_in_clear(pool: asyncpg.Pool,
                                       published: list[dict[str, Any]]) -> list[str]:
    """The kids of audit keys whose private key a row holds in clear: any 32-byte value of
    the row that is the private key of the published public key."""
    public = {k["kid"]: k["x"] for k in published}
    found = []
    for row in await pool.fetch("SELECT * FROM consent.audit_keys"):
        for value in row.values():
            if isinstance(value, bytes) and len(value) == 32:
                derived = Ed25519PrivateKey.from_private_bytes(value).public_key()
                if _b64url(derived.public_bytes_raw()) == public.get(row["kid"]):
                    found.append(row["kid"])
    return found


async def test_private_keys_are_sealed_in_the_database(client: Client, tokens: Tokens,
                                                       tmp_path: Path) -> None:
    pool = client.app[RUNTIME].pool
    d = str((await client.app[KEYS].signing()).as_dict(private=True)["d"])
    rows = await _auth_rows(pool)
    assert rows and all(d not in row for row in rows), "the JWK's d is sealed"

    client_id, secret = await new_client(client, "ccas", "intake:read")
    token = (await (await get_token(client, client_id, secret)).json())["access_token"]
    assert await read_intake(client, token) == 404, "tokens still verify"

    await fill(client, tokens, 1)
    published = (await (await client.get("/v1/audit/keys")).json())["keys"]
    assert published
    assert await _audit_private_keys_in_clear(pool, published) == []
    result = verify(await export(client, tokens, tmp_path / "t.jsonl"),
                    await keys_file(client, tmp_path / "keys.json"))
    assert result.returncode == 0 and result.stdout.startswith("OK"), result.stdout


async def test_plaintext_keys_left_by_an_older_version_are_sealed_at_start(
    settings: Settings, tmp_path: Path
) -> None:
    dsn = settings.database_url
    assert dsn
    async with TestClient(TestServer(create_app(settings, dsn, service_specs(SERVICE_NAMES)),
                                     host="127.0.0.1")):
        pass  # the schemas, as a first start makes them
    legacy_jwk = OKPKey.generate_key("Ed25519", parameters={"kid": "legacy-token-key"})
    legacy_audit = Ed25519PrivateKey.generate()
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("UPDATE auth.signing_keys SET retired_at = now()")
        await conn.execute("INSERT INTO auth.signing_keys (kid, private_jwk) VALUES ($1, $2)",
                           "legacy-token-key", json.dumps(legacy_jwk.as_dict(private=True)))
        await conn.execute("INSERT INTO consent.audit_keys (kid, private_key, created_at)"
                           " VALUES ($1, $2, now() + interval '1 second')", "legacy-audit-key",
                           legacy_audit.private_bytes_raw())
    finally:
        await conn.close()

    app = create_app(settings, dsn, service_specs(SERVICE_NAMES))
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        pool = client.app[RUNTIME].pool
        d = str(legacy_jwk.as_dict(private=True)["d"])
        assert all(d not in row for row in await _auth_rows(pool)), "sealed at start"
        published = (await (await client.get("/v1/audit/keys")).json())["keys"]
        assert "legacy-audit-key" in {k["kid"] for k in published}
        assert await _audit_private_keys_in_clear(pool, published) == []

        client_id, secret = await new_client(client, "ccas", "intake:read")
        token = (await (await get_token(client, client_id, secret)).json())["access_token"]
        assert jwt.decode(token, legacy_jwk, algorithms=["EdDSA"]).header["kid"] == \
            "legacy-token-key", "the legacy key still signs"
        assert await read_intake(client, token) == 404

        tokens = Tokens(await client.app[KEYS].signing(), settings)
        await fill(client, tokens, 1)
        last = await pool.fetchrow("SELECT kid FROM consent.checkpoints ORDER BY size DESC"
                                   " LIMIT 1")
        assert last["kid"] == "legacy-audit-key"
        result = verify(await export(client, tokens, tmp_path / "t.jsonl"),
                        await keys_file(client, tmp_path / "keys.json"))
        assert result.returncode == 0 and result.stdout.startswith("OK"), result.stdout


# --- 6. client create -------------------------------------------------------------------------

async def test_client_create_refuses_an_organisation_not_in_the_directory(
    client: Client, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    def create(org: str) -> argparse.Namespace:
        return argparse.Namespace(command="client", action="create", org=org, name="tablette",
                                  scopes="intake:read")

    unknown = f"nowhere-{uuid.uuid4().hex[:6]}"
    assert await client_command(settings, create(unknown)) != 0
    out = capsys.readouterr()
    assert unknown in out.err and "directory" in out.err
    assert "client_secret" not in out.out
    pool = client.app[RUNTIME].pool
    assert await pool.fetchval("SELECT count(*) FROM auth.clients WHERE org = $1", unknown) == 0

    assert await client_command(settings, create("equipe-aller-vers")) == 0
    assert "client_secret" in capsys.readouterr().out
