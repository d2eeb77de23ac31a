"""Intake rules (no I/O)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from uuid import UUID

from schemas.api import IntakeOut
from schemas.events import IntakeRecordedV1
from schemas.vocab import AgeBracket, Purpose

PERSONAL = ("identity", "contact", "note")
SHARING_PURPOSES = {Purpose.share_dossier, Purpose.referral_partner,
                    Purpose.referral_commission}


def age_bracket_for(birth_year: int, today: date) -> AgeBracket:
    age = today.year - birth_year  # at most a year off, as a birth year is all we know
    for bracket, upper in ((AgeBracket.under_16, 15), (AgeBracket.from_16_to_17, 17),
                           (AgeBracket.from_18_to_25, 25), (AgeBracket.from_26_to_29, 29),
                           (AgeBracket.from_30_to_49, 49)):
        if age <= upper:
            return bracket
    return AgeBracket.from_50


def intake_out(row: Any) -> IntakeOut:
    return IntakeOut(
        id=row["id"], person_id=row["person_id"], org=row["org"], site=row["site"],
        permanence=row["permanence"], channel=row["channel"],
        contacted_at=row["contacted_at"], needs=row["needs"], flags=row["flags"],
        age_bracket=row["age_bracket"], commune=row["commune"], gender=row["gender"],
        visit_number=row["visit_number"], returning=row["visit_number"] > 1,
        has_identity=row["has_identity"], has_note=row["note"] is not None,
        signal_id=row["signal_id"], created_at=row["created_at"],
    )


def recorded_event(intake: IntakeOut) -> IntakeRecordedV1:
    """What the other services learn of an intake: no identity, no contact, no note."""
    return IntakeRecordedV1(
        intake_id=intake.id, person_id=intake.person_id, org=intake.org, site=intake.site,
        permanence=intake.permanence, channel=intake.channel,
        contacted_at=intake.contacted_at, needs=intake.needs, flags=intake.flags,
        age_bracket=intake.age_bracket, commune=intake.commune, gender=intake.gender,
        visit_number=intake.visit_number, returning=intake.returning,
    )


@dataclass(frozen=True, slots=True)
class ConsentView:
    consent_id: UUID
    purposes: frozenset[str]
    recipients: frozenset[str]
    categories: frozenset[str]
    valid_until: datetime
    active: bool


def readable(caller_org: str, met_by: set[str], consents: Iterable[ConsentView],
             now: datetime) -> tuple[frozenset[str], UUID | None]:
    """Which personal data categories the caller may read, and under which consent.

    An organisation that met the person reads what it collected. Any other needs a live
    consent naming it as a recipient for a sharing purpose; it reads only the categories that
    consent covers."""
    if caller_org in met_by:
        return frozenset(PERSONAL), None
    live = [c for c in consents
            if c.active and now < c.valid_until and caller_org in c.recipients
            and c.purposes & SHARING_PURPOSES]
    if not live:
        return frozenset(), None
    best = max(live, key=lambda c: (len(c.categories & set(PERSONAL)), c.valid_until))
    return best.categories & frozenset(PERSONAL), best.consent_id


