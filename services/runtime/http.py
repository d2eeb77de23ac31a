"""Small helpers for the thin HTTP layers: parse a body into a model, answer JSON."""

from __future__ import annotations

import json
from typing import Any, TypeVar
from uuid import UUID

from aiohttp import web
from pydantic import BaseModel

from services.runtime.problem import Problem

M = TypeVar("M", bound=BaseModel)


async def read_json(request: web.Request) -> Any:
    raw = await request.read()
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise Problem(400, "Malformed JSON", f"The body is not valid JSON: {exc}") from exc


def parse(model: type[M], payload: Any) -> M:
    """Validate; a ValidationError becomes a 422 problem listing every invalid field."""
    return model.model_validate(payload)


def json_response(body: BaseModel | dict[str, Any], status: int = 200) -> web.Response:
    data = body.model_dump(mode="json") if isinstance(body, BaseModel) else body
    return web.json_response(data, status=status)


def path_uuid(request: web.Request, name: str = "id") -> UUID:
    try:
        return UUID(request.match_info[name])
    except ValueError as exc:
        raise Problem(404, "Not found", "No such object.") from exc
