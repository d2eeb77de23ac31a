"""Calls from one service to another over their HTTP API, on behalf of the caller (with the
caller's own token, so the other service checks and logs it too). One is answered in
process when the other service runs here: the person's standing (`standing`).

The address is configuration, never the request: `RELAIS_INTAKE_URL`, else this very server
(the address its socket is bound to) when it runs the service, else the base URL. A caller's
token is never sent anywhere else; the `Host` it sent is never used."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import aiohttp
from aiohttp import web
from pydantic import BaseModel, ValidationError

from schemas.api import (
    EvidenceOut,
    IntakeOut,
    NoticeOut,
    PersonExport,
    PersonOut,
    ReferralOut,
    ReferralPage,
    StandingOut,
)
from services.directory import Directory
from services.runtime.app import RUNTIME
from services.runtime.auth import authenticate_token
from services.runtime.problem import Problem
from services.runtime.web import bearer

HTTP = web.AppKey("peers_http", aiohttp.ClientSession)
Standing = Callable[[web.Application, uuid.UUID, str], Awaitable[StandingOut | None]]
LOCAL_STANDING: web.AppKey[Standing] = web.AppKey("peers_local_standing")
"""The intake service's answer to `standing`, when it runs in this process."""
TIMEOUT = aiohttp.ClientTimeout(total=10)
M = TypeVar("M", bound=BaseModel)


async def _session(app: web.Application) -> AsyncIterator[None]:
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        app[HTTP] = session
        yield


def setup(app: web.Application) -> None:
    """Give the app a client session for peer calls (once, whichever service asks first)."""
    if _session not in app.cleanup_ctx:
        app.cleanup_ctx.append(_session)


def intake_base(request: web.Request) -> str:
    return service_base(request, "intake", request.app[RUNTIME].settings.intake_url)


def service_base(request: web.Request, service: str, configured: str | None) -> str:
    """Where to call `service`: its configured address, else this server when it runs the
    service, else the base URL."""
    runtime = request.app[RUNTIME]
    if configured:
        return configured.rstrip("/")
    if service in runtime.services and request.transport is not None:
        host, port = request.transport.get_extra_info("sockname")[:2]
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    return runtime.settings.base_url


def unavailable(service: str, status: int | None = None) -> Problem:
    """The other service did not answer as itself: a 503 the caller may retry."""
    said = f"answered {status}" if status is not None else "did not answer"
    return Problem(503, f"{service} service unavailable",
                   f"The {service.lower()} service {said}; try again.",
                   headers={"Retry-After": "5"})


async def _get(request: web.Request, path: str, model: type[M],
               base: str | None = None, service: str = "Intake",
               token: str | None = None) -> M | None:
    """GET from the intake service (or the service at `base`) as the caller (or with
    `token`); None when it answers 404 (or 403, 410) itself, with a problem document: a bare
    404 comes from something else in the way (a proxy, a wrong address), and is a 503."""
    try:
        async with request.app[HTTP].get(
            f"{base or intake_base(request)}{path}",
            headers={"Authorization": f"Bearer {token or bearer(request)}"},
            allow_redirects=False,
        ) as response:
            if response.status in (403, 404, 410) \
                    and response.content_type == "application/problem+json":
                return None
            if response.status != 200:
                raise unavailable(service, response.status)
            return model.model_validate(await response.json())
    except (aiohttp.ClientError, TimeoutError, ValidationError) as exc:
        raise unavailable(service) from exc


async def get_all(request: web.Request, path: str, model: type[M], base: str,
                  service: str) -> M:
    """GET from the service at `base` as the caller, where only a 200 will do: anything else
    (a refusal, a route this version does not know) is a 503, never an empty answer taken
    for a complete one (an access request's export)."""
    try:
        async with request.app[HTTP].get(
            f"{base}{path}", headers={"Authorization": f"Bearer {bearer(request)}"},
            allow_redirects=False,
        ) as response:
            if response.status != 200:
                raise unavailable(service, response.status)
            return model.model_validate(await response.json())
    except (aiohttp.ClientError, TimeoutError, ValidationError) as exc:
        raise unavailable(service) from exc


async def _post(request: web.Request, path: str, body: dict[str, object], model: type[M],
                base: str | None = None, service: str = "Intake", method: str = "POST",
                headers: dict[str, str] | None = None) -> M:
    """POST (or `method`) to the intake service (or the service at `base`) as the caller: the
    answer, or the other service's own problem raised again here (its status, title, detail
    and invalid fields, `errors`) when it refuses; a 503 when it does not answer as itself."""
    try:
        async with request.app[HTTP].request(
            method, f"{base or intake_base(request)}{path}", json=body,
            headers={"Authorization": f"Bearer {bearer(request)}", **(headers or {})},
            allow_redirects=False,
        ) as response:
            if 400 <= response.status < 500 \
                    and response.content_type == "application/problem+json":
                said = await response.json()
                refused = Problem(response.status, str(said.get("title", "Refused")),
                                  str(said.get("detail", "")))
                if isinstance(said.get("errors"), list):
                    refused.extra["errors"] = said["errors"]
                raise refused
            if response.status not in (200, 201):
                raise unavailable(service, response.status)
            return model.model_validate(await response.json())
    except (aiohttp.ClientError, TimeoutError, ValidationError) as exc:
        raise unavailable(service) from exc


async def seal_evidence(request: web.Request, person_id: uuid.UUID, kind: str,
                        media_type: str, content: bytes) -> EvidenceOut:
    """The proof of a signed consent sealed in the identity vault
    (`POST /v1/people/{id}/evidence`)."""
    return await _post(request, f"/v1/people/{person_id}/evidence", {
        "kind": kind, "media_type": media_type,
        "content": base64.b64encode(content).decode()}, EvidenceOut)


async def cancel_referral(request: web.Request, referral_id: uuid.UUID,
                          text: str) -> ReferralOut:
    """The sender cancels a referral (`POST /v1/referrals/{id}/cancel`)."""
    base = service_base(request, "referral", request.app[RUNTIME].settings.referral_url)
    return await _post(request, f"/v1/referrals/{referral_id}/cancel", {"text": text},
                       ReferralOut, base, "Referral")


async def standing(request: web.Request, person_id: uuid.UUID) -> StandingOut | None:
    """What the caller's organisation is to this person; None when it is nothing to them.

    When the intake service runs in this process and no `RELAIS_INTAKE_URL` sends the call
    elsewhere, its unit of work answers without the round trip through HTTP (a quarter of a
    consent's CPU), after the caller's token (header or session) is checked and counted again,
    as the endpoint would (a refusal is then the endpoint's own problem, a 429 say, not a
    503; a magic link's session, which the endpoint refuses, gets None as from there)."""
    local = request.app.get(LOCAL_STANDING)
    if local is not None and not request.app[RUNTIME].settings.intake_url:
        principal = await authenticate_token(request, bearer(request), None, link=True)
        if principal.referral is not None:
            return None
        return await local(request.app, person_id, principal.org)
    return await _get(request, f"/v1/people/{person_id}/standing", StandingOut)


async def person(request: web.Request, person_id: uuid.UUID,
                 consent_id: uuid.UUID | None = None) -> PersonOut | None:
    """The person's data as far as the caller may read it, or exactly as far as
    `consent_id` gives it to the caller (the read is logged there)."""
    under = f"?consent_id={consent_id}" if consent_id is not None else ""
    return await _get(request, f"/v1/people/{person_id}{under}", PersonOut)


async def intake(request: web.Request, intake_id: uuid.UUID) -> IntakeOut | None:
    """An intake the caller's organisation recorded (`GET /v1/intakes/{id}`); None when it
    did not record it."""
    return await _get(request, f"/v1/intakes/{intake_id}", IntakeOut)


async def referrals_of_intake(request: web.Request, intake_id: uuid.UUID) -> ReferralPage:
    """The referrals the caller's organisation sent for this intake, as the referral service
    serves them (`GET /v1/referrals?role=sender&intake_id=`): none until routing ran."""
    base = service_base(request, "referral", request.app[RUNTIME].settings.referral_url)
    found = await _get(request, f"/v1/referrals?role=sender&intake_id={intake_id}",
                       ReferralPage, base, "Referral")
    return found or ReferralPage(items=[], next_cursor=None)


async def current_notice(request: web.Request) -> NoticeOut | None:
    """The information notice people are shown now (`GET /v1/notices/current`)."""
    base = service_base(request, "consent", request.app[RUNTIME].settings.consent_url)
    return await _get(request, "/v1/notices/current", NoticeOut, base, "Consent")


async def directory(request: web.Request) -> Directory | None:
    """The directory as the intake service serves it (`GET /v1/directory`); None when none
    was loaded yet."""
    return await _get(request, "/v1/directory", Directory)


class LinkStanding(BaseModel):
    org: str
    referral_id: uuid.UUID
    address: str
    listed: bool


async def link_standing(request: web.Request, link_id: str,
                        token: str | None = None) -> LinkStanding | None:
    """The email a magic link came with, as the notify service knows it (asked with the
    link's own session, or with the auth service's `token`); None when there is none."""
    base = service_base(request, "notify", request.app[RUNTIME].settings.notify_url)
    return await _get(request, f"/internal/links/{link_id}", LinkStanding, base, "Notify",
                      token)


async def link_listed(request: web.Request, link_id: str) -> bool:
    """Whether the notify service still sends the magic link's organisation's referrals to
    its address: False once the address is removed."""
    said = await link_standing(request, link_id)
    return said is not None and said.listed


async def person_document(request: web.Request, person_id: uuid.UUID) -> str | None:
    """What Relais holds about the person, as the French document of their access request
    (`GET /v1/people/{id}/export`, Accept: text/html), asked as the caller; None when the
    intake service knows no such person."""
    try:
        async with request.app[HTTP].get(
            f"{intake_base(request)}/v1/people/{person_id}/export",
            headers={"Authorization": f"Bearer {bearer(request)}", "Accept": "text/html"},
            allow_redirects=False,
        ) as response:
            if response.status == 404 and response.content_type == "application/problem+json":
                return None
            if response.status != 200:
                raise unavailable("Intake", response.status)
            return await response.text()
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise unavailable("Intake") from exc


async def person_export(request: web.Request, person_id: uuid.UUID) -> PersonExport | None:
    """Everything Relais holds about the person, as JSON (`GET /v1/people/{id}/export`), asked
    as the caller: a logged read of their data. None when the intake service knows no such
    person (or refuses the caller)."""
    return await _get(request, f"/v1/people/{person_id}/export", PersonExport)


async def rectify(request: web.Request, person_id: uuid.UUID, identity: dict[str, str],
                  if_match: str | None = None) -> PersonOut:
    """Correct the person's identity and contact details at their request
    (`PUT /v1/people/{id}/identity`), as the caller: what is given replaces what was known
    (only if it is still what `if_match` names: 412 otherwise)."""
    return await _post(request, f"/v1/people/{person_id}/identity", dict(identity), PersonOut,
                       method="PUT", headers={"If-Match": if_match} if if_match else None)


class Restriction(BaseModel):
    person_id: uuid.UUID
    right: str
    since: object
    org: str


async def restrict(request: web.Request, person_id: uuid.UUID, right: str,
                   channel: str) -> Restriction:
    """Stop processing the person's data at their request
    (`POST /v1/people/{id}/restriction`), as the caller."""
    return await _post(request, f"/v1/people/{person_id}/restriction",
                       {"right": right, "channel": channel}, Restriction)


async def lift_restriction(request: web.Request, person_id: uuid.UUID) -> None:
    """Lift it (`DELETE /v1/people/{id}/restriction`), as the caller."""
    try:
        async with request.app[HTTP].delete(
            f"{intake_base(request)}/v1/people/{person_id}/restriction",
            headers={"Authorization": f"Bearer {bearer(request)}"}, allow_redirects=False,
        ) as response:
            if response.status != 204:
                raise unavailable("Intake", response.status)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise unavailable("Intake") from exc
