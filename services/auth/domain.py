"""Clients, secrets and scopes (no I/O)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from authlib.oauth2.rfc6749 import ClientMixin

from services.runtime.ratelimit import Buckets, SharedLimiter

SCOPES = {
    "intake:write": "record contacts (one or a batch), signals and the proof of a signed "
                    "consent",
    "intake:read": "read your organisation's (and its consortia's) contacts and signals",
    "consent:write": "record and withdraw consents, register information notices",
    "consent:read": "read consents you recorded or receive, check one covers a hand-off",
    "referral:read": "read referrals sent or received, their dossier, partners, commission",
    "referral:write": "refer by hand, answer referrals, declare places, commission decisions",
    "notification:read": "read how referrals were told, the inbox and its live stream, "
                         "webhooks",
    "notification:write": "add and remove webhook endpoints, send a delivery again",
    "audit:read": "read and export the consent trail, its checkpoints, who read what",
    "directory:write": "replace the directory, set how each organisation is told "
                       "(territory-wide)",
    "programme:write": "change the directory's part of the programmes your organisation "
                       "coordinates (their sites, permanences, organisations)",
    "people:read": "read a person's identity, contact and notes, as far as allowed (logged)",
    "people:erase": "erase a person (their key is destroyed)",
    "people:rectify": "correct a person's identity and contact details at their request "
                      "(the old values go; logged)",
    "people:restrict": "stop or resume processing a person's data at their request "
                       "(restriction, objection), without erasing it",
    "people:export": "answer a person's access request: everything Relais holds about them, "
                     "identity included, from every service (logged)",
    "stats:read": "read the anonymised statistics (JSON, CSV)",
}
"""Every scope a client may hold, and what it allows (`relais client create --help`)."""
AUTH_METHODS = ("client_secret_basic", "client_secret_post")
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}
_NO_SECRET = ("scrypt$Ae8lVx2CFzM3sU5mJz0dQw==$"
              "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
"""The hash an unknown client's secret is checked against (nothing hashes to it)."""


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def hash_secret(secret: str, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, **_SCRYPT)
    return "scrypt$" + base64.b64encode(salt).decode() + "$" + base64.b64encode(digest).decode()


def secret_matches(secret: str, stored: str) -> bool:
    try:
        _, salt, _digest = stored.split("$")
    except ValueError:
        return False
    return hmac.compare_digest(hash_secret(secret, base64.b64decode(salt)), stored)


def unknown_scopes(scopes: list[str]) -> list[str]:
    return sorted(set(scopes) - set(SCOPES))


@dataclass(frozen=True)
class Client(ClientMixin):  # type: ignore[misc]
    """An API client of one organisation, for the client-credentials grant only."""

    client_id: str
    secret_hash: str
    org: str
    scopes: frozenset[str]

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> None:
        return None

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return False

    def check_client_secret(self, client_secret: str) -> bool:
        return secret_matches(client_secret, self.secret_hash)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return endpoint == "token" and method in AUTH_METHODS

    def check_response_type(self, response_type: str) -> bool:
        return False

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "client_credentials"

    def get_allowed_scope(self, scope: str | None) -> str:
        """All the client's scopes when none is asked; else those asked that it holds."""
        if not scope:
            return " ".join(sorted(self.scopes))
        return " ".join(s for s in scope.split() if s in self.scopes)


@dataclass(frozen=True)
class UnknownClient(Client):
    """Stands for a client id that does not exist or was revoked: its secret is checked
    (scrypt) and refused like a wrong one, so neither the answer nor its time tells which
    client ids exist."""

    def check_client_secret(self, client_secret: str) -> bool:
        secret_matches(client_secret, self.secret_hash)
        return False


def unknown_client(client_id: str) -> UnknownClient:
    return UnknownClient(client_id, _NO_SECRET, "", frozenset())


@dataclass(frozen=True)
class FailureThrottle:
    """Failed client authentications at the token endpoint, per client id and per address:
    past `per_client` (or `per_address`) a minute, the next requests get 429 without a
    secret being checked, until the bucket refills."""

    by_client: SharedLimiter
    by_address: SharedLimiter

    @classmethod
    def per_minute(cls, per_client: int, per_address: int, buckets: Buckets) -> FailureThrottle:
        return cls(SharedLimiter.per_minute("auth-failures:client", per_client, buckets),
                   SharedLimiter.per_minute("auth-failures:address", per_address, buckets))

    async def wait(self, client_id: str, address: str) -> float:
        """The seconds before this client id may try again from this address (0: now)."""
        return max(await self.by_client.wait(client_id), await self.by_address.wait(address))

    async def failed(self, client_id: str, address: str) -> None:
        await self.by_client.take(client_id)
        await self.by_address.take(address)
