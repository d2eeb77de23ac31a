"""The directory over HTTP: read, replaced as a whole, or changed one organisation, site or
permanence at a time (validated with the whole, `If-Match` against lost updates). The
directory's keeper (`directory:write`) changes anything; a programme's coordination
(`programme:write`) only what belongs to the programmes it coordinates (`edits.refusal`)."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from services import directory as reference
from services.directory import edits
from services.intake import store
from services.intake.api import DIRECTORY
from services.intake.directory import publish
from services.runtime.app import RUNTIME
from services.runtime.auth import Principal, authenticate
from services.runtime.http import json_response, parse, read_json
from services.runtime.openapi import Handler, Operation, PathParam, Query, register
from services.runtime.problem import Problem

KEEPER, COORDINATOR = "directory:write", "programme:write"
TAG = "Directory"


def _etag(version: int) -> dict[str, str]:
    return {"ETag": f'"{version}"'}


def _precondition(request: web.Request, version: int | None) -> None:
    """412 when `If-Match` names another version than the current one (RFC 9110 §13.1.1)."""
    header = request.headers.get("If-Match")
    if header is None:
        return
    tags = {t.strip() for t in header.split(",")}
    if version is not None and ("*" in tags or f'"{version}"' in tags):
        return
    raise Problem(412, "Precondition failed",
                  "The directory changed since you read it: read it again (its ETag is "
                  "in this answer's ETag header), apply your change to it, then retry.",
                  headers=_etag(version) if version is not None else None)


async def _editor(request: web.Request) -> tuple[Principal, bool]:
    """The caller and whether it is the directory's keeper (else a programme's coordination)."""
    principal = await authenticate(request, None)
    if KEEPER in principal.scopes:
        return principal, True
    if COORDINATOR in principal.scopes:
        return principal, False
    challenge = f'Bearer realm="relais", error="insufficient_scope", scope="{KEEPER}"'
    raise Problem(403, "Forbidden", f"The access token lacks the scope '{KEEPER}' (or "
                  f"'{COORDINATOR}' for a programme's part).",
                  headers={"WWW-Authenticate": challenge})


async def get_directory(request: web.Request) -> web.Response:
    await authenticate(request, None)
    row = await store.directory(request.app[RUNTIME].pool)
    if row is None:
        raise Problem(404, "Not found", "No directory was loaded yet.")
    return web.json_response(row["document"], headers=_etag(row["version"]))


async def put_directory(request: web.Request) -> web.Response:
    """Replace the whole directory (it is validated as a whole); the services follow."""
    await authenticate(request, KEEPER)
    document = parse(reference.Directory, await read_json(request))
    async with request.app[RUNTIME].pool.acquire() as conn, conn.transaction():
        row = await store.directory_for_update(conn)
        _precondition(request, row["version"] if row else None)
        version = await publish(conn, document)
    request.app[DIRECTORY].forget()
    return web.json_response(document.model_dump(mode="json"), headers=_etag(version))


async def _edit(request: web.Request, editor: tuple[Principal, bool],
                change: Callable[[reference.Directory], edits.Change | None],
                programme: str | None = None) -> tuple[edits.Change, int]:
    """One change of the directory, in one transaction: the current version locked, the
    precondition checked, the change made and validated (a 422 listing why otherwise),
    allowed, then published."""
    principal, keeper = editor
    async with request.app[RUNTIME].pool.acquire() as conn, conn.transaction():
        row = await store.directory_for_update(conn)
        if row is None:
            raise Problem(404, "Not found", "No directory was loaded yet.")
        _precondition(request, row["version"])
        current = reference.Directory.model_validate(row["document"])
        if programme is not None and current.programme(programme) is None:
            raise Problem(422, "Unknown programme", f"No programme '{programme}' in the "
                          "directory.", errors=[{"field": "programme", "code": "unknown",
                                                 "message": "not a programme of the directory"}])
        made = change(current)
        if made is None:
            raise Problem(404, "Not found", "No such item in the directory.")
        why = None if keeper else edits.refusal(made, principal.org, programme)
        if why is not None:
            raise Problem(403, "Forbidden", why)
        version = await publish(conn, made.after)
    request.app[DIRECTORY].forget()
    return made, version


def _putter(kind: edits.Kind) -> Handler:
    model = edits.MODELS[kind]

    async def put_item(request: web.Request) -> web.Response:
        editor = await _editor(request)
        item = parse(model, await read_json(request))
        if item.id != request.match_info["id"]:
            raise Problem(422, "Invalid fields", "The id in the body is not the path's.",
                          errors=[{"field": "id", "code": "mismatch",
                                   "message": "must be the id in the path"}])
        programme = request.query.get("programme") or None
        made, version = await _edit(
            request, editor, lambda current: edits.put(current, kind, item, programme),
            programme)
        return json_response(item, status=200 if made.existed else 201,
                             headers=_etag(version) | {
                                 "Location": f"/v1/directory/{kind}/{item.id}"})

    return put_item


def _remover(kind: edits.Kind) -> Handler:
    async def delete_item(request: web.Request) -> web.Response:
        _, version = await _edit(
            request, await _editor(request),
            lambda current: edits.remove(current, kind, request.match_info["id"]))
        return web.Response(status=204, headers=_etag(version))

    return delete_item


ITEM_ID = PathParam("The item's id in the directory (a slug)",
                    {"type": "string", "pattern": reference.SLUG})
PROGRAMME = Query("programme", "Also name the item in this programme's list (`sites`, "
                  "`organisations`): how a programme's coordination creates one in its "
                  "programme", {"type": "string", "pattern": reference.SLUG})
_DEMO = reference.load()
EXAMPLES: dict[edits.Kind, tuple[str, str, str]] = {
    "organisations": ("asso-boussole", "coordination", "an organisation"),
    "sites": ("qpv-etouvie", "en-ligne", "a site"),
    "permanences": ("permanence-centre-social-nord", "camion-pierre-rollin-jeudi",
                    "a permanence")}
"""Per kind: the item the PUT example replaces, the one the DELETE example removes (nothing
of the demo refers to it)."""
_WHO = (" (`directory:write`; or `programme:write` for what belongs only to the programmes "
        "your organisation coordinates)")


def _example(kind: edits.Kind, item_id: str) -> dict[str, object]:
    item = next(i for i in getattr(_DEMO, kind) if i.id == item_id)
    data: dict[str, object] = item.model_dump(mode="json", exclude_defaults=True)
    return data


OPERATIONS = [
    Operation("GET", "/v1/directory", get_directory,
              "The directory: organisations, consortia, sites, permanences, programmes "
              "(its version in the ETag header)", TAG,
              response=reference.Directory, errors=(404,)),
    Operation("PUT", "/v1/directory", put_directory, "Replace the whole directory", TAG,
              KEEPER, reference.Directory, reference.Directory, 200,
              _DEMO.model_dump(mode="json"), if_match=True),
]
for _kind, (_id, _gone, _what) in EXAMPLES.items():
    OPERATIONS += [
        Operation("PUT", f"/v1/directory/{_kind}/{{id}}", _putter(_kind),
                  f"Add or replace {_what}, validated with the whole directory{_WHO}", TAG,
                  KEEPER, edits.MODELS[_kind], edits.MODELS[_kind], 200,
                  _example(_kind, _id), path_example={"id": _id}, also=(201,),
                  path_params={"id": ITEM_ID}, query=(PROGRAMME,), if_match=True,
                  errors=(404,), or_scopes=(COORDINATOR,)),
        Operation("DELETE", f"/v1/directory/{_kind}/{{id}}", _remover(_kind),
                  f"Remove {_what} (refused while something refers to it){_WHO}", TAG,
                  KEEPER, status=204, path_example={"id": _gone},
                  path_params={"id": ITEM_ID}, if_match=True, errors=(404, 422),
                  or_scopes=(COORDINATOR,)),
    ]


def routes(app: web.Application) -> None:
    register(app, OPERATIONS)
