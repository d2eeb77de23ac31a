"""The directory (reference data): organisations, consortia, sites and permanences.

It is one document, validated as a whole (every reference must resolve). The intake service
keeps it (`PUT /v1/directory`, `relais directory load FILE.yaml`) and publishes each new
version; the other services keep the part they need. `demo.yaml` is the demo territory
loaded on first start."""

from __future__ import annotations

from datetime import time
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, EmailStr, Field, model_validator

from schemas.vocab import Need

SLUG = r"^[a-z0-9][a-z0-9-]*$"
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


class Consortium(Frozen):
    """Organisations that share their outreach work (intakes are visible to all members)."""

    id: str = Field(pattern=SLUG)
    name: str
    members: list[str] = Field(min_length=1)


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
    start: time
    end: time

    @model_validator(mode="after")
    def _ordered(self) -> Slot:
        if self.end <= self.start:
            raise ValueError("a slot ends after it starts")
        return self


class Permanence(Frozen):
    """A recurring presence at a site: the truck on Tuesday mornings, a weekly office hour."""

    id: str = Field(pattern=SLUG)
    site: str
    mobile: bool
    schedule: list[Slot] = Field(min_length=1)
    organisations: list[str] = Field(min_length=1)


class Directory(Frozen):
    organisations: list[Organisation]
    consortia: list[Consortium] = Field(default_factory=list)
    sites: list[Site] = Field(default_factory=list)
    permanences: list[Permanence] = Field(default_factory=list)

    @model_validator(mode="after")
    def _references_resolve(self) -> Directory:
        problems: list[str] = []
        for kind, items in (("organisation", self.organisations), ("consortium", self.consortia),
                            ("site", self.sites), ("permanence", self.permanences)):
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
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def get(self, org_id: str) -> Organisation | None:
        return next((o for o in self.organisations if o.id == org_id), None)

    def site(self, site_id: str) -> Site | None:
        return next((s for s in self.sites if s.id == site_id), None)

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
