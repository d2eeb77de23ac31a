"""When the permanences happen, over HTTP: their occurrences over a period (JSON), and the
same as an iCalendar feed a team subscribes to in its calendar application.

The feed needs no token: a calendar application subscribes to a plain URL (it does not do
OAuth2), and the permanences' places, hours and organisations are public information (they
are posted so that people come); they hold no personal data."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, time, timedelta
from urllib.parse import urlsplit

from aiohttp import web

from schemas.api import OccurrenceList, OccurrenceOut
from services.directory import YEARS, Directory, calendar
from services.intake.api import DIRECTORY
from services.runtime.app import RUNTIME
from services.runtime.auth import authenticate
from services.runtime.http import json_response
from services.runtime.openapi import Operation, Query, register
from services.runtime.problem import Problem

WEEKS = 4
"""The period by default: four weeks from today (Paris)."""
LONGEST = 366
"""The longest period asked, in days."""
TAG = "Directory"


def period(values: Mapping[str, str], today: date) -> tuple[date, date]:
    """`from` (included) and `to` (excluded), Paris days: four weeks from today by default.
    A 400 problem for a date that is not one, an empty period or one longer than a year."""
    try:
        start = date.fromisoformat(values["from"]) if "from" in values else today
        end = (date.fromisoformat(values["to"]) if "to" in values
               else start + timedelta(weeks=WEEKS))
    except (ValueError, OverflowError) as exc:
        raise Problem(400, "Bad query", "from and to are dates (YYYY-MM-DD).") from exc
    if not (YEARS.start <= start.year and end.year < YEARS.stop):
        raise Problem(400, "Bad query", f"from and to are between {YEARS.start} and "
                      f"{YEARS.stop - 1}.")
    if not start < end or (end - start).days > LONGEST:
        raise Problem(400, "Bad query", f"from must be before to, at most {LONGEST} days "
                      "before (to is excluded).")
    return start, end


async def _asked(request: web.Request) -> tuple[date, date, Directory]:
    today = request.app[RUNTIME].clock().astimezone(calendar.PARIS).date()
    start, end = period(request.query, today)
    return start, end, await request.app[DIRECTORY].get(request.app[RUNTIME].pool)


async def get_permanences(request: web.Request) -> web.Response:
    await authenticate(request, None)
    start, end, directory = await _asked(request)
    found = calendar.occurrences(
        directory, datetime.combine(start, time(), calendar.PARIS),
        datetime.combine(end, time(), calendar.PARIS), request.query.get("site"),
        request.query.get("organisation"))
    return json_response(OccurrenceList(
        period={"from": start.isoformat(), "to": end.isoformat()},
        items=[OccurrenceOut(permanence=o.permanence.id, site=o.site.id, site_name=o.site.name,
                             commune=o.site.commune, mobile=o.permanence.mobile,
                             organisations=o.permanence.organisations, start=o.start,
                             end=o.end) for o in found]))


async def get_permanences_ics(request: web.Request) -> web.Response:
    start, end, directory = await _asked(request)
    runtime = request.app[RUNTIME]
    body = calendar.ics(directory, start, end, urlsplit(runtime.settings.base_url).hostname
                        or "relais", runtime.clock(), request.query.get("site"),
                        request.query.get("organisation"))
    return web.Response(body=body, content_type="text/calendar", charset="utf-8", headers={
        "Content-Disposition": 'inline; filename="permanences.ics"'})


QUERY = (
    Query("from", "First day, included (YYYY-MM-DD, Paris). Today by default",
          {"type": "string", "format": "date"}, example="2026-11-01"),
    Query("to", f"Day after the last one, excluded (YYYY-MM-DD): `from=2026-11-01&to="
          f"2026-12-01` is November. Four weeks after `from` by default; at most {LONGEST} "
          "days after it", {"type": "string", "format": "date"}, example="2026-12-01"),
    Query("site", "Only the permanences at this site (its id in the directory)",
          example="qpv-etouvie"),
    Query("organisation", "Only the permanences where this organisation is present",
          example="mission-locale"),
)
OPERATIONS = [
    Operation("GET", "/v1/permanences", get_permanences,
              "When the permanences happen: each occurrence in a period, by start", TAG,
              response=OccurrenceList, query=QUERY, errors=(400,)),
    Operation("GET", "/v1/permanences.ics", get_permanences_ics,
              "The same as an iCalendar feed to subscribe to (no token: public information)",
              TAG, query=QUERY, errors=(400, 429), authenticated=False,
              response_media="text/calendar"),
]


def routes(app: web.Application) -> None:
    register(app, OPERATIONS)
