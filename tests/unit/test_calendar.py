"""When the permanences happen: their recurrences (RFC 5545 rules), expanded in Paris time,
written as iCalendar, and said in French."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any

import icalendar
import pytest
from pydantic import ValidationError

from services.directory import Directory, Permanence, Recurrence, calendar, load
from services.runtime.web import schedule

PARIS = calendar.PARIS


def directory(**permanence: Any) -> Directory:
    base = load().model_dump(mode="json")
    base["permanences"] = [{"id": "camion-nord", "site": "qpv-etouvie", "mobile": True,
                            "organisations": ["mission-locale"], **permanence}]
    return Directory.model_validate(base)


def starts(d: Directory, since: date, until: date) -> list[datetime]:
    found = calendar.occurrences(d, datetime.combine(since, time(), PARIS),
                                 datetime.combine(until, time(), PARIS))
    return [o.start for o in found]


def paris(year: int, month: int, day: int, hour: int = 0, minute: int = 0,
          second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=PARIS)


EVERY_OTHER_TUESDAY = {"rule": "FREQ=WEEKLY;INTERVAL=2;BYDAY=TU", "start": "09:30",
                       "end": "12:30", "first": "2026-03-17"}


def test_every_other_week_skips_the_weeks_between() -> None:
    d = directory(recurrences=[EVERY_OTHER_TUESDAY])
    assert starts(d, date(2026, 4, 1), date(2026, 5, 1)) == [
        paris(2026, 4, 14, 9, 30), paris(2026, 4, 28, 9, 30)]
    permanence = d.permanences[0]
    assert calendar.on(permanence, date(2026, 4, 14)) == [(time(9, 30), time(12, 30))]
    assert calendar.on(permanence, date(2026, 4, 21)) == []  # a Tuesday, not its turn


def test_the_second_tuesday_of_the_month() -> None:
    d = directory(recurrences=[{"rule": "FREQ=MONTHLY;BYDAY=2TU", "start": "14:00",
                                "end": "17:00", "first": "2026-01-13"}])
    found = calendar.occurrences(d, paris(2026, 1, 1), paris(2026, 5, 1))
    assert [o.start.date() for o in found] == [date(2026, 1, 13), date(2026, 2, 10),
                                               date(2026, 3, 10), date(2026, 4, 14)]
    assert found[0].end == paris(2026, 1, 13, 17)


def test_an_exception_day_is_left_out() -> None:
    d = directory(recurrences=[EVERY_OTHER_TUESDAY | {"exceptions": ["2026-04-14"]}])
    assert starts(d, date(2026, 4, 1), date(2026, 5, 1)) == [paris(2026, 4, 28, 9, 30)]


def test_the_hours_stay_paris_hours_across_the_change_of_time() -> None:
    # 29 March 2026: France moves to summer time (UTC+1 then UTC+2).
    d = directory(schedule=[{"weekday": "tuesday", "start": "09:30", "end": "12:30"}],
                  recurrences=[{"rule": "FREQ=WEEKLY;BYDAY=SA", "start": "09:30",
                                "end": "11:00", "first": "2026-03-21"}])
    found = starts(d, date(2026, 3, 21), date(2026, 4, 1))
    assert [(s.hour, s.minute) for s in found] == [(9, 30)] * 4
    assert [s.utcoffset() for s in found] == [timedelta(hours=h) for h in (1, 1, 1, 2)]
    assert [s.date() for s in found] == [date(2026, 3, 21), date(2026, 3, 24),
                                         date(2026, 3, 28), date(2026, 3, 31)]


def test_a_weekly_schedule_works_as_before() -> None:
    d = load()
    truck = next(p for p in d.permanences if p.id == "camion-etouvie-mardi")
    assert truck.recurrences == [] and truck.schedule
    week = calendar.occurrences(d, paris(2026, 11, 16), paris(2026, 11, 23), "qpv-etouvie")
    assert [(o.permanence.id, o.start) for o in week] == [
        ("camion-etouvie-mardi", paris(2026, 11, 17, 9, 30))]


@pytest.mark.parametrize(("recurrence", "says"), [
    ({"rule": "FREQ=HOURLY"}, "at most one occurrence a day"),
    ({"rule": "FREQ=WEEKLY;BYDAY=TU;BYHOUR=9,14"}, "BYHOUR not allowed"),
    ({"rule": "FREQ=WEEKLY;INTERVAL=0;BYDAY=TU"}, "INTERVAL is a whole number from 1 to 52"),
    ({"rule": "FREQ=WEEKLY;INTERVAL=-1;BYDAY=TU"}, "INTERVAL is a whole number from 1 to 52"),
    ({"rule": "INTERVAL=2;BYDAY=TU"}, "FREQ is WEEKLY or MONTHLY"),
    ({"rule": "FREQ=YEARLY;BYEASTER=0"}, "FREQ is WEEKLY or MONTHLY"),
    ({"rule": "FREQ=MONTHLY;BYMONTH=2;BYMONTHDAY=30"}, "BYMONTH not allowed"),
    ({"rule": "FREQ=WEEKLY;;BYDAY=TU"}, "NAME=VALUE parts"),
    ({"rule": "FREQ=MONTHLY;BYDAY=TU;BYSETPOS=6", "first": "2026-03-03"}, "no day at all"),
    ({"first": "1990-03-03"}, "between 2000 and 2100"),
    ({"rule": "FREQ=WEEKLY;BYDAY=XX"}, "invalid 'BYDAY'"),
    ({"rule": "DTSTART:20260317T093000\nRRULE:FREQ=WEEKLY"}, "without DTSTART"),
    ({"rule": "FREQ=WEEKLY;UNTIL=20261231T000000Z"}, "UNTIL is the last day"),
    ({"first": "2026-03-18"}, "first (2026-03-18) is not one of its days"),
    ({"exceptions": ["2026-03-24"]}, "exceptions 2026-03-24 are not among its days"),
    ({"rule": "FREQ=WEEKLY;BYDAY=TU;UNTIL=20260101"}, "no day at all"),
])
def test_a_bad_rule_is_refused_naming_the_permanence(recurrence: dict[str, Any],
                                                     says: str) -> None:
    with pytest.raises(ValidationError) as refused:
        directory(recurrences=[EVERY_OTHER_TUESDAY | recurrence])
    message = str(refused.value)
    assert "permanence camion-nord: rule" in message and says in message


def test_a_permanence_needs_a_schedule_or_a_recurrence() -> None:
    with pytest.raises(ValidationError, match=r"its schedule .* or its recurrences"):
        directory()
    assert "recurrences" not in directory(schedule=[{
        "weekday": "monday", "start": "09:00", "end": "12:00"}]).to_yaml()


def test_until_is_the_last_day_included() -> None:
    d = directory(recurrences=[EVERY_OTHER_TUESDAY | {
        "rule": "FREQ=WEEKLY;INTERVAL=2;BYDAY=TU;UNTIL=20260414"}])
    assert starts(d, date(2026, 3, 1), date(2026, 6, 1))[-1] == paris(2026, 4, 14, 9, 30)


def test_the_feed_has_one_event_per_rhythm_with_its_rule_and_exceptions() -> None:
    d = directory(schedule=[{"weekday": "friday", "start": "14:00", "end": "16:00"}],
                  recurrences=[EVERY_OTHER_TUESDAY | {
                      "rule": "FREQ=WEEKLY;INTERVAL=2;BYDAY=TU;UNTIL=20261231",
                      "exceptions": ["2026-04-14"]}])
    feed = icalendar.Calendar.from_ical(calendar.ics(
        d, date(2026, 4, 1), date(2026, 5, 1), "relais.test", paris(2026, 4, 1)))
    events = {e.uid: e for e in feed.events}
    assert set(events) == {"camion-nord.slot-0@relais.test",
                           "camion-nord.recurrence-0@relais.test"}
    series = events["camion-nord.recurrence-0@relais.test"]
    assert series.start == paris(2026, 3, 17, 9, 30)
    assert "DTSTART;TZID=Europe/Paris:20260317T093000" in series.to_ical().decode()
    [rule] = series.rrules
    assert rule["FREQ"] == ["WEEKLY"] and rule["INTERVAL"] == [2] and rule["BYDAY"] == ["TU"]
    assert rule["UNTIL"] == [paris(2026, 12, 31, 23, 59, 59)]  # written in UTC
    assert series.exdates == [paris(2026, 4, 14, 9, 30)]
    assert series.summary == "Camion — Étouvie, place du marché"
    assert series.location == "Étouvie, place du marché"
    assert "Mission locale" in (series.description or "")
    assert [t.tz_name for t in feed.timezones] == ["Europe/Paris"]
    weekly = events["camion-nord.slot-0@relais.test"]
    assert weekly.start == paris(2026, 4, 3, 14)
    assert weekly.rrules[0]["BYDAY"] == ["FR"]


@pytest.mark.parametrize(("rule", "first", "words"), [
    ("FREQ=WEEKLY;INTERVAL=2;BYDAY=TU", "2026-03-17",
     "un mardi sur deux à partir du 17 mars 2026"),
    ("FREQ=WEEKLY;BYDAY=MO,TH", "2026-03-16", "chaque lundi et jeudi"),
    ("FREQ=MONTHLY;BYDAY=2TU", "2026-01-13", "le 2e mardi du mois"),
    ("FREQ=MONTHLY;BYDAY=1TU,3TU", "2026-01-06", "les 1er et 3e mardis du mois"),
    ("FREQ=MONTHLY;BYDAY=-1FR;UNTIL=20261231", "2026-01-30",
     "le dernier vendredi du mois jusqu'au 31 décembre 2026"),
    ("FREQ=MONTHLY;BYDAY=TU,TH;BYSETPOS=1", "2026-01-01",
     "FREQ=MONTHLY;BYDAY=TU,TH;BYSETPOS=1"),  # less common: the rule as it is
])
def test_a_recurrence_in_french(rule: str, first: str, words: str) -> None:
    recurrence = Recurrence(rule=rule, start=time(9, 30), end=time(12, 30),
                            first=date.fromisoformat(first))
    hours = "9 h 30 – 12 h 30".replace(" ", "\u00a0")
    assert calendar.in_words(recurrence) == f"{words}, {hours}"


def test_exceptions_in_french_after_the_weekly_slots() -> None:
    permanence = Permanence.model_validate({
        "id": "p", "site": "s", "mobile": False, "organisations": ["o"],
        "schedule": [{"weekday": "friday", "start": "14:00", "end": "16:00"}],
        "recurrences": [EVERY_OTHER_TUESDAY | {"exceptions": ["2026-12-22", "2027-01-05"]}]})
    assert [line.replace("\u00a0", " ") for line in
            schedule(permanence.schedule, permanence.recurrences)] == [
        "vendredi 14 h – 16 h",
        "un mardi sur deux à partir du 17 mars 2026, 9 h 30 – 12 h 30, "
        "sauf le 22 décembre et le 5 janvier"]
