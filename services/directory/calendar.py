"""When the permanences happen: their occurrences over a period, from their slots of every
week and their recurrences (RFC 5545 rules, expanded by python-dateutil), the same as an
iCalendar feed (written by the icalendar package), and in French words.

Hours are Paris wall-clock time: a permanence at 9 h 30 is at 9 h 30 on both sides of a change
of time. A slot of every week is the rule `FREQ=WEEKLY;BYDAY=..`, from the first such day of
the period asked (it has no first day of its own)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import icalendar

from services.directory import (
    Directory,
    Permanence,
    Recurrence,
    Site,
    Slot,
    Weekday,
)

PARIS = ZoneInfo("Europe/Paris")
BYDAY = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
"""RFC 5545's day codes, Monday first (as `Weekday` and `date.weekday()`)."""
JOURS = ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche")
MOIS = ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre",
        "octobre", "novembre", "décembre")
FOIS = {2: "deux", 3: "trois", 4: "quatre"}
NBSP = "\u00a0"


@dataclass(frozen=True, slots=True)
class Occurrence:
    permanence: Permanence
    site: Site
    start: datetime
    end: datetime


def series(permanence: Permanence, since: date) -> list[tuple[str, Recurrence]]:
    """Each rhythm of the permanence as a recurrence, named for a stable calendar UID: its
    slots (`slot-0`...) from their first day on or after `since`, its recurrences
    (`recurrence-0`...) as they are."""
    slots = [(f"slot-{i}", _weekly(s, since)) for i, s in enumerate(permanence.schedule)]
    return slots + [(f"recurrence-{i}", r) for i, r in enumerate(permanence.recurrences)]


def _weekly(slot: Slot, since: date) -> Recurrence:
    day = list(Weekday).index(slot.weekday)
    first = since + timedelta(days=(day - since.weekday()) % 7)
    return Recurrence(rule=f"FREQ=WEEKLY;BYDAY={BYDAY[day]}", start=slot.start, end=slot.end,
                      first=first)


def between(recurrence: Recurrence, start: datetime, end: datetime) -> list[tuple[datetime,
                                                                                  datetime]]:
    """The recurrence's occurrences (start, end: aware, Paris) that start from `start`
    (included) to `end` (excluded), but on its exceptions."""
    low, high = start.astimezone(PARIS), end.astimezone(PARIS)
    days = recurrence.dates().between(low.replace(tzinfo=None), high.replace(tzinfo=None),
                                      inc=True)
    found = []
    for moment in days:
        begins = moment.replace(tzinfo=PARIS)
        if moment.date() in recurrence.exceptions or not start <= begins < end:
            continue
        found.append((begins, datetime.combine(moment.date(), recurrence.end, PARIS)))
    return found


def chosen(directory: Directory, site: str | None = None,
           organisation: str | None = None) -> list[Permanence]:
    """The permanences at `site`, with `organisation` among those present (None: any)."""
    return [p for p in directory.permanences if site in (None, p.site)
            and (organisation is None or organisation in p.organisations)]


def occurrences(directory: Directory, start: datetime, end: datetime, site: str | None = None,
                organisation: str | None = None) -> list[Occurrence]:
    """Every occurrence starting from `start` (included) to `end` (excluded), by start."""
    found = []
    for p in chosen(directory, site, organisation):
        place = directory.site(p.site)
        if place is None:
            continue
        for _, recurrence in series(p, start.astimezone(PARIS).date()):
            found += [Occurrence(p, place, s, e) for s, e in between(recurrence, start, end)]
    return sorted(found, key=lambda o: (o.start, o.site.name, o.permanence.id))


def on(permanence: Permanence, day: date) -> list[tuple[time, time]]:
    """The hours of the permanence on `day` (Paris), by start: none when it is not that day."""
    start = datetime.combine(day, time(), PARIS)
    return sorted((s.time(), e.time()) for _, r in series(permanence, day)
                  for s, e in between(r, start, start + timedelta(days=1)))


def weekdays(permanence: Permanence) -> list[Weekday]:
    """The days of the week it may happen: its slots' days, then its rules' (BYDAY, else the
    day of the first occurrence for a weekly rule; none for a day of the month)."""
    days = [s.weekday for s in permanence.schedule]
    for r in permanence.recurrences:
        parts = _parts(r.rule)
        codes = [str(c)[-2:] for c in parts.get("BYDAY", [])] or (
            [BYDAY[r.first.weekday()]] if parts.get("FREQ") == ["WEEKLY"] else [])
        days += [list(Weekday)[BYDAY.index(c)] for c in codes]
    return list(dict.fromkeys(days))


def _parts(rule: str) -> dict[str, list[object]]:
    return dict(icalendar.vRecur.from_ical(rule))


# --- iCalendar ------------------------------------------------------------------------------

def ics(directory: Directory, since: date, until: date, domain: str, now: datetime,
        site: str | None = None, organisation: str | None = None) -> bytes:
    """An iCalendar feed (RFC 5545) of the permanences with an occurrence from `since`
    (included) to `until` (excluded): one event per slot or recurrence, with its rule and its
    exceptions, so that a calendar shows the series (the next ones too); the UID stays the
    same from one reading to the next (`<permanence>.<slot-0|recurrence-0>@<domain>`)."""
    start, end = (datetime.combine(d, time(), PARIS) for d in (since, until))
    names = {o.id: o.name for o in directory.organisations}
    calendar = icalendar.Calendar()
    calendar.add("prodid", "-//Relais//Permanences//FR")
    calendar.add("version", "2.0")
    calendar.add("x-wr-calname", "Permanences")
    calendar.add("x-wr-timezone", "Europe/Paris")
    for p in chosen(directory, site, organisation):
        place = directory.site(p.site)
        if place is None:
            continue
        for key, r in series(p, since):
            if between(r, start, end):
                calendar.add_component(_event(p, place, key, r, names, domain, now))
    calendar.add_missing_timezones()
    feed: bytes = calendar.to_ical()
    return feed


def _event(permanence: Permanence, site: Site, key: str, recurrence: Recurrence,
           names: dict[str, str], domain: str, now: datetime) -> icalendar.Event:
    event = icalendar.Event()
    event.add("uid", f"{permanence.id}.{key}@{domain}")
    event.add("dtstamp", now.astimezone(UTC))
    event.add("summary", f"{'Camion' if permanence.mobile else 'Permanence'} — {site.name}")
    event.add("location", site.name)
    event.add("description", "Présents : " + ", ".join(names.get(o, o)
                                                       for o in permanence.organisations))
    event.add("dtstart", datetime.combine(recurrence.first, recurrence.start, PARIS))
    event.add("dtend", datetime.combine(recurrence.first, recurrence.end, PARIS))
    rule = _parts(recurrence.rule)
    if "UNTIL" in rule:  # its last day, made a moment: in UTC as RFC 5545 wants with a TZID
        last = rule["UNTIL"][0]
        assert isinstance(last, date)
        rule["UNTIL"] = [datetime.combine(last, time(23, 59, 59), PARIS).astimezone(UTC)]
    event.add("rrule", rule)
    if recurrence.exceptions:
        event.add("exdate", [datetime.combine(d, recurrence.start, PARIS)
                             for d in recurrence.exceptions])
    return event


# --- in French ------------------------------------------------------------------------------

def hour(moment: time) -> str:
    """9 h, 9 h 30 (without breaking the line inside)."""
    text = f"{moment.hour}{NBSP}h"
    return text if moment.minute == 0 else f"{text}{NBSP}{moment.minute:02d}"


def day_in_words(day: date) -> str:
    """"24 décembre", "1er mai"."""
    return f"{'1er' if day.day == 1 else day.day} {MOIS[day.month - 1]}"


def in_words(recurrence: Recurrence) -> str:
    """"un mardi sur deux à partir du 17 mars, 9 h 30 – 12 h 30, sauf le 24 décembre";
    "le 2e mardi du mois"...; the rule as it is when it says something less common."""
    rhythm = _rhythm(_parts(recurrence.rule), recurrence.first) or recurrence.rule
    text = f"{rhythm}, {NBSP.join((hour(recurrence.start), '–', hour(recurrence.end)))}"
    if recurrence.exceptions:
        text += ", sauf " + _and([f"le {day_in_words(d)}" for d in recurrence.exceptions])
    return text


def _and(words: Sequence[str]) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} et {words[-1]}"


def _rhythm(parts: dict[str, list[object]], first: date) -> str | None:
    freq = parts.pop("FREQ", [None])[0]
    interval = int(str(parts.pop("INTERVAL", [1])[0]))
    until = parts.pop("UNTIL", [None])[0]
    days = [str(d) for d in parts.pop("BYDAY", [])]
    if parts or not all(d[-2:] in BYDAY for d in days):  # BYSETPOS, COUNT, BYMONTH...: as is
        return None
    text = None
    if freq == "DAILY" and not days and interval == 1:
        text = "chaque jour"
    elif freq == "WEEKLY" and all(len(d) == 2 for d in days):
        named = _and([JOURS[BYDAY.index(d)] for d in days or [BYDAY[first.weekday()]]])
        text = (f"chaque {named}" if interval == 1
                else f"un {named} sur {FOIS[interval]}" if len(days) <= 1 and interval in FOIS
                else f"{named}, toutes les {interval} semaines")
        if interval > 1:
            text += f" à partir du {day_in_words(first)} {first.year}"
    elif freq == "MONTHLY" and interval == 1 and days and all(len(d) > 2 for d in days):
        text = _monthly(days)
    if text is not None and isinstance(until, date):
        text += f" jusqu'au {day_in_words(until)} {until.year}"
    return text


def _monthly(days: Iterable[str]) -> str | None:
    """"le 2e mardi du mois", "les 1er et 3e mardis du mois", "le dernier vendredi du mois"."""
    ranked = [(int(d[:-2]), BYDAY.index(d[-2:])) for d in days]
    if any(not (1 <= n <= 5 or n in (-1, -2)) for n, _ in ranked):
        return None
    rank = {1: "1er", -1: "dernier", -2: "avant-dernier"}
    if len({d for _, d in ranked}) == 1 and len(ranked) > 1:
        return (f"les {_and([rank.get(n, f'{n}e') for n, _ in ranked])} "
                f"{JOURS[ranked[0][1]]}s du mois")
    return _and([f"le {rank.get(n, f'{n}e')} {JOURS[d]}" for n, d in ranked]) + " du mois"
