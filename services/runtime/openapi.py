"""OpenAPI 3.1 from the code: each endpoint is declared once, as an `Operation` (its route,
scope, models and a request example that works against the demo directory); the routes and
`/openapi.json` are both made from these declarations."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from services.directory import SLUG
from services.runtime.ratelimit import charge_address

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
ERROR_TEXT = {
    400: "Malformed request (bad JSON, missing Idempotency-Key, bad query)",
    401: "No valid access token", 403: "The token lacks the scope", 404: "Not found",
    409: "Conflict with the current state", 410: "Gone (erased)",
    412: "The ETag given in If-Match is no longer the current one: read again, then retry",
    413: "Body too large", 422: "Invalid fields (each one listed)", 429: "Rate limited",
    503: "Temporarily unavailable (the database or the token keys cannot be reached): retry "
         "after Retry-After",
}
FORM = "application/x-www-form-urlencoded"


@dataclass(frozen=True)
class Query:
    name: str
    description: str
    schema: dict[str, Any] = field(default_factory=lambda: {"type": "string"})
    example: str | int | None = None


@dataclass(frozen=True)
class PathParam:
    """What a path parameter is, when it is not the default: `{id}` a UUID, any other name a
    string."""

    description: str
    schema: dict[str, Any]


UUID_ID = PathParam("", {"type": "string", "format": "uuid"})
ORGANISATION = PathParam(
    "An organisation's id in the directory (a slug, as `GET /v1/directory` lists them)",
    {"type": "string", "pattern": SLUG})
TEXT = PathParam("", {"type": "string"})


@dataclass(frozen=True)
class Operation:
    method: Literal["GET", "POST", "PUT", "DELETE"]
    path: str
    handler: Handler
    summary: str
    tag: str
    scope: str | None = None
    request: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    example: dict[str, Any] | None = None
    path_example: dict[str, str] = field(default_factory=dict)
    query: tuple[Query, ...] = ()
    idempotency_key: bool = False
    errors: tuple[int, ...] = ()
    request_media: str = "application/json"
    authenticated: bool = True
    also: tuple[int, ...] = ()
    """Other success statuses, with the same body (e.g. 200 for an idempotent re-creation)."""
    response_media: str | None = None
    """A success body that is not JSON (text/csv, text/event-stream), described as text."""
    also_media: str | None = None
    """Another media type the JSON success may be asked in (`Accept`), described as text."""
    oauth_errors: bool = False
    """Errors as RFC 6749 JSON (`{"error": ...}`), as OAuth2 clients expect, not problems."""
    path_params: dict[str, PathParam] = field(default_factory=dict)
    """The path parameters that are not what their name says by default (`path_param`)."""
    or_scopes: tuple[str, ...] = ()
    """Scopes that also open the operation (each alone), besides `scope`."""
    if_match: bool = False
    """Takes an optional `If-Match` (the ETag read): 412 when it is no longer current."""
    error_text: dict[int, str] = field(default_factory=dict)
    """What an error status means here, when not what ERROR_TEXT says."""

    @property
    def operation_id(self) -> str:
        words = re.findall(r"[a-z0-9]+", f"{self.method.lower()} {self.path.replace('v1', '')}")
        return "_".join(words)

    def example_path(self) -> str:
        return re.sub(r"\{(\w+)\}", lambda m: self.path_example[m.group(1)], self.path)

    @property
    def limited_by_address(self) -> bool:
        """A public read (no token): rate limited by the caller's address instead."""
        return not self.authenticated and self.method == "GET"

    def path_param(self, name: str) -> PathParam:
        """What the path parameter `name` is: as declared, else `{id}` a UUID (every object
        Relais makes is named by one), any other name a string."""
        return self.path_params.get(name) or (UUID_ID if name == "id" else TEXT)


OPERATIONS = web.AppKey("operations", list[Operation])


def register(app: web.Application, operations: Sequence[Operation]) -> None:
    for op in operations:
        app.router.add_route(op.method, op.path,
                             _by_address(op.handler) if op.limited_by_address else op.handler)
    app.setdefault(OPERATIONS, []).extend(operations)


def _by_address(handler: Handler) -> Handler:
    async def limited(request: web.Request) -> web.StreamResponse:
        await charge_address(request)
        return await handler(request)
    return limited


def document(operations: Sequence[Operation], version: str = "0.1.0") -> dict[str, Any]:
    models: list[tuple[type[BaseModel], Literal["validation", "serialization"]]] = []
    for op in operations:
        if op.request is not None:
            models.append((op.request, "validation"))
        if op.response is not None:
            models.append((op.response, "serialization"))
    keys, defs = models_json_schema(models, ref_template="#/components/schemas/{model}")
    schemas: dict[str, Any] = dict(defs.get("$defs", {}))
    schemas["Problem"] = _problem_schema()
    schemas["OAuthError"] = {
        "type": "object", "description": "RFC 6749 §5.2 error.", "required": ["error"],
        "properties": {"error": {"type": "string"}, "error_description": {"type": "string"},
                       "error_uri": {"type": "string"}}}
    paths: dict[str, Any] = {}
    for op in operations:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, keys)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Relais",
            "version": version,
            "description": "From a first contact to the partner who will follow the person, "
                           "with their explicit consent. Errors are RFC 9457 problem details.",
            "license": {"name": "AGPL-3.0-or-later", "identifier": "AGPL-3.0-or-later"},
        },
        "servers": [{"url": "/", "description": "where this document is served from (`make "
                     "run`: http://127.0.0.1:8080)"}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "securitySchemes": {"oauth2": {
                "type": "oauth2",
                "flows": {"clientCredentials": {"tokenUrl": "/oauth/token", "scopes": {
                    s: s for s in sorted({s for o in operations
                                          for s in (o.scope, *o.or_scopes) if s})}}},
            }},
        },
    }


def _ref(keys: dict[Any, Any], model: type[BaseModel], mode: str) -> dict[str, Any]:
    ref: dict[str, Any] = keys[(model, mode)]
    return ref


def _operation(op: Operation, keys: dict[Any, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = {"operationId": op.operation_id, "summary": op.summary,
                            "tags": [op.tag]}
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True,
         **({"description": described.description} if described.description else {}),
         "schema": described.schema, "example": op.path_example.get(name)}
        for name in re.findall(r"\{(\w+)\}", op.path)
        for described in (op.path_param(name),)
    ]
    params += [{"name": q.name, "in": "query", "required": False, "description": q.description,
                "schema": q.schema, **({"example": q.example} if q.example else {})}
               for q in op.query]
    if op.idempotency_key:
        params.append({"name": "Idempotency-Key", "in": "header", "required": True,
                       "description": "Any unique string (a UUID): the same key and body "
                                      "give back the first answer.",
                       "schema": {"type": "string", "minLength": 1, "maxLength": 200},
                       "example": "3f1c2a9e-8d4b-4f0e-9a51-0c7d2b6e1f00"})
    if op.if_match:
        params.append({"name": "If-Match", "in": "header", "required": False,
                       "description": "The ETag you read (the directory's, or the identity's "
                                      "in GET /v1/people/{id}): the change is made only if "
                                      "nobody changed it since (412 otherwise). Without it, "
                                      "the last change wins.",
                       "schema": {"type": "string"}, "example": '"1"'})
    if params:
        spec["parameters"] = params
    if op.request is not None:
        media: dict[str, Any] = {"schema": _ref(keys, op.request, "validation")}
        if op.example is not None:
            media["example"] = op.example
        spec["requestBody"] = {"required": True, "content": {op.request_media: media}}
    ok: dict[str, Any] = {"description": "Success"}
    if op.response is not None:
        ok["content"] = {"application/json": {"schema": _ref(keys, op.response,
                                                             "serialization")}}
    elif op.response_media is not None:
        ok["content"] = {op.response_media: {"schema": {"type": "string"}}}
    if op.also_media is not None:
        ok.setdefault("content", {})[op.also_media] = {"schema": {"type": "string"}}
    responses: dict[str, Any] = {str(op.status): ok}
    responses |= {str(code): ok for code in op.also}
    errors = set(op.errors) | ({401, 403, 429, 503} if op.authenticated else set())
    if op.limited_by_address:
        errors |= {429}
    if op.request is not None or op.idempotency_key:
        errors |= {400, 413, 422}
    if op.if_match:
        errors |= {412}
    for code in sorted(errors):
        media = ({"application/json": {"schema": {"$ref": "#/components/schemas/OAuthError"}}}
                 if op.oauth_errors and code in (400, 401) else
                 {"application/problem+json": {"schema": PROBLEM_REF}})
        responses[str(code)] = {"description": op.error_text.get(code, ERROR_TEXT[code]),
                                "content": media}
    spec["responses"] = responses
    if op.authenticated:
        spec["security"] = [{"oauth2": [op.scope] if op.scope else []}] + [
            {"oauth2": [scope]} for scope in op.or_scopes]
    else:
        spec["security"] = []  # public: no token
    return spec


def _problem_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "RFC 9457 problem details.",
        "required": ["type", "title", "status"],
        "properties": {
            "type": {"type": "string"}, "title": {"type": "string"},
            "status": {"type": "integer"}, "detail": {"type": "string"},
            "instance": {"type": "string"},
            "errors": {"type": "array", "items": {
                "type": "object", "required": ["field", "message"],
                "properties": {"field": {"type": "string"}, "message": {"type": "string"},
                               "code": {"type": "string"}}}},
        },
    }


async def serve(request: web.Request) -> web.Response:
    operations: list[Operation] = request.app[OPERATIONS]
    return web.json_response(document(operations))
