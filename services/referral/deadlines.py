"""Deadlines in working days, and the chase that follows a referral nobody answers (no I/O).

Working days skip weekends and French public holidays (fixed dates and the Easter-based
ones). A partner's deadline counts from the hand-off; half-way and at the deadline the
recipient is reminded, one working day later the coordinator is told, and one more working
day later the referral expires with a proposal of the next candidate."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from enum import StrEnum
from functools import cache


class Timer(StrEnum):
    half_way = "half_way"
    deadline = "deadline"
    escalate = "escalate"
    expire = "expire"


def easter(year: int) -> date:
    """Gregorian Easter Sunday (the anonymous algorithm, Meeus/Jones/Butcher)."""
    a, b, c = year % 19, year // 100, year % 100
    d, e = b // 4, b % 4
    g = (8 * b + 13) // 25
    h = (19 * a + b - d - g + 15) % 30
    i, k = c // 4, c % 4
    l_ = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 19 * l_) // 433
    month = (h + l_ - 7 * m + 90) // 25
    return date(year, month, (h + l_ - 7 * m + 33 * month + 19) % 32)


@cache
def holidays(year: int) -> frozenset[date]:
    sunday = easter(year)
    fixed = [(1, 1), (5, 1), (5, 8), (7, 14), (8, 15), (11, 1), (11, 11), (12, 25)]
    return frozenset([date(year, m, d) for m, d in fixed] + [
        sunday + timedelta(days=1), sunday + timedelta(days=39), sunday + timedelta(days=50)])


def is_working_day(day: date) -> bool:
    return day.weekday() < 5 and day not in holidays(day.year)


def add_working_days(start: datetime, days: int) -> datetime:
    """The same time of day, `days` working days later."""
    moment = start
    while days > 0:
        moment += timedelta(days=1)
        if is_working_day(moment.date()):
            days -= 1
    return moment


def schedule(requested_at: datetime, answer_days: int) -> dict[Timer, datetime]:
    deadline = add_working_days(requested_at, answer_days)
    escalate = add_working_days(deadline, 1)
    return {
        Timer.half_way: requested_at + (deadline - requested_at) / 2,
        Timer.deadline: deadline,
        Timer.escalate: escalate,
        Timer.expire: add_working_days(escalate, 1),
    }
