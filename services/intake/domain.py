"""Intake rules (no I/O)."""

from __future__ import annotations

from typing import Any

from schemas.api import IntakeOut
from schemas.events import IntakeRecordedV1


def intake_out(row: Any) -> IntakeOut:
    return IntakeOut(
        id=row["id"], person_id=row["person_id"], org=row["org"], site=row["site"],
        channel=row["channel"], contacted_at=row["contacted_at"], needs=row["needs"],
        flags=row["flags"], age_bracket=row["age_bracket"], commune=row["commune"],
        visit_number=row["visit_number"], returning=row["visit_number"] > 1,
        created_at=row["created_at"],
    )


def recorded_event(intake: IntakeOut) -> IntakeRecordedV1:
    """What the other services learn of an intake: no identity, no contact, no note."""
    return IntakeRecordedV1(
        intake_id=intake.id, person_id=intake.person_id, org=intake.org, site=intake.site,
        channel=intake.channel, contacted_at=intake.contacted_at, needs=intake.needs,
        flags=intake.flags, age_bracket=intake.age_bracket, commune=intake.commune,
        visit_number=intake.visit_number, returning=intake.returning,
    )
