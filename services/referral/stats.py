"""Statistics for the funders: anonymised figures over a period (no cell under 5 people),
as JSON or CSV. These are the figures programmes report to the State and the Region."""

from __future__ import annotations

import csv
import io
import statistics
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from aiohttp import web

from schemas.api import StatsOut
from services.directory import Programme
from services.referral import store
from services.runtime.app import RUNTIME
from services.runtime.auth import Principal, authenticate
from services.runtime.http import json_response
from services.runtime.openapi import Operation, Query
from services.runtime.problem import Problem

THRESHOLD = 5
TAG = "Statistics"
LABELS = {
    "total": "Personnes rencontrées", "site": "Contacts par lieu",
    "permanence": "Contacts par permanence", "visit": "Premières visites et retours",
    "age_bracket": "Tranches d'âge", "gender": "Genre (part, %)", "need": "Besoins exprimés",
    "status": "Orientations par statut", "target": "Orientations par destinataire",
    "answers": "Réponses des partenaires",
    "signal": "Signalements des relais du réseau, par type de relais",
    "signal_answered": "Signalements suivis d'un contact, par type de relais",
    "signal_to_contact": "Délai entre le signalement et le premier contact",
    "time_spent": "Temps passé avec les personnes",
    "qpv": "Personnes rencontrées en quartier prioritaire (QPV)",
    "arrival": "Venues sans rendez-vous ou sur rendez-vous",
}


def shown(people: int, value: float | int | None = None) -> float | int | None:
    """A figure about fewer than THRESHOLD people is not shown (None)."""
    if people < THRESHOLD:
        return None
    return people if value is None else value


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[0] if len(ordered) == 1 else statistics.quantiles(
        ordered, n=100, method="inclusive")[int(q) - 1]


def answer_figures(rows: Iterable[Any]) -> dict[str, float | int | None]:
    rows = list(rows)
    answered = [r for r in rows if r["answered_at"] is not None]
    hours = [(r["answered_at"] - r["requested_at"]).total_seconds() / 3600 for r in answered]
    settled = [r for r in rows if r["accepted"] or r["status"] == "rejected"]
    people = len({r["person_id"] for r in rows})
    on_time = [r for r in answered if r["due_at"] is None or r["answered_at"] <= r["due_at"]]
    n_answered = len({r["person_id"] for r in answered})
    return {
        "handed_off": shown(people),
        "answered": shown(n_answered),
        "hours_to_first_answer_median": shown(n_answered, round(statistics.median(hours), 1)
                                              if hours else None),
        "hours_to_first_answer_p90": shown(n_answered, round(percentile(hours, 90), 1)
                                           if hours else None),
        "share_answered_within_deadline": shown(people, round(100 * len(on_time) / len(rows), 1)
                                                if rows else None),
        "share_accepted": shown(len({r["person_id"] for r in settled}), round(
            100 * sum(1 for r in settled if r["accepted"]) / len(settled), 1)
            if settled else None),
    }


def time_spent(durations: Iterable[Any]) -> dict[str, float | int | None]:
    """Minutes spent with people, over the contacts whose duration was given."""
    rows = list(durations)
    minutes = [r["duration_minutes"] for r in rows]
    people = len({r["person_id"] for r in rows})
    return {
        "people": shown(people), "contacts": shown(people, len(minutes)),
        "minutes_average": shown(people, round(statistics.fmean(minutes), 1)
                                 if minutes else None),
        "minutes_median": shown(people, round(float(statistics.median(minutes)), 1)
                                if minutes else None),
    }


def signal_to_contact(hours: Sequence[float]) -> dict[str, float | int | None]:
    """Hours from a signal to the contact that answered it (each signal: one person)."""
    return {
        "answered": shown(len(hours)),
        "hours_median": shown(len(hours), round(statistics.median(hours), 1)
                              if hours else None),
        "hours_average": shown(len(hours), round(statistics.fmean(hours), 1)
                               if hours else None),
    }


def figures(intakes: Iterable[Any], referrals: Iterable[Any], answers: Iterable[Any],
            signals: Iterable[Any] = (), durations: Iterable[Any] = (),
            signal_hours: Sequence[float] = ()) -> dict[str, Any]:
    out: dict[str, Any] = {key: {} for key in LABELS if key not in ("total", "answers")}
    total_people = qpv_people = 0
    for r in intakes:
        if r["dimension"] == "total":
            total_people = r["people"]
            out["people"] = shown(r["people"])
            out["intakes"] = shown(r["people"], r["intakes"])
        elif r["dimension"] == "qpv":
            qpv_people = r["people"]
        elif r["dimension"] == "gender":
            out["gender"][r["key"]] = r["people"]
        elif r["dimension"] in ("site", "permanence"):
            out[r["dimension"]][r["key"]] = shown(r["people"], r["intakes"])
        else:
            out[r["dimension"]][r["key"]] = shown(r["people"])
    genders = out["gender"]
    out["gender"] = {k: shown(n, round(100 * n / total_people, 1)) for k, n in genders.items()}
    out["qpv"] = {"people": shown(qpv_people), "share": shown(qpv_people, round(
        100 * qpv_people / total_people, 1) if total_people else None)}
    out["time_spent"] = time_spent(durations)
    out["signal_to_contact"] = signal_to_contact(signal_hours)
    for r in referrals:
        out[r["dimension"]][r["key"]] = shown(r["people"], r["referrals"])
    out["answers"] = answer_figures(answers)
    for r in signals:  # each signal is about one person
        out["signal"][r["relay_kind"]] = shown(r["received"])
        out["signal_answered"][r["relay_kind"]] = shown(r["answered"])
    out.setdefault("people", None)
    out.setdefault("intakes", None)
    return out


def to_csv(period: dict[str, Any], data: dict[str, Any]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(["indicateur", "categorie", "valeur"])
    writer.writerow(["Période", "du", period["from"]])
    writer.writerow(["Période", "au (exclu)", period["to"]])
    if period["site"]:
        writer.writerow(["Période", "lieu", period["site"]])
    if period.get("programmes"):
        writer.writerow(["Période", "programmes", period["programmes"]])
    for key in ("people", "intakes"):
        writer.writerow([LABELS["total"], key, _cell(data[key])])
    for key, label in LABELS.items():
        if key == "total":
            continue
        for category, value in data[key].items():
            writer.writerow([label, category, _cell(value)])
    return buffer.getvalue()


def _cell(value: Any) -> str:
    return f"<{THRESHOLD}" if value is None else str(value)


def period(start: date | None, end: date | None, site: str | None,
           today: date | None = None) -> dict[str, Any]:
    """The days counted, `start` included and `end` excluded (UTC): by default the year up to
    today included. ValueError when `start` is not before `end`."""
    end = end or (today or datetime.now(UTC).date()) + timedelta(days=1)
    start = start or end - timedelta(days=365)
    if start >= end:
        raise ValueError("from must be before to")
    return {"from": start.isoformat(), "to": end.isoformat(), "site": site or None,
            "start": datetime.combine(start, time(), UTC),
            "end": datetime.combine(end, time(), UTC)}


TERRITORY = "coordination"
"""The kind of organisation that reads the figures of every programme of the instance."""


class UnknownProgramme(Exception):
    """No programme of that id in the directory."""


class NotYours(Exception):
    """The organisation funds, coordinates and runs none of the programmes asked for."""


class NotReady(Exception):
    """The referral service has not followed the directory yet."""


def readable(programmes: Sequence[Programme], org: str, kind: str | None,
             wanted: str | None) -> list[Programme] | None:
    """The programmes whose figures `org` reads: `wanted` alone, or every programme it funds,
    coordinates or runs. None: every contact of the instance (the directory declares no
    programme, or the territory's coordination asks for all). LookupError: no programme
    `wanted`; PermissionError: `org` may not read it, or reads no programme at all."""
    territory = kind == TERRITORY
    if wanted is not None:
        chosen = next((g for g in programmes if g.id == wanted), None)
        if chosen is None:
            raise UnknownProgramme(wanted)
        if not (territory or chosen.involves(org)):
            raise NotYours(wanted)
        return [chosen]
    if not programmes or territory:
        return None
    mine = [g for g in programmes if g.involves(org)]
    if not mine:
        raise NotYours(None)
    return mine


def scoped(period: dict[str, Any], programmes: list[Programme] | None) -> dict[str, Any]:
    """`period` counting only the contacts (and signals) of `programmes` (None: all): those
    their organisations recorded, at their sites when a programme names any."""
    if programmes is None:
        return period | {"programmes": None, "orgs": None, "at": None}
    anywhere: list[str | None] = [None]
    pairs = [(o, site) for g in programmes for o in g.organisations
             for site in (g.sites or anywhere)]
    return period | {"programmes": ",".join(g.id for g in programmes),
                     "orgs": [o for o, _ in pairs], "at": [site for _, site in pairs]}


async def programmes_of(pool: store.Db, org: str, wanted: str | None
                        ) -> tuple[list[Programme] | None, list[Programme]]:
    """The programmes counted for `org` (`readable`, whose errors it raises), and those it may
    choose from (every programme for the territory's coordination). NotReady until the
    referral service has followed a directory (until then it cannot tell the programmes)."""
    if not await store.has_partners(pool):
        raise NotReady()
    programmes = await store.programmes(pool)
    kind = await store.org_kind(pool, org)
    offered = [g for g in programmes if kind == TERRITORY or g.involves(org)]
    return readable(programmes, org, kind, wanted), offered


async def scope(request: web.Request, principal: Principal, wanted: str | None,
                period: dict[str, Any]) -> dict[str, Any]:
    """`period` scoped to what the principal's organisation may read (403/404 otherwise)."""
    try:
        chosen, _ = await programmes_of(request.app[RUNTIME].pool, principal.org, wanted)
    except NotReady as exc:
        raise Problem(503, "Not ready", "The directory is not followed yet: retry in a few "
                      "seconds.", headers={"Retry-After": "5"}) from exc
    except UnknownProgramme as exc:
        raise Problem(404, "Not found", f"No programme '{wanted}' in the directory.") from exc
    except NotYours as exc:
        raise Problem(403, "Forbidden", (
            f"Your organisation does not fund, coordinate or run programme '{wanted}'."
            if wanted else "Your organisation does not fund, coordinate or run any programme "
            "of this instance: ask its coordination to name it in a programme's `funders`."
        )) from exc
    return scoped(period, chosen)


def _period(request: web.Request) -> dict[str, Any]:
    try:
        end = date.fromisoformat(request.query["to"]) if "to" in request.query else None
        start = date.fromisoformat(request.query["from"]) if "from" in request.query else None
    except ValueError as exc:
        raise Problem(400, "Bad query", "from and to are dates (YYYY-MM-DD).") from exc
    try:
        return period(start, end, request.query.get("site"))
    except (ValueError, OverflowError) as exc:  # OverflowError: a date at the calendar's edge
        raise Problem(400, "Bad query", "from must be before to, both within the calendar.") \
            from exc


async def compute(pool: store.Db, period: dict[str, Any]) -> dict[str, Any]:
    """The figures of `period` (from `period()`), for the API and the page alike."""
    args = (period["start"], period["end"], period["site"], period.get("orgs"),
            period.get("at"))
    return figures(await store.intake_counts(pool, *args),
                   await store.referral_counts(pool, *args), await store.answers(pool, *args),
                   await store.signal_counts(pool, *args), await store.durations(pool, *args),
                   await store.signal_delays(pool, *args))


async def _figures(request: web.Request) -> tuple[dict[str, Any], dict[str, Any]]:
    principal = await authenticate(request, "stats:read")
    period = await scope(request, principal, request.query.get("programme") or None,
                         _period(request))
    return period, await compute(request.app[RUNTIME].pool, period)


async def get_stats(request: web.Request) -> web.Response:
    period, data = await _figures(request)
    return json_response(StatsOut.model_validate(
        data | {"period": {k: period[k] for k in ("from", "to", "site", "programmes")},
                "threshold": THRESHOLD}))


def csv_response(period: dict[str, Any], data: dict[str, Any]) -> web.Response:
    """The CSV file of the figures, as the API and the page serve it."""
    name = f"relais-stats-{period['from']}-{period['to']}.csv"
    return web.Response(text=to_csv(period, data), content_type="text/csv", charset="utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})


async def get_stats_csv(request: web.Request) -> web.Response:
    return csv_response(*await _figures(request))


QUERY = (
    Query("from", "Start of the period, included: the first day counted (YYYY-MM-DD, UTC); "
          "365 days before `to` by default", {"type": "string", "format": "date"},
          example="2026-01-01"),
    Query("to", "End of the period, excluded: the day after the last day counted "
          "(YYYY-MM-DD, UTC); `from=2026-01-01&to=2027-01-01` is the year 2026, its "
          "31 December included. Tomorrow by default (so today is counted)",
          {"type": "string", "format": "date"}, example="2027-01-01"),
    Query("site", "Only the contacts (and the signals) at this site", {"type": "string"}),
    Query("programme", "Only this programme of the directory (one your organisation funds, "
          "coordinates or runs). By default: every programme it funds, coordinates or runs; "
          "the whole instance when the directory declares no programme, or for the "
          "territory's coordination", {"type": "string"}),
)
OPERATIONS = [
    Operation("GET", "/v1/stats", get_stats, "Anonymised figures for the funders", TAG,
              "stats:read", response=StatsOut, query=QUERY, errors=(400, 404)),
    Operation("GET", "/v1/stats.csv", get_stats_csv, "The same figures, as CSV", TAG,
              "stats:read", query=QUERY, errors=(400, 404), response_media="text/csv"),
]
