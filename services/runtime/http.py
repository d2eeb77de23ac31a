"""Small helpers for the thin HTTP layers: parse a body into a model, answer JSON."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, TypeVar
from uuid import UUID

from aiohttp import web
from pydantic import BaseModel

from services.runtime.problem import Problem

M = TypeVar("M", bound=BaseModel)


async def read_json(request: web.Request) -> Any:
    raw = await request.read()
    try:
        payload = json.loads(raw)
    except ValueError as exc:
        raise Problem(400, "Malformed JSON", f"The body is not valid JSON: {exc}") from exc
    bad = list(_unstorable_text(payload, ""))
    if bad:
        raise Problem(422, "Invalid request", f"{len(bad)} invalid field(s)",
                      type_="https://relais.example/problems/validation",
                      errors=[{"field": f or "(body)", "message": "text must be valid UTF-8 "
                               "without NUL characters", "code": "invalid_text"} for f in bad])
    return payload


def _unstorable_text(value: Any, path: str) -> Iterator[str]:
    """Where JSON strings hold what PostgreSQL text cannot (NUL, lone surrogates)."""
    if isinstance(value, str):
        if "\x00" in value or (not value.isascii() and _has_surrogate(value)):
            yield path
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _unstorable_text(key, path)
            yield from _unstorable_text(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _unstorable_text(item, f"{path}.{index}" if path else str(index))


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
                  headers: dict[str, str] | None = None) -> web.Response:
    data = body.model_dump(mode="json") if isinstance(body, BaseModel) else body
    return web.json_response(data, status=status, headers=headers)


def path_uuid(request: web.Request, name: str = "id") -> UUID:
    try:
        return UUID(request.match_info[name])
    except ValueError as exc:
        raise Problem(404, "Not found", "No such object.") from exc
