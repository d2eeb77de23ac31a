"""Retention (issue #14), the decision in pure code: who is past their retention period.

A person is kept while a consent of theirs is live, and for the longest retention period of
the organisations that met them after their last activity (a contact, a consent granted, a
referral created, requested or moved); each organisation sets its period in the directory
(`retention_months`, 24 by default, the CNIL's bound for social and employment support; longer
only with `retention_basis`). Past it, the person is erased as `DELETE /v1/people/{id}` erases
(crypto-shredding, the erasure ledger, the `person_erased` event, cause `retention`). The
loading and the writing are in `services/intake/erasure.py`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from dateutil.relativedelta import relativedelta

DEFAULT_MONTHS = 24


@dataclass(frozen=True)
class Seen:
    """What the database says of a person not erased and with no live consent."""

    person_id: UUID
    last_activity: datetime
    orgs: tuple[str, ...]
    """The organisations that met them."""


@dataclass(frozen=True)
class Due:
    person_id: UUID
    last_activity: datetime
    months: int
    kept_by: str | None
    """The organisation whose period is the longest (None: no organisation of the directory
    met them, the default applies)."""
    since: datetime
    """When the period ended."""


def period(orgs: Sequence[str], months: Mapping[str, int]) -> tuple[int, str | None]:
    """The longest period of the organisations that met the person, and whose it is; one no
    longer in the directory counts for the default (24 months), never for less."""
    if not orgs:
        return DEFAULT_MONTHS, None
    longest, org = max(((months.get(o, DEFAULT_MONTHS), o) for o in orgs),
                       key=lambda item: (item[0], item[1] in months, item[1]))
    return longest, org


def shortest(months: Mapping[str, int]) -> int:
    """No one is due before this many months: the candidates to load."""
    return min([*months.values(), DEFAULT_MONTHS])


def cutoff(months: Mapping[str, int], now: datetime) -> datetime:
    """Anyone due at `now` had their last activity before this."""
    return now - relativedelta(months=shortest(months))


def end_of(last_activity: datetime, months: int) -> datetime:
    return last_activity + relativedelta(months=months)


def due(seen: Sequence[Seen], months: Mapping[str, int], now: datetime) -> list[Due]:
    """Those past their period at `now`, the longest overdue first."""
    found = []
    for person in seen:
        length, org = period(person.orgs, months)
        since = end_of(person.last_activity, length)
        if since <= now:
            found.append(Due(person.person_id, person.last_activity, length, org, since))
    return sorted(found, key=lambda d: (d.since, str(d.person_id)))


def report(plan: Sequence[Due], now: datetime) -> list[str]:
    """`relais retention report`: one line per person the next run would erase, and why."""
    lines = [f"Retention at {now:%Y-%m-%d %H:%M %Z}: {len(plan)} people past their period "
             "(nothing is erased by this report)."]
    for d in plan:
        kept = f"{d.kept_by} keeps {d.months} months" if d.kept_by else (
            f"no organisation of the directory met them: {d.months} months")
        lines.append(f"{d.person_id}  last activity {d.last_activity:%Y-%m-%d}; {kept}; "
                     f"period ended {d.since:%Y-%m-%d}")
    return lines
