"""Small helpers for the thin HTTP layers: parse a body into a model, answer JSON."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, TypeVar
from uuid import UUID

import orjson
from aiohttp import web
from pydantic import BaseModel

from services.runtime.problem import Problem

M = TypeVar("M", bound=BaseModel)
MAX_DEPTH = 32
"""Arrays and objects nested deeper than this are refused: no request needs it, and the
parser and validators recurse."""


async def read_json(request: web.Request) -> Any:
    raw = await request.read()
    try:
        payload = json.loads(raw)
    except RecursionError as exc:
        raise _too_deep() from exc
    except ValueError as exc:
        raise Problem(400, "Malformed JSON", f"The body is not valid JSON: {exc}") from exc
    if _deeper_than(payload, MAX_DEPTH):
        raise _too_deep()
    bad = list(_unstorable_fields(payload, ""))
    if bad:
        raise Problem(422, "Invalid request", f"{len(bad)} invalid field(s)",
                      type_="https://relais.example/problems/validation",
                      errors=[{"field": f or "(body)", "message": "text must be valid UTF-8 "
                               "without NUL characters", "code": "invalid_text"} for f in bad])
    return payload


def _too_deep() -> Problem:
    return Problem(400, "Malformed JSON",
                   f"The body nests arrays and objects deeper than {MAX_DEPTH} levels.")


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether arrays and objects nest deeper than `limit` (without recursing)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if not isinstance(item, list):
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in item)
    return False


def unstorable_text(text: str) -> bool:
    """Whether PostgreSQL text cannot hold this (NUL, lone surrogates)."""
    return "\x00" in text or (not text.isascii() and _has_surrogate(text))


def _unstorable_fields(value: Any, path: str) -> Iterator[str]:
    """Where JSON strings hold what PostgreSQL text cannot."""
    if isinstance(value, str):
        if unstorable_text(value):
            yield path
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _unstorable_fields(key, path)
            yield from _unstorable_fields(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _unstorable_fields(item, f"{path}.{index}" if path else str(index))


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def parse(model: type[M], payload: Any) -> M:
    """Validate; a ValidationError becomes a 422 problem listing every invalid field."""
    return model.model_validate(payload)


def json_response(body: BaseModel | dict[str, Any], status: int = 200,
                  headers: Mapping[str, str] | None = None) -> web.Response:
    """JSON written by orjson (compact UTF-8; the standard library's took a fortieth of an
    intake's CPU)."""
    data = body.model_dump(mode="json") if isinstance(body, BaseModel) else body
    return web.json_response(data, status=status, headers=headers, dumps=_dumps)


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def path_uuid(request: web.Request, name: str = "id") -> UUID:
    try:
        return UUID(request.match_info[name])
    except ValueError as exc:
        raise Problem(404, "Not found", "No such object.") from exc


def client_address(request: web.Request,
                   trusted_proxies: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network],
                   ) -> str:
    """The caller's address: the peer's, or, when the peer is a trusted reverse proxy, the
    nearest address in X-Forwarded-For that is not one."""

    def trusted(address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in trusted_proxies)

    address = request.remote or ""
    hops = [h.strip() for value in request.headers.getall("X-Forwarded-For", [])
            for h in value.split(",") if h.strip()]
    while trusted(address) and hops:
        address = hops.pop()
    return address
