"""Event payloads (the `data` of each CloudEvent). Inside a version, only additive changes;
a breaking change is a new type. No identity, contact details or notes: pseudonymous ids."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from schemas.vocab import (
    AgeBracket,
    Arrival,
    Channel,
    ConsentMethod,
    DataCategory,
    Gender,
    Milestone,
    Need,
    Outcome,
    Purpose,
    ReferralStatus,
    RejectReason,
    SituationFlag,
)

INTAKE_RECORDED = "fr.relais.intake.recorded.v1"
CONSENT_GRANTED = "fr.relais.consent.granted.v1"
CONSENT_WITHDRAWN = "fr.relais.consent.withdrawn.v1"
CONSENT_EXPIRED = "fr.relais.consent.expired.v1"
SIGNAL_RECEIVED = "fr.relais.intake.signal_received.v1"
SIGNAL_CLOSED = "fr.relais.intake.signal_closed.v1"
PERSON_ERASED = "fr.relais.intake.person_erased.v1"
PERSONAL_DATA_READ = "fr.relais.intake.personal_data_read.v1"
PERSON_RECTIFIED = "fr.relais.intake.person_rectified.v1"
PERSON_RESTRICTED = "fr.relais.intake.person_restricted.v1"
PERSON_RESTRICTION_LIFTED = "fr.relais.intake.person_restriction_lifted.v1"
DIRECTORY_UPDATED = "fr.relais.intake.directory_updated.v1"
REFERRAL_CREATED = "fr.relais.referral.created.v1"
REFERRAL_REQUESTED = "fr.relais.referral.requested.v1"
REFERRAL_STATUS_CHANGED = "fr.relais.referral.status_changed.v1"
REFERRAL_REMINDER_DUE = "fr.relais.referral.reminder_due.v1"
REFERRAL_ESCALATED = "fr.relais.referral.escalated.v1"
REFERRAL_STOP_PROCESSING = "fr.relais.referral.stop_processing.v1"
REFERRAL_DOSSIER_READ = "fr.relais.referral.dossier_read.v1"
NOTIFICATION_SENT = "fr.relais.notification.sent.v1"
NOTIFICATION_DELIVERED = "fr.relais.notification.delivered.v1"
NOTIFICATION_FAILED = "fr.relais.notification.failed.v1"


class EventData(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class IntakeRecordedV1(EventData):
    """A contact was recorded at a permanence or through a relay of the network."""

    intake_id: UUID
    person_id: UUID
    org: str
    site: str
    permanence: str | None = None
    channel: Channel
    contacted_at: datetime
    needs: list[Need]
    flags: list[SituationFlag] = Field(default_factory=list)
    age_bracket: AgeBracket | None = None
    commune: str | None = None
    gender: Gender | None = None
    visit_number: int = Field(ge=1)
    returning: bool
    duration_minutes: int | None = Field(default=None, description="Time spent with the "
                                         "person, if given")
    arrival: Arrival | None = Field(default=None, description="walk_in or appointment, if "
                                    "given")
    for_org: str | None = Field(default=None, description="At a shared permanence: the "
                                "partner the contact was for, if given")


class SignalReceivedV1(EventData):
    """A relay of the network signalled someone to reach (no identity: at most a hint, kept
    sealed by the intake service)."""

    signal_id: UUID
    org: str
    relay_kind: str
    commune: str | None = None
    site: str | None = None
    age_bracket: AgeBracket | None = None
    needs: list[Need] = Field(default_factory=list)


class SignalClosedV1(EventData):
    """A signal was closed: answered by a contact (`intake_id`) or closed without one. For the
    statistics per relay kind: no name, no hint."""

    signal_id: UUID
    org: str
    relay_kind: str
    outcome: str = Field(description="reached, not_found, declined, duplicate or other")
    intake_id: UUID | None = Field(default=None, description="The contact that answered it")
    closed_at: datetime


class PersonErasedV1(EventData):
    """The person was erased: every service drops what it holds on this pseudonymous id."""

    person_id: UUID
    erased_by: str = Field(description="The organisation that asked; `relais` for retention")
    erased_at: datetime
    cause: Literal["asked", "retention"] | None = Field(
        default=None, description="`retention`: the retention period after the last activity "
        "ended; `asked` (or absent, before it was said): an organisation asked")


class PersonalDataReadV1(EventData):
    """Someone read a person's personal data (for the consent trail's access log)."""

    person_id: UUID
    org: str
    client_id: str
    consent_id: UUID | None
    categories: list[DataCategory]
    read_at: datetime
    read_by: str | None = Field(default=None, description="The person who read it, for a "
                                "signed-in session of the console (name and organisation); "
                                "none for an API client.")


class PersonRectifiedV1(EventData):
    """A person's identity or contact details were corrected (GDPR art. 16): which fields,
    by whom, never their values (for the consent trail)."""

    person_id: UUID
    org: str
    client_id: str
    fields: list[str] = Field(description="The fields changed: first_name, last_name, "
                              "birth_date, phone, email")
    rectified_at: datetime
    rectified_by: str | None = Field(default=None, description="The person who corrected "
                                     "them, for a signed-in session of the console")


class PersonRestrictedV1(EventData):
    """Processing stopped for a person without erasing them (GDPR art. 18 restriction or art.
    21 objection): every live consent is withdrawn, so referrals stop and their recipients
    are told; no new contact, consent or read until it is lifted."""

    person_id: UUID
    right: Literal["restriction", "objection"]
    org: str
    client_id: str
    channel: str = Field(description="How the person asked: in_person, phone, email, letter "
                         "or online")
    at: datetime


class PersonRestrictionLiftedV1(EventData):
    """The restriction or objection was lifted: processing may go on (a withdrawn consent
    stays withdrawn; the person gives a new one if they wish)."""

    person_id: UUID
    org: str
    client_id: str
    at: datetime


class DossierReadV1(PersonalDataReadV1):
    """A recipient read a referral's dossier (needs, situation) under a consent."""

    referral_id: UUID


class DirectoryUpdatedV1(EventData):
    """A new version of the directory (reference data: no personal data)."""

    version: int
    directory: dict[str, Any]


class ConsentGrantedV1(EventData):
    """The person agreed: to these purposes, for these recipients and data categories."""

    consent_id: UUID
    person_id: UUID
    org: str
    purposes: list[Purpose]
    recipients: list[str]
    categories: list[DataCategory]
    notice_version: str
    notice_hash: str | None = None
    method: ConsentMethod | None = Field(default=None, description="How the person agreed "
                                         "(absent from consents recorded before it was said).")
    evidence_sha256: str | None = Field(default=None, description="The SHA-256 of the sealed "
                                        "signature or photo of the signed form, if any.")
    granted_at: datetime
    valid_until: datetime


class ConsentChangedV1(EventData):
    """What a consent still allows after a withdrawal or its expiry."""

    consent_id: UUID
    person_id: UUID
    org: str
    removed_purposes: list[Purpose]
    removed_recipients: list[str]
    purposes: list[Purpose] = Field(description="What remains allowed")
    recipients: list[str]
    status: str = Field(description="active (partly withdrawn), withdrawn or expired")
    requested_by: str | None = None
    channel: str | None = None
    at: datetime


class ReferralEvent(EventData):
    """What every referral event says of its referral."""

    referral_id: UUID
    person_id: UUID
    intake_id: UUID
    sender_org: str
    target: str
    purpose: Purpose


class ReferralCreatedV1(ReferralEvent):
    """A referral was routed and waits for a consent that covers it."""

    status: ReferralStatus
    explanation: dict[str, Any]
    part_of: UUID | None = Field(default=None, description="The referral this one follows "
                                 "(a commission decision)")


class ReferralRequestedV1(ReferralEvent):
    """A consent covers the referral: the target is asked to follow the person."""

    consent_id: UUID


class ReferralStatusChangedV1(ReferralEvent):
    """The closed loop moved: who did what (free text stays in the referral's history)."""

    from_status: ReferralStatus
    status: ReferralStatus
    actor_org: str = Field(description="The organisation that acted; `relais` for Relais")
    action: str
    reason: RejectReason | None = None
    outcome: Outcome | None = None
    milestone: Milestone | None = None
    cause: str | None = Field(default=None, description="consent_withdrawn, consent_expired, "
                              "deadline_passed, commission_decision")
    proposal: str | None = Field(default=None, description="On expiry or rejection: the "
                                 "next candidate that has places, if any")
    first_referral_id: UUID | None = Field(
        default=None, description="When this referral follows another (a commission's "
        "decision, a refusal sent on): the first referral of the chain")
    first_sender: str | None = Field(
        default=None, description="The sender of the first referral of the chain, when it is "
        "not this referral's sender: it is told of the answers too, up to the outcome")
    at: datetime


class ReferralReminderDueV1(ReferralEvent):
    """Nobody answered yet: half-way to the deadline, or at the deadline."""

    timer: str = Field(description="half_way or deadline")
    deadline: datetime


class ReferralEscalatedV1(ReferralEvent):
    """The deadline passed without an answer: the coordinator is told."""

    coordinator: str
    deadline: datetime


class ReferralStopProcessingV1(ReferralEvent):
    """The consent that let the recipient have the dossier was withdrawn or expired: the
    recipient must stop processing the person's data."""

    cause: str


class NotificationSentV1(EventData):
    """A message left Relais (for email: accepted by the SMTP server)."""

    notification_id: UUID
    referral_id: UUID
    recipient_org: str
    channel: str
    message_id: str
    sent_at: datetime


class NotificationOutcomeV1(EventData):
    """The channel confirmed the notification arrived (delivered), or gave up (failed)."""

    notification_id: UUID
    referral_id: UUID
    recipient_org: str
    channel: str
    kind: str = Field(description="What the notification was about (new_referral, ...)")
    reason: str | None = Field(default=None, description="Why it failed")
    at: datetime


EVENT_MODELS: dict[str, type[EventData]] = {
    INTAKE_RECORDED: IntakeRecordedV1,
    SIGNAL_RECEIVED: SignalReceivedV1,
    SIGNAL_CLOSED: SignalClosedV1,
    PERSON_ERASED: PersonErasedV1,
    PERSONAL_DATA_READ: PersonalDataReadV1,
    PERSON_RECTIFIED: PersonRectifiedV1,
    PERSON_RESTRICTED: PersonRestrictedV1,
    PERSON_RESTRICTION_LIFTED: PersonRestrictionLiftedV1,
    DIRECTORY_UPDATED: DirectoryUpdatedV1,
    CONSENT_GRANTED: ConsentGrantedV1,
    CONSENT_WITHDRAWN: ConsentChangedV1,
    CONSENT_EXPIRED: ConsentChangedV1,
    REFERRAL_CREATED: ReferralCreatedV1,
    REFERRAL_REQUESTED: ReferralRequestedV1,
    REFERRAL_STATUS_CHANGED: ReferralStatusChangedV1,
    REFERRAL_REMINDER_DUE: ReferralReminderDueV1,
    REFERRAL_ESCALATED: ReferralEscalatedV1,
    REFERRAL_STOP_PROCESSING: ReferralStopProcessingV1,
    REFERRAL_DOSSIER_READ: DossierReadV1,
    NOTIFICATION_SENT: NotificationSentV1,
    NOTIFICATION_DELIVERED: NotificationOutcomeV1,
    NOTIFICATION_FAILED: NotificationOutcomeV1,
}
