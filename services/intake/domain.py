"""Intake rules (no I/O)."""

from __future__ import annotations

from datetime import date
from typing import Any

from schemas.api import IntakeOut
from schemas.events import IntakeRecordedV1
from schemas.vocab import AgeBracket
from services.runtime import access


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
        duration_minutes=row["duration_minutes"], arrival=row["arrival"],
        for_org=row["for_org"],
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
        duration_minutes=intake.duration_minutes, arrival=intake.arrival,
        for_org=intake.for_org,
    )


def grant(row: Any) -> access.Grant:
    """A consent of the intake service's view, for the access rule."""
    return access.Grant(row["consent_id"], row["org"], frozenset(row["purposes"]),
                        frozenset(row["recipients"]), frozenset(row["categories"]),
                        row["valid_until"], row["status"] == "active")
