"""What every answer carries (`harden`), and the runner `relais up` serves the app with: aiohttp's,
except for what aiohttp answers itself before the application sees a request (a header or
request line too long, a malformed request): its own text quotes the start of the offending
value (a bearer token, say) back to the caller and into the logs; here it is a generic
problem and a log line without it."""

from __future__ import annotations

from http import HTTPStatus

from aiohttp import web

from services.runtime.logging import get_logger
from services.runtime.problem import Problem

log = get_logger("relais.http")
SERVER = "Relais"
UNREADABLE = ("The request could not be read: it is malformed, or its request line or one of "
              "its headers is too long.")


async def harden(_request: web.Request, response: web.StreamResponse) -> None:
    """On every answer: no MIME sniffing; nothing cached unless the handler said otherwise
    (answers carry personal data); no server software and version."""
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers["Server"] = SERVER


class _RequestHandler(web.RequestHandler):
    def handle_error(self, request: web.BaseRequest, status: int = 500,
                     exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        log.warning("request_refused", status=status,
                    error=type(exc).__name__ if exc is not None else None)
        if request.writer.output_size > 0:
            raise ConnectionError("Response is sent already, cannot send another response "
                                  "with the error message")
        detail = UNREADABLE if status < 500 else "The error was logged."
        response = Problem(status, HTTPStatus(status).phrase, detail).response()
        response.headers.update({"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store",
                                 "Server": SERVER})
        response.force_close()
        return response


class _Server(web.Server):
    def __call__(self) -> web.RequestHandler:
        return _RequestHandler(self, loop=self._loop, **self._kwargs)


class AppRunner(web.AppRunner):
    """aiohttp's application runner, whose connections answer unreadable requests with
    `_RequestHandler`."""

    async def _make_server(self) -> web.Server:
        made = await super()._make_server()
        return _Server(made.request_handler, request_factory=made.request_factory,
                       handler_cancellation=made.handler_cancellation, loop=made._loop,
                       **made._kwargs)
