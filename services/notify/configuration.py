"""How an organisation is told, and its webhook endpoints: the rules and the writes that the
API (`api.py`) and the console's pages (`pages.py`) share, so that both say yes and no
alike."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence

import asyncpg

from schemas.api import EndpointIn, RecipientIn
from services.notify import domain, egress, store
from services.runtime.auth import Principal

KINDS = frozenset(str(k) for k in domain.Kind)
SETS_RECIPIENTS = "directory:write"
"""Who sets how any organisation is told (`PUT /v1/recipients/{org}`): the coordination."""


def may_read(principal: Principal, org: str) -> bool:
    """An organisation's settings are read by its own people and by the coordination."""
    return org == principal.org or SETS_RECIPIENTS in principal.scopes


def manages_endpoints(principal: Principal, org: str) -> bool:
    """Webhook endpoints are registered and stopped by their organisation alone."""
    return org == principal.org and "notification:write" in principal.scopes


class MutedRefused(Exception):
    """Kinds that are not kinds of message, or that cannot be muted."""

    def __init__(self, unknown: list[str], mandatory: list[str]) -> None:
        super().__init__(f"unknown {unknown}, mandatory {mandatory}")
        self.unknown, self.mandatory = unknown, mandatory


def refused_muted(muted: Iterable[str]) -> tuple[list[str], list[str]]:
    """(unknown kinds, kinds that cannot be muted) among `muted`."""
    wanted = set(muted)
    return sorted(wanted - KINDS), sorted(wanted & {str(k) for k in domain.MANDATORY})


Notice = tuple[list[str], str, str]
"""An email to send once the change is written: (addresses, subject, text)."""


async def set_recipient(pool: asyncpg.Pool, org: str, body: RecipientIn,
                        who: str) -> tuple[asyncpg.Record | None, Notice | None]:
    """Set how `org` is told; None when it is not in the directory. When the addresses that
    receive its referrals change, the notice to its team mailbox, old and new (`who` did
    it): each address of its domain gets magic links."""
    unknown, mandatory = refused_muted(body.muted)
    if unknown or mandatory:
        raise MutedRefused(unknown, mandatory)
    async with pool.acquire() as conn, conn.transaction():
        before = await store.recipient(conn, org, lock=True)
        row = await store.set_recipient(
            conn, org, str(body.email), [str(c) for c in body.counsellors],
            sorted({str(c) for c in body.channels}), sorted(set(body.muted)))
    if before is None or row is None:
        return row, None
    said = domain.addresses_changed(row["name"], [before["email"], *before["counsellors"]],
                                    [row["email"], *row["counsellors"]], who)
    if said is None:
        return row, None
    return row, (list(dict.fromkeys([before["email"], row["email"]])), *said)


class EndpointRefused(Exception):
    """An endpoint URL that may not be registered: `reason` (the API's words); `host` is
    the name or address it points to when it is inside (None when it is no http(s) URL)."""

    def __init__(self, reason: str, host: str | None) -> None:
        super().__init__(reason)
        self.reason, self.host = reason, host


class UnknownKinds(Exception):
    def __init__(self, kinds: list[str]) -> None:
        super().__init__(", ".join(kinds))
        self.kinds = kinds


async def add_endpoint(db: store.Db, allowed: Sequence[str], org: str,
                       body: EndpointIn) -> tuple[asyncpg.Record, str]:
    """Register an endpoint of `org` (public addresses only: `egress.refused_url`); its row
    and its secret, which is never shown again."""
    try:
        host, _port = domain.webhook_target(body.url)
    except ValueError as exc:
        raise EndpointRefused(str(exc), None) from exc
    refused = await egress.refused_url(body.url, allowed, unresolved_ok=True)
    if refused:
        raise EndpointRefused(refused, host)
    unknown = sorted(set(body.kinds) - KINDS)
    if unknown:
        raise UnknownKinds(unknown)
    secret = domain.new_secret()
    row = await store.insert_endpoint(db, uuid.uuid4(), org, body.url, secret,
                                      sorted(set(body.kinds)))
    return row, secret
