"""The directory (reference data): organisations, consortia, sites and permanences.

It is one document, validated as a whole (every reference must resolve). The intake service
keeps it (`PUT /v1/directory`, `relais directory load FILE.yaml`) and publishes each new
version; the other services keep the part they need. `demo.yaml` is the demo territory
loaded on first start."""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import yaml
from dateutil.rrule import rrule, rrulestr
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    WithJsonSchema,
    model_validator,
)

from schemas.vocab import Need

SLUG = r"^[a-z0-9][a-z0-9-]*$"
def _naive(value: time) -> time:
    if value.tzinfo is not None:
        raise ValueError("a wall-clock time, without offset (HH:MM)")
    return value


WallTime = Annotated[time, AfterValidator(_naive), WithJsonSchema({
    "type": "string", "pattern": r"^([01]\d|2[0-3]):[0-5]\d(:[0-5]\d(\.\d+)?)?$",
    "description": "A Paris wall-clock time, without offset (HH:MM)", "examples": ["09:30"]})]
"""A time of day at a place: not RFC 3339's `time` (which has an offset)."""
INSEE = r"^(\d{5}|2[AB]\d{3})$"


class Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Organisation(Frozen):
    id: str = Field(pattern=SLUG)
    name: str
    kind: str = Field(examples=["mission_locale", "france_travail", "cap_emploi", "ccas",
                                "plie", "association", "commission", "outreach_team",
                                "coordination"],
                      description="`coordination`: told when a referral's deadline passes.")
    email: EmailStr = Field(description="The team mailbox, told of every referral.")
    counsellors: list[EmailStr] = Field(
        default_factory=list, max_length=50,
        description="Counsellors told by email too (PUT /v1/recipients/{org} overrides).")
    needs: list[Need] = Field(default_factory=list)
    communes: list[str] = Field(default_factory=list)
    min_age: int | None = Field(default=None, ge=0, le=120)
    max_age: int | None = Field(default=None, ge=0, le=120)
    answer_days: int = Field(default=5, ge=1, le=60,
                             description="Deadline for a first answer, in working days.")
    members: list[str] = Field(
        default_factory=list, max_length=100,
        description="For a commission: the organisations that sit on it. Only they (and the "
        "commission itself) open its sessions and decide.")
    retention_months: int = Field(
        default=24, ge=1, le=120,
        description="How long after a person's last activity (a contact, a consent, a move of "
        "a referral) this organisation keeps their data, when no consent is live; Relais "
        "erases a person once every organisation that met them is past its period. 24 (the "
        "CNIL's bound for social and employment support) unless `retention_basis` names the "
        "law that requires longer.")
    retention_basis: str | None = Field(
        default=None, max_length=300,
        description="The legal ground for keeping longer than 24 months (e.g. the audit "
        "obligations of a European Social Fund grant).")

    @model_validator(mode="after")
    def _longer_needs_a_basis(self) -> Organisation:
        if self.retention_months > 24 and not self.retention_basis:
            raise ValueError(f"{self.id}: retention_months over 24 needs retention_basis, the "
                             "law that requires keeping the data that long")
        return self


class Consortium(Frozen):
    """Organisations that share their outreach work (intakes are visible to all members)."""

    id: str = Field(pattern=SLUG)
    name: str
    members: list[str] = Field(min_length=1)


class Programme(Frozen):
    """An "aller vers" programme sharing the instance with others: the organisations that run
    it (its contacts are those they record, at its sites when it names any), who funds it
    (they read its figures and no other's) and who coordinates it (they edit its part of the
    directory: its sites, their permanences, its organisations)."""

    id: str = Field(pattern=SLUG)
    name: str
    organisations: list[str] = Field(
        min_length=1, description="The organisations that run it: its contacts are theirs.")
    sites: list[str] = Field(
        default_factory=list,
        description="Its sites: only the contacts recorded there count (every site if none).")
    funders: list[str] = Field(
        default_factory=list, description="Organisation ids (as in their clients and "
        "accounts; not necessarily in the directory) that read its figures (stats:read).")
    coordinators: list[str] = Field(
        default_factory=list, description="Organisations of the directory that edit its part "
        "of the directory (programme:write) and read its figures.")

    def involves(self, org: str) -> bool:
        return org in self.organisations or org in self.funders or org in self.coordinators


class SiteKind(StrEnum):
    qpv_square = "qpv_square"
    social_centre = "social_centre"
    public_space = "public_space"
    online = "online"
    other = "other"


class Site(Frozen):
    id: str = Field(pattern=SLUG)
    name: str
    kind: SiteKind
    commune: str | None = Field(default=None, pattern=INSEE)
    qpv: str | None = Field(default=None, description="Code of the priority neighbourhood.")


class Weekday(StrEnum):
    monday = "monday"
    tuesday = "tuesday"
    wednesday = "wednesday"
    thursday = "thursday"
    friday = "friday"
    saturday = "saturday"
    sunday = "sunday"


class Slot(Frozen):
    weekday: Weekday
    start: WallTime
    end: WallTime

    @model_validator(mode="after")
    def _ordered(self) -> Slot:
        if self.end <= self.start:
            raise ValueError("a slot ends after it starts")
        return self


RULE_TEXT = re.compile(r"[A-Z0-9=;,+-]+")
RULE_UNTIL = re.compile(r"(?:^|;)UNTIL=([^;]*)")
RULE_PARTS = {
    "WEEKLY": frozenset({"FREQ", "INTERVAL", "UNTIL", "COUNT", "BYDAY", "WKST"}),
    "MONTHLY": frozenset({"FREQ", "INTERVAL", "UNTIL", "COUNT", "BYDAY", "BYMONTHDAY",
                          "BYSETPOS", "WKST"}),
}
"""What a permanence's rule may say, by frequency: weeks (every other Tuesday) or months (the
second Tuesday); no BYHOUR... (the hours are its start and end), no BYMONTH (a season is
an UNTIL, or exceptions), none of python-dateutil's own extensions such as BYEASTER. So
that a rule that can never happen costs little to refuse: python-dateutil looks for its
days up to the year 9999."""
YEARS = range(2000, 2101)
"""The years a rule's first day and its exceptions fall in."""
HORIZON = timedelta(days=5 * 366)
"""How far a rule's first day is looked for when checking it (so that checking a rule that
never happens takes a bounded time)."""


def rule_problem(rule: str) -> str | None:
    """What is wrong with the text of a rule, before python-dateutil reads it."""
    example = "e.g. FREQ=WEEKLY;INTERVAL=2;BYDAY=TU"
    if not RULE_TEXT.fullmatch(rule):
        return f"an RRULE value in capitals, without DTSTART or RRULE: ({example})"
    pairs = [part.partition("=") for part in rule.split(";")]
    names = [name for name, equal, value in pairs if equal and value]
    if len(names) != len(pairs) or len(set(names)) != len(names):
        return f"NAME=VALUE parts separated by ';', each name once ({example})"
    parts = {name: value for name, _, value in pairs}
    frequency = parts.get("FREQ", "")
    if frequency not in RULE_PARTS:
        return (f"FREQ is {' or '.join(RULE_PARTS)} (at most one occurrence a day, its hours "
                "being start and end)")
    unknown = sorted(set(parts) - RULE_PARTS[frequency])
    if unknown:
        return (f"{', '.join(unknown)} not allowed with FREQ={frequency} (parts allowed: "
                f"{', '.join(sorted(RULE_PARTS[frequency]))})")
    for name, bound in (("INTERVAL", 52), ("COUNT", 1000)):
        value = parts.get(name, "1")
        if not value.isdigit() or not 1 <= int(value) <= bound:
            return f"{name} is a whole number from 1 to {bound}"
    return None


class Recurrence(Frozen):
    """Dates by an iCalendar rule (RFC 5545 RRULE): every other week, the second Tuesday of
    the month..., at the same hours (Paris wall-clock time), but on the days excepted."""

    rule: str = Field(
        examples=["FREQ=WEEKLY;INTERVAL=2;BYDAY=TU", "FREQ=MONTHLY;BYDAY=2TU",
                  "FREQ=MONTHLY;BYDAY=TU,TH;BYSETPOS=1,3;UNTIL=20261231"],
        description="An RFC 5545 RRULE value, without DTSTART (that is `first`): at most "
        "one occurrence a day (no HOURLY, MINUTELY, SECONDLY, BYHOUR...); UNTIL, when given, "
        "is the last day it may happen (UNTIL=20261231).")
    start: WallTime
    end: WallTime
    first: date = Field(description="The day of the first occurrence (DTSTART): a day of "
                        "the rule.")
    exceptions: list[date] = Field(
        default_factory=list, max_length=366,
        description="Days it does not happen (EXDATE): days of the rule.")

    @model_validator(mode="after")
    def _ordered(self) -> Recurrence:
        if self.end <= self.start:
            raise ValueError("a recurrence ends after it starts")
        return self

    def dates(self, horizon: date | None = None) -> rrule:
        """Its occurrences' starts, naive Paris wall-clock datetimes (python-dateutil's
        rrule, exceptions not removed); with `horizon`, none after that day (and COUNT
        ignored). ValueError for a rule it cannot read."""
        until = RULE_UNTIL.search(self.rule)
        series = rrulestr(RULE_UNTIL.sub("", self.rule).strip(";"),
                          dtstart=datetime.combine(self.first, self.start))
        assert isinstance(series, rrule)
        last = horizon
        if until is not None:
            try:
                last = datetime.strptime(until.group(1), "%Y%m%d").date()
            except ValueError:
                raise ValueError("UNTIL is the last day, as UNTIL=20261231") from None
            last = last if horizon is None else min(last, horizon)
        if last is None:
            return series
        if horizon is not None:
            series = series.replace(count=None)
        return series.replace(until=datetime.combine(last, time.max))

    def problem(self) -> str | None:
        """What is wrong with the rule, in words (None: nothing). Bounded in time whatever
        the rule: its text is checked first, then its first day looked for within HORIZON."""
        if (wrong := rule_problem(self.rule)) is not None:
            return f"rule {self.rule!r}: {wrong}"
        if self.first.year not in YEARS or any(d.year not in YEARS for d in self.exceptions):
            return (f"rule {self.rule!r}: first and exceptions between {YEARS.start} and "
                    f"{YEARS.stop - 1}")
        try:
            series = self.dates()
            first = next(iter(self.dates(self.first + HORIZON)), None)
        except (ValueError, TypeError, KeyError, OverflowError) as exc:
            return f"rule {self.rule!r}: {exc}"
        if first is None:
            return f"rule {self.rule!r}: no day at all in the five years from {self.first}"
        if first.date() != self.first:
            return (f"rule {self.rule!r}: first ({self.first}) is not one of its days "
                    f"(the next one is {first.date()})")
        if not self.exceptions:
            return None
        days = {d.date() for d in series.between(
            datetime.combine(min(self.exceptions), time.min),
            datetime.combine(max(self.exceptions), time.max), inc=True)}
        missed = sorted(d for d in self.exceptions if d not in days)
        return (f"rule {self.rule!r}: exceptions {', '.join(map(str, missed))} are not "
                "among its days") if missed else None


class Permanence(Frozen):
    """A recurring presence at a site: the truck on Tuesday mornings (`schedule`, slots of
    every week), or twice a month (`recurrences`, by an iCalendar rule), or both."""

    id: str = Field(pattern=SLUG)
    site: str
    mobile: bool
    schedule: list[Slot] = Field(default_factory=list, description="Slots of every week.")
    recurrences: list[Recurrence] = Field(
        default_factory=list, max_length=20,
        description="Other rhythms: every other week, the second Tuesday of the month...")
    organisations: list[str] = Field(min_length=1)

    @model_validator(mode="after")
    def _when(self) -> Permanence:
        if not self.schedule and not self.recurrences:
            raise ValueError(f"permanence {self.id}: give its schedule (slots of every week) "
                             "or its recurrences")
        problems = [f"permanence {self.id}: {p}" for r in self.recurrences
                    if (p := r.problem()) is not None]
        if problems:
            raise ValueError("; ".join(problems))
        return self


class Directory(Frozen):
    organisations: list[Organisation]
    consortia: list[Consortium] = Field(default_factory=list)
    sites: list[Site] = Field(default_factory=list)
    permanences: list[Permanence] = Field(default_factory=list)
    programmes: list[Programme] = Field(
        default_factory=list, description="The programmes sharing the instance (none: the "
        "instance is one programme, and every stats:read client reads all its figures).")

    @model_validator(mode="after")
    def _references_resolve(self) -> Directory:
        problems: list[str] = []
        for kind, items in (("organisation", self.organisations), ("consortium", self.consortia),
                            ("site", self.sites), ("permanence", self.permanences),
                            ("programme", self.programmes)):
            ids = [i.id for i in items]
            problems += [f"duplicate {kind} id {d}" for d in sorted({i for i in ids
                                                                    if ids.count(i) > 1})]
        orgs, sites = {o.id for o in self.organisations}, {s.id for s in self.sites}
        for o in self.organisations:
            problems += [f"organisation {o.id}: unknown member {m}" for m in o.members
                         if m not in orgs]
        for c in self.consortia:
            problems += [f"consortium {c.id}: unknown organisation {m}" for m in c.members
                         if m not in orgs]
        for p in self.permanences:
            if p.site not in sites:
                problems.append(f"permanence {p.id}: unknown site {p.site}")
            problems += [f"permanence {p.id}: unknown organisation {o}"
                         for o in p.organisations if o not in orgs]
        for g in self.programmes:
            problems += [f"programme {g.id}: unknown organisation {o}"
                         for o in (*g.organisations, *g.coordinators) if o not in orgs]
            problems += [f"programme {g.id}: unknown site {s}" for s in g.sites
                         if s not in sites]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def get(self, org_id: str) -> Organisation | None:
        return next((o for o in self.organisations if o.id == org_id), None)

    def site(self, site_id: str) -> Site | None:
        return next((s for s in self.sites if s.id == site_id), None)

    def programme(self, programme_id: str) -> Programme | None:
        return next((g for g in self.programmes if g.id == programme_id), None)

    def partners_of(self, org_id: str) -> set[str]:
        """The organisation and the members of its consortia."""
        return {org_id} | {m for c in self.consortia if org_id in c.members for m in c.members}

    def to_yaml(self) -> str:
        data: dict[str, Any] = self.model_dump(mode="json", exclude_defaults=True)
        return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


def parse(text: str) -> Directory:
    return Directory.model_validate(yaml.safe_load(text))


def load(path: Path | None = None) -> Directory:
    if path is not None:
        return parse(path.read_text("utf-8"))
    return parse(resources.files(__package__).joinpath("demo.yaml").read_text("utf-8"))
