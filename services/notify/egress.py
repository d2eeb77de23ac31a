"""Where webhooks may connect. A name is resolved once per connection, by the delivery
session's own resolver, which refuses it when any of its addresses is private, loopback,
link-local or the like (`domain.refused_addresses`, unless in an allowed network); the
connection then goes to one of exactly those addresses, and every socket checks the address it
is about to connect to (which also covers URLs naming an IP address, which aiohttp does not
resolve). DNS is not cached, redirects are not followed and no proxy is used: the address
checked is the address connected to, so a name that points inside between the check and the
connection (DNS rebinding) gets nowhere."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Callable, Sequence
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from services.notify import domain

SocketFactory = Callable[[tuple[Any, ...]], socket.socket]
"""What aiohttp's connector calls to make each socket, with the address it will connect to."""


class RefusedAddress(OSError):
    """A webhook may not connect there (a private address, not in an allowed network)."""


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


class GuardedResolver(AbstractResolver):
    """Resolves with the loop's getaddrinfo, and refuses a name any of whose addresses a
    webhook may not reach."""

    def __init__(self, allowed: Sequence[str]) -> None:
        self.allowed = list(allowed)

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        if _is_ip(host):
            self.check([host], host)
            return [ResolveResult(hostname=host, host=host, port=port, family=family, proto=0,
                                  flags=0)]
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, family=family,
                                       flags=socket.AI_ADDRCONFIG)
        if not infos:
            raise OSError(f"{host} has no address")
        self.check([str(info[4][0]) for info in infos], host)
        results: list[ResolveResult] = []
        for info_family, _, proto, _, address in infos:
            resolved, resolved_port = str(address[0]), int(address[1])
            if info_family == socket.AF_INET6 and len(address) > 3 and address[3]:
                # a scoped (link-local) address: keep its zone, as aiohttp's resolver does
                resolved, service = await loop.getnameinfo(
                    address, socket.NI_NUMERICHOST | socket.NI_NUMERICSERV)
                resolved_port = int(service)
            results.append(ResolveResult(
                hostname=host, host=resolved, port=resolved_port, family=info_family,
                proto=proto, flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV))
        return results

    def check(self, addresses: Sequence[str], host: str) -> None:
        refused = domain.refused_addresses(addresses, self.allowed)
        if refused:
            named = f"{host} resolves to" if host not in refused else f"{host} is"
            raise RefusedAddress(
                f"{named} a private address ({', '.join(dict.fromkeys(refused))})")

    async def close(self) -> None:
        """Nothing to release."""


def guarded_socket(allowed: Sequence[str]) -> SocketFactory:
    """Sockets that refuse to be made for an address a webhook may not reach: the last
    check, on the very address about to be connected to."""
    nets = list(allowed)

    def make(addr_info: tuple[Any, ...]) -> socket.socket:
        family, kind, proto, _, address = addr_info
        host = str(address[0])
        if domain.refused_addresses([host], nets):
            raise RefusedAddress(f"{host} is a private address")
        return socket.socket(family=family, type=kind, proto=proto)

    return make


def webhook_session(allowed: Sequence[str], timeout: float) -> aiohttp.ClientSession:
    """The HTTP session webhooks are delivered with (callers also pass
    `allow_redirects=False`)."""
    connector = aiohttp.TCPConnector(resolver=GuardedResolver(allowed), use_dns_cache=False,
                                     socket_factory=guarded_socket(allowed))
    return aiohttp.ClientSession(connector=connector, trust_env=False,
                                 timeout=aiohttp.ClientTimeout(total=timeout))


def failure(exc: aiohttp.ClientError | TimeoutError) -> str:
    """An attempt's error as recorded: the reason itself when an address was refused."""
    if isinstance(exc, aiohttp.ClientConnectorError) and isinstance(exc.os_error,
                                                                     RefusedAddress):
        return str(exc.os_error)
    return repr(exc)


async def refused_url(url: str, allowed: Sequence[str], unresolved_ok: bool = False
                      ) -> str | None:
    """Why an endpoint URL may not be registered (not http(s), or a name or address inside),
    or None. A name that does not resolve yet is let through when `unresolved_ok`: each
    delivery checks again, at the connection."""
    try:
        host, port = domain.webhook_target(url)
    except ValueError as exc:
        return str(exc)
    try:
        await GuardedResolver(allowed).resolve(host, port, family=socket.AF_UNSPEC)
    except RefusedAddress as exc:
        return str(exc)
    except OSError as exc:
        return None if unresolved_ok else f"cannot resolve {host}: {exc}"
    return None
