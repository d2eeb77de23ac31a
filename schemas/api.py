"""Request and response models of the HTTP API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from schemas.vocab import (
    AgeBracket,
    Channel,
    ConsentMethod,
    DataCategory,
    Need,
    Purpose,
    ReferralStatus,
    SituationFlag,
)

SLUG = r"^[a-z0-9][a-z0-9-]*$"
INSEE = r"^(\d{5}|2[AB]\d{3})$"


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IntakeIn(StrictModel):
    site: str = Field(pattern=SLUG, max_length=80, examples=["qpv-etouvie"])
    channel: Channel
    contacted_at: AwareDatetime
    duration_minutes: int | None = Field(default=None, ge=1, le=600)
    needs: list[Need] = Field(min_length=1, max_length=10)
    flags: list[SituationFlag] = Field(default_factory=list, max_length=10)
    age_bracket: AgeBracket | None = None
    commune: str | None = Field(default=None, pattern=INSEE)
    person_id: UUID | None = Field(
        default=None, description="Pseudonymous id of a person met before; omit for a new person."
    )


class IntakeOut(BaseModel):
    id: UUID
    person_id: UUID
    org: str
    site: str
    channel: Channel
    contacted_at: datetime
    needs: list[Need]
    flags: list[SituationFlag]
    age_bracket: AgeBracket | None
    commune: str | None
    visit_number: int
    returning: bool
    created_at: datetime


def _default_valid_until() -> datetime:
    return datetime.now(UTC) + timedelta(days=365)


class ConsentIn(StrictModel):
    person_id: UUID
    purposes: list[Purpose] = Field(min_length=1)
    recipients: list[str] = Field(min_length=1, max_length=50)
    categories: list[DataCategory] = Field(min_length=1)
    notice_version: str = Field(min_length=1, max_length=80)
    method: ConsentMethod
    witness: str | None = Field(default=None, max_length=120)
    captured_by: str = Field(min_length=1, max_length=120)
    captured_at_site: str | None = Field(default=None, pattern=SLUG, max_length=80)
    valid_until: AwareDatetime = Field(default_factory=_default_valid_until)

    @model_validator(mode="after")
    def _check(self) -> ConsentIn:
        if self.method is ConsentMethod.oral_witnessed and not self.witness:
            raise ValueError("an oral agreement needs the witness named (field 'witness')")
        if self.valid_until > datetime.now(UTC) + timedelta(days=731):
            raise ValueError("valid_until: a consent lasts at most 24 months")
        if self.valid_until <= datetime.now(UTC):
            raise ValueError("valid_until must be in the future")
        return self


class ConsentOut(BaseModel):
    id: UUID
    person_id: UUID
    org: str
    purposes: list[Purpose]
    recipients: list[str]
    categories: list[DataCategory]
    notice_version: str
    method: ConsentMethod
    granted_at: datetime
    valid_until: datetime
    status: str


class ReferralOut(BaseModel):
    id: UUID
    person_id: UUID
    intake_id: UUID
    sender_org: str
    target: str
    purpose: Purpose
    status: ReferralStatus
    consent_id: UUID | None
    explanation: dict[str, object]
    created_at: datetime
    updated_at: datetime


class NotificationOut(BaseModel):
    id: UUID
    referral_id: UUID
    recipient_org: str
    channel: str
    address: str
    status: str
    attempts: int
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None
