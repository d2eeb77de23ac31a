"""The auth service's SQL."""

from __future__ import annotations

from datetime import datetime
from typing import TypeAlias
from uuid import UUID

import asyncpg

from services.auth.domain import Client

SCHEMA = "auth"
Db: TypeAlias = asyncpg.Connection | asyncpg.Pool


async def insert_client(db: Db, client_id: str, secret_hash: str, org: str, name: str,
                        scopes: list[str]) -> None:
    await db.execute(
        "INSERT INTO auth.clients (client_id, secret_hash, org, name, scopes)"
        " VALUES ($1, $2, $3, $4, $5)",
        client_id, secret_hash, org, name, scopes,
    )


async def active_client(db: Db, client_id: str) -> Client | None:
    row = await db.fetchrow(
        "SELECT * FROM auth.clients WHERE client_id = $1 AND revoked_at IS NULL", client_id
    )
    if row is None:
        return None
    return Client(row["client_id"], row["secret_hash"], row["org"], frozenset(row["scopes"]))


async def list_clients(db: Db) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await db.fetch(
        "SELECT client_id, org, name, scopes, created_at, revoked_at FROM auth.clients"
        " ORDER BY created_at"
    )
    return rows


async def revoke_client(db: Db, client_id: str) -> bool:
    done = await db.fetchval(
        "UPDATE auth.clients SET revoked_at = now() WHERE client_id = $1"
        " AND revoked_at IS NULL RETURNING true",
        client_id,
    )
    return bool(done)


async def revoked_client_ids(db: Db) -> frozenset[str]:
    rows = await db.fetch("SELECT client_id FROM auth.clients WHERE revoked_at IS NOT NULL")
    return frozenset(r["client_id"] for r in rows)


async def published_keys(db: Db, token_ttl: int) -> list[asyncpg.Record]:
    """The signing key first, then retired keys whose tokens may still be valid."""
    rows: list[asyncpg.Record] = await db.fetch(
        "SELECT kid, sealed_jwk, private_jwk, retired_at FROM auth.signing_keys"
        " WHERE retired_at IS NULL OR retired_at > now() - make_interval(secs => $1)"
        " ORDER BY retired_at NULLS FIRST, created_at DESC",
        float(token_ttl),
    )
    return rows


async def add_key(db: asyncpg.Connection, kid: str, sealed_jwk: bytes) -> None:
    """Make `kid` the signing key; the previous ones are retired."""
    async with db.transaction():
        await db.execute("UPDATE auth.signing_keys SET retired_at = now()"
                         " WHERE retired_at IS NULL")
        await db.execute("INSERT INTO auth.signing_keys (kid, sealed_jwk) VALUES ($1, $2)",
                         kid, sealed_jwk)


async def keys_in_clear(db: Db) -> list[asyncpg.Record]:
    """Keys an older version stored unsealed."""
    rows: list[asyncpg.Record] = await db.fetch(
        "SELECT kid, private_jwk FROM auth.signing_keys WHERE private_jwk IS NOT NULL")
    return rows


async def seal_key(db: Db, kid: str, sealed_jwk: bytes) -> None:
    await db.execute("UPDATE auth.signing_keys SET sealed_jwk = $2, private_jwk = NULL"
                     " WHERE kid = $1", kid, sealed_jwk)


# --- personal accounts --------------------------------------------------------------------

async def insert_user(db: Db, user_id: UUID, email: str, name: str, org: str,
                      role: str) -> None:
    await db.execute(
        "INSERT INTO auth.users (id, email, name, org, role) VALUES ($1, lower($2), $3, $4, $5)",
        user_id, email, name, org, role)


async def user_by_email(db: Db, email: str, lock: bool = False) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await db.fetchrow(
        "SELECT * FROM auth.users WHERE email = lower($1)" + (" FOR UPDATE" if lock else ""),
        email)
    return row


async def list_users(db: Db) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await db.fetch(
        "SELECT email, name, org, role, created_at, disabled_at, password_hash IS NOT NULL"
        " AS activated, totp_enabled_at IS NOT NULL AS second_factor"
        " FROM auth.users ORDER BY org, email")
    return rows


async def record_attempt(db: Db, user_id: UUID, failures: int,
                         locked_until: datetime | None) -> None:
    await db.execute("UPDATE auth.users SET failed_logins = $2, locked_until = $3"
                     " WHERE id = $1", user_id, failures, locked_until)


async def disable_user(db: Db, email: str) -> bool:
    """Disable the account and end its sessions, and those of the magic links sent to its
    address."""
    user_id = await db.fetchval(
        "UPDATE auth.users SET disabled_at = now() WHERE email = lower($1)"
        " AND disabled_at IS NULL RETURNING id", email)
    if user_id is None:
        return False
    await end_sessions(db, user_id)
    await db.execute("UPDATE auth.links SET revoked_at = now(), revoked_why = 'account"
                     " disabled' WHERE email = lower($1) AND revoked_at IS NULL", email)
    return True


async def insert_invitation(db: Db, digest: bytes, user_id: UUID,
                            expires_at: datetime) -> None:
    await db.execute("INSERT INTO auth.invitations (token_hash, user_id, expires_at)"
                     " VALUES ($1, $2, $3)", digest, user_id, expires_at)


async def open_invitation(db: Db, digest: bytes) -> asyncpg.Record | None:
    """The invitation with its user, while it is unused, in date and the account enabled."""
    row: asyncpg.Record | None = await db.fetchrow(
        "SELECT i.token_hash, u.* FROM auth.invitations i JOIN auth.users u"
        " ON u.id = i.user_id WHERE i.token_hash = $1 AND i.used_at IS NULL"
        " AND i.expires_at > now() AND u.disabled_at IS NULL", digest)
    return row


async def accept_invitation(conn: asyncpg.Connection, digest: bytes, user_id: UUID,
                            password_hash: str) -> bool:
    used = await conn.fetchval(
        "UPDATE auth.invitations SET used_at = now() WHERE token_hash = $1"
        " AND used_at IS NULL AND expires_at > now() RETURNING true", digest)
    if not used:
        return False
    await conn.execute("UPDATE auth.users SET password_hash = $2, failed_logins = 0,"
                       " locked_until = NULL WHERE id = $1", user_id, password_hash)
    return True


async def insert_session(db: Db, session_id: UUID, user_id: UUID,
                         expires_at: datetime) -> None:
    await db.execute("INSERT INTO auth.sessions (id, user_id, expires_at) VALUES ($1, $2, $3)",
                     session_id, user_id, expires_at)


async def end_sessions(db: Db, user_id: UUID) -> None:
    """Log out everywhere: every open session of the person ends."""
    await db.execute("UPDATE auth.sessions SET ended_at = now() WHERE user_id = $1"
                     " AND ended_at IS NULL AND expires_at > now()", user_id)


async def session_user(db: Db, session_id: UUID) -> UUID | None:
    user_id: UUID | None = await db.fetchval(
        "SELECT user_id FROM auth.sessions WHERE id = $1", session_id)
    return user_id


async def ended_session_ids(db: Db) -> frozenset[str]:
    """Sessions ended before they expired (past expiry, their tokens are refused anyway)."""
    rows = await db.fetch("SELECT id FROM auth.sessions WHERE ended_at IS NOT NULL"
                          " AND expires_at > now()")
    return frozenset(f"session:{r['id']}" for r in rows)


async def refused_client_ids(db: Db) -> frozenset[str]:
    """Whose tokens every service refuses before they expire: revoked API clients, ended
    sessions and revoked magic links."""
    return await revoked_client_ids(db) | await ended_session_ids(db) | await revoked_links(db)


# --- magic links ----------------------------------------------------------------------------

async def open_link(conn: asyncpg.Connection, link_id: UUID, referral_id: UUID, org: str,
                    email: str, device_hash: bytes) -> asyncpg.Record:
    """The link's row, made on its first opening (bound to that device), else counted as
    opened again (or refused, from another device); locked until the transaction ends."""
    await conn.execute(
        "INSERT INTO auth.links (id, referral_id, org, email, device_hash, opened)"
        " VALUES ($1, $2, $3, lower($4), $5, 0) ON CONFLICT (id) DO NOTHING",
        link_id, referral_id, org, email, device_hash)
    row: asyncpg.Record = await conn.fetchrow(
        "UPDATE auth.links SET last_opened = now(),"
        " opened = opened + (device_hash = $2)::int, refused = refused + (device_hash <> $2)::int"
        " WHERE id = $1 RETURNING *", link_id, device_hash)
    return row


async def revoke_link(db: Db, link_id: UUID, why: str) -> None:
    await db.execute("UPDATE auth.links SET revoked_at = now(), revoked_why = $2"
                     " WHERE id = $1 AND revoked_at IS NULL", link_id, why)


async def revoked_links(db: Db) -> frozenset[str]:
    """Links revoked within their life: their sessions are refused at once."""
    rows = await db.fetch("SELECT id FROM auth.links WHERE revoked_at IS NOT NULL"
                          " AND first_opened > now() - interval '61 days'")
    return frozenset(f"link:{r['id']}" for r in rows)


async def end_session(db: Db, session_id: UUID) -> None:
    await db.execute("UPDATE auth.sessions SET ended_at = now() WHERE id = $1"
                     " AND ended_at IS NULL", session_id)


# --- the second factor (TOTP) -----------------------------------------------------------------

async def user_by_id(db: Db, user_id: UUID, lock: bool = False) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await db.fetchrow(
        "SELECT * FROM auth.users WHERE id = $1" + (" FOR UPDATE" if lock else ""), user_id)
    return row


async def start_totp(db: Db, user_id: UUID, sealed_secret: bytes) -> None:
    """Keep the secret of an enrolment that begins (a new one each time the page shows it,
    until one is switched on: a secret seen by someone else before is worth nothing)."""
    await db.execute("UPDATE auth.users SET totp_secret = $2 WHERE id = $1"
                     " AND totp_enabled_at IS NULL", user_id, sealed_secret)


async def enable_totp(db: Db, user_id: UUID, step: int) -> None:
    await db.execute("UPDATE auth.users SET totp_enabled_at = now(), totp_last_step = $2"
                     " WHERE id = $1", user_id, step)


async def used_totp_step(db: Db, user_id: UUID, step: int) -> None:
    """The step of the code just accepted: no code of it or before serves again."""
    await db.execute("UPDATE auth.users SET totp_last_step = $2 WHERE id = $1",
                     user_id, step)


async def disable_totp(db: Db, user_id: UUID) -> None:
    """No second factor any more; the codes awaited at sign-in are dropped."""
    await db.execute("UPDATE auth.users SET totp_secret = NULL, totp_enabled_at = NULL,"
                     " totp_last_step = NULL WHERE id = $1", user_id)
    await db.execute("DELETE FROM auth.pending_logins WHERE user_id = $1", user_id)


async def end_other_sessions(db: Db, user_id: UUID, keep: UUID) -> None:
    """Every open session of the person but `keep` (the one switching the second factor on)
    ends: whoever signed in with the password alone is signed out."""
    await db.execute("UPDATE auth.sessions SET ended_at = now() WHERE user_id = $1"
                     " AND id <> $2 AND ended_at IS NULL AND expires_at > now()",
                     user_id, keep)


async def reset_totp(db: Db, email: str) -> bool:
    """`relais user reset-2fa`: the second factor removed and the person's sessions ended
    (whoever holds the lost phone has no session left); False if there is no such account."""
    user_id: UUID | None = await db.fetchval(
        "SELECT id FROM auth.users WHERE email = lower($1)", email)
    if user_id is None:
        return False
    await disable_totp(db, user_id)
    await end_sessions(db, user_id)
    return True


async def unlink_oidc(db: Db, email: str) -> bool:
    """`relais user unlink-oidc`: the provider's identity unbound from the account (bound
    again at the next sign-in through the provider); False if there is no such account."""
    done = await db.fetchval(
        "UPDATE auth.users SET oidc_issuer = NULL, oidc_subject = NULL"
        " WHERE email = lower($1) RETURNING true", email)
    return bool(done)


async def insert_pending_login(db: Db, digest: bytes, user_id: UUID, suite: str,
                               expires_at: datetime) -> None:
    """A right password of an account with a second factor: its code is awaited."""
    await db.execute("DELETE FROM auth.pending_logins WHERE expires_at < now()")
    await db.execute("INSERT INTO auth.pending_logins (id_hash, user_id, suite, expires_at)"
                     " VALUES ($1, $2, $3, $4)", digest, user_id, suite, expires_at)


async def pending_login(db: Db, digest: bytes) -> asyncpg.Record | None:
    """The sign-in awaiting its code, with the account's address, while in date."""
    row: asyncpg.Record | None = await db.fetchrow(
        "SELECT p.user_id, p.suite, u.email FROM auth.pending_logins p JOIN auth.users u"
        " ON u.id = p.user_id WHERE p.id_hash = $1 AND p.expires_at > now()", digest)
    return row


async def end_pending_login(db: Db, digest: bytes) -> None:
    await db.execute("DELETE FROM auth.pending_logins WHERE id_hash = $1", digest)


# --- OpenID Connect ---------------------------------------------------------------------------

async def insert_oidc_flow(db: Db, state_hash: bytes, browser_hash: bytes, nonce: str,
                           verifier: str, suite: str, expires_at: datetime) -> None:
    """A sign-in that leaves for the OpenID provider (flows past their time are dropped)."""
    await db.execute("DELETE FROM auth.oidc_flows WHERE expires_at < now()")
    await db.execute(
        "INSERT INTO auth.oidc_flows (state_hash, browser_hash, nonce, verifier, suite,"
        " expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
        state_hash, browser_hash, nonce, verifier, suite, expires_at)


async def take_oidc_flow(db: Db, state_hash: bytes,
                         browser_hash: bytes) -> asyncpg.Record | None:
    """The sign-in this `state` came back for, in the browser that started it, while in date;
    it serves once (another browser cannot use it up)."""
    row: asyncpg.Record | None = await db.fetchrow(
        "DELETE FROM auth.oidc_flows WHERE state_hash = $1 AND browser_hash = $2"
        " AND expires_at > now() RETURNING nonce, verifier, suite", state_hash, browser_hash)
    return row


async def oidc_subject_owner(db: Db, issuer: str, subject: str) -> UUID | None:
    """The account this provider's identity is bound to, if any."""
    owner: UUID | None = await db.fetchval(
        "SELECT id FROM auth.users WHERE oidc_issuer = $1 AND oidc_subject = $2",
        issuer, subject)
    return owner


async def bind_oidc_subject(db: Db, user_id: UUID, issuer: str, subject: str) -> None:
    await db.execute("UPDATE auth.users SET oidc_issuer = $2, oidc_subject = $3 WHERE id = $1",
                     user_id, issuer, subject)
