"""RFC 9457 problem details, and the middleware that turns every error into one."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from services.runtime import db
from services.runtime.logging import get_logger

log = get_logger("relais.http")
PROBLEM_JSON = "application/problem+json"
_ENTITY_HEADERS = {"content-type", "content-length"}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Problem(Exception):
    """An error to answer as problem+json."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str | None = None,
        *,
        type_: str = "about:blank",
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail or title)
        self.status = status
        self.title = title
        self.detail = detail
        self.type = type_
        self.headers = headers or {}
        self.extra = extra

    def response(self, instance: str | None = None) -> web.Response:
        body: dict[str, Any] = {"type": self.type, "title": self.title, "status": self.status}
        if self.detail:
            body["detail"] = self.detail
        if instance:
            body["instance"] = instance
        body.update(self.extra)
        return web.Response(
            status=self.status,
            text=json.dumps(body, ensure_ascii=False),
            content_type=PROBLEM_JSON,
            headers=self.headers,
        )


def validation_problem(exc: ValidationError) -> Problem:
    errors = [
        {
            "field": ".".join(str(p) for p in err["loc"]) or "(body)",
            "message": err["msg"],
            "code": err["type"],
        }
        for err in exc.errors(include_url=False, include_input=False)
    ]
    return Problem(
        422,
        "Invalid request",
        f"{len(errors)} invalid field(s)",
        type_="https://relais.example/problems/validation",
        errors=errors,
    )


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except Problem as exc:
        return exc.response(request.path)
    except ValidationError as exc:
        return validation_problem(exc).response(request.path)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {k: v for k, v in exc.headers.items() if k.lower() not in _ENTITY_HEADERS}
        return Problem(exc.status, exc.reason, headers=headers).response(request.path)
    except Exception as exc:
        if db.unavailable(exc):
            log.warning("database_unavailable", path=request.path, method=request.method,
                        error=repr(exc))
            return Problem(503, "Service unavailable", "The database does not answer for "
                           "the moment. Retry with the same Idempotency-Key: what was "
                           "recorded is not recorded twice.",
                           headers={"Retry-After": str(db.RETRY_AFTER)}).response(request.path)
        log.exception("unhandled_error", path=request.path, method=request.method)
        return Problem(500, "Internal error", "The error was logged.").response(request.path)
