"""Browser assets served by Relais itself, no CDN: the State's design system (DSFR) from its
npm package (`web/node_modules`, installed by `make install`) at /static/dsfr/, and Relais's
own files (services/runtime/static/) at /static/relais/. They hold no personal data, so
their answers may be cached, unlike everything else (see `server.harden`)."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from services.runtime.logging import get_logger

log = get_logger("relais.assets")
ROOT = Path(__file__).resolve().parents[2]
DSFR_DIST = ROOT / "web" / "node_modules" / "@gouvfr" / "dsfr" / "dist"
OWN = Path(__file__).resolve().parent / "static"
STATIC_CACHE = "public, max-age=604800"
"""A week: the URLs carry no version, so a DSFR upgrade reaches browsers within a week;
aiohttp's ETag and Last-Modified make the revalidation after that cheap."""
CACHEABLE = frozenset({200, 206, 304})


def add_static(app: web.Application, dsfr: Path | None = None) -> None:
    """Serves the DSFR (`dsfr`, else the source tree's web/node_modules) at /static/dsfr/ and
    Relais's own assets at /static/relais/, without directory listings; the app starts
    without the DSFR (npm not run) and says so once."""
    dsfr = dsfr or DSFR_DIST
    if dsfr.is_dir():
        app.router.add_static("/static/dsfr/", dsfr, name="dsfr")
    else:
        log.warning("dsfr_missing", path=str(dsfr),
                    detail="The pages will have no design system: run `make install`.")
    app.router.add_static("/static/relais/", OWN, name="relais")
    app.on_response_prepare.append(cache_static)


async def cache_static(request: web.Request, response: web.StreamResponse) -> None:
    """Lets browsers keep what the static routes answered (errors excepted)."""
    if (isinstance(request.match_info.route.resource, web.StaticResource)
            and response.status in CACHEABLE):
        response.headers["Cache-Control"] = STATIC_CACHE
