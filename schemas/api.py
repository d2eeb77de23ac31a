"""Request and response models of the HTTP API."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Literal
from uuid import UUID

from pydantic import (
    AwareDatetime,
    Base64Bytes,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    field_validator,
    model_validator,
)

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
    WithdrawalChannel,
    WithdrawalRequester,
)

SLUG = r"^[a-z0-9][a-z0-9-]*$"
INSEE = r"^(\d{5}|2[AB]\d{3})$"
SHA256 = r"^[0-9a-f]{64}$"
EVIDENCE_MAX = 512 * 1024
"""The largest image of a signature or a signed form, in bytes (a drawn signature is a few
kilobytes; the outreach app reduces a photo to well under this)."""


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


NOTE_MAX = 1000
# A French social security number (NIR): sex, year, month, department (2A/2B for Corsica),
# commune, order, and an optional key; spaces, dots or dashes between the groups.
NIR = re.compile(
    r"(?<![0-9A-Za-z])[1-478][ .-]?\d{2}[ .-]?(0[1-9]|1[0-2]|[2-9]\d)[ .-]?(\d{2}|2[AaBb])"
    r"[ .-]?\d{3}[ .-]?\d{3}([ .-]?\d{2})?(?![0-9A-Za-z])"
)
PHONE = r"^\+?[0-9 .()-]{6,20}$"


def _no_nir(text: str | None) -> str | None:
    if text and NIR.search(text):
        raise ValueError(
            "must not contain a social security number (NIR): keep it out of Relais"
        )
    return text


def identity_tag(identity: Mapping[str, object]) -> str:
    """The ETag of a person's identity as the API gives it (its JSON without the fields it
    lacks): what `If-Match` names to correct it only if nobody changed it since."""
    canonical = json.dumps(dict(identity), sort_keys=True, separators=(",", ":"))
    return '"' + hashlib.sha256(canonical.encode()).hexdigest()[:32] + '"'


class Identity(StrictModel):
    """Optional: an anonymous first contact is a valid intake."""

    first_name: str | None = Field(default=None, min_length=1, max_length=80)
    last_name: str | None = Field(default=None, min_length=1, max_length=80)
    birth_date: date | None = None
    phone: str | None = Field(default=None, pattern=PHONE)
    email: EmailStr | None = None

    @property
    def categories(self) -> set[str]:
        named = self.first_name or self.last_name or self.birth_date
        reach = self.phone or self.email
        return {c for c, present in (("identity", named), ("contact", reach)) if present}


class IntakeIn(StrictModel):
    site: str | None = Field(default=None, pattern=SLUG, max_length=80,
                             examples=["qpv-etouvie"],
                             description="Where; optional when the permanence is given.")
    channel: Channel
    contacted_at: AwareDatetime
    permanence: str | None = Field(default=None, pattern=SLUG, max_length=80,
                                   examples=["camion-etouvie-mardi"])
    duration_minutes: int | None = Field(default=None, ge=1, le=600)
    arrival: Arrival | None = Field(
        default=None, description="At a permanence: came without an appointment (walk_in) "
        "or with one (appointment).")
    for_org: str | None = Field(
        default=None, pattern=SLUG, max_length=80, examples=["mission-locale"],
        description="At a permanence shared by several partners: the organisation the "
        "contact was for, one of those the directory says are present at it.")
    needs: list[Need] = Field(min_length=1, max_length=10)
    flags: list[SituationFlag] = Field(default_factory=list, max_length=10)
    age_bracket: AgeBracket | None = None
    commune: str | None = Field(default=None, pattern=INSEE)
    gender: Gender | None = Field(default=None, description="Only if the person wishes to say.")
    birth_year: int | None = Field(default=None, ge=1900, le=2100,
                                   description="Gives the age bracket when it is not given.")
    person_id: UUID | None = Field(
        default=None, description="Pseudonymous id of a person met before; omit for a new person."
    )
    identity: Identity | None = None
    note: str | None = Field(default=None, max_length=NOTE_MAX,
                             description="Short free text; never a social security number.")
    signal_id: UUID | None = Field(default=None,
                                   description="The network signal this contact answers.")

    _note_has_no_nir = field_validator("note")(_no_nir)

    @model_validator(mode="after")
    def _somewhere(self) -> IntakeIn:
        if self.site is None and self.permanence is None:
            raise ValueError("give the site or the permanence of the contact")
        return self


class IntakeOut(BaseModel):
    """Never the identity or the note: those are read through GET /v1/people/{id}."""

    id: UUID
    person_id: UUID
    org: str
    site: str
    permanence: str | None = None
    channel: Channel
    contacted_at: datetime
    needs: list[Need]
    flags: list[SituationFlag]
    age_bracket: AgeBracket | None
    commune: str | None
    gender: Gender | None = None
    duration_minutes: int | None = None
    arrival: Arrival | None = None
    for_org: str | None = None
    visit_number: int
    returning: bool
    has_identity: bool
    has_note: bool
    signal_id: UUID | None
    created_at: datetime


GRANT_SKEW = timedelta(minutes=2)
"""How far ahead of the server a device's clock may be when it says when a person agreed."""
GRANT_PAST = timedelta(days=7)
"""How long before it is recorded a consent may have been given (a device offline for days);
older is refused, so that a consent cannot be dated back at will."""


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
    evidence_sha256: str | None = Field(
        default=None, pattern=SHA256,
        description="For a signed consent: the SHA-256 (hex) of the signature drawn on the "
        "screen or of the photo of the signed form, as `POST /v1/people/{id}/evidence` "
        "sealed it in the identity vault.")
    granted_at: AwareDatetime | None = Field(
        default=None, description="When the person agreed (a device that recorded it "
        "offline sends that time, not the time it syncs); now when omitted. Never in the "
        f"future (a device's clock may be {GRANT_SKEW.seconds // 60} minutes ahead), nor more "
        f"than {GRANT_PAST.days} days before it is recorded.")

    @model_validator(mode="after")
    def _check(self) -> ConsentIn:
        if self.method is ConsentMethod.oral_witnessed and not self.witness:
            raise ValueError("an oral agreement needs the witness named (field 'witness')")
        if self.method is ConsentMethod.oral_witnessed and self.evidence_sha256:
            raise ValueError("evidence_sha256: an oral agreement has no signature to seal")
        if self.granted_at is not None and self.granted_at > datetime.now(UTC) + GRANT_SKEW:
            raise ValueError("granted_at: the time the person agreed cannot be in the future")
        if self.granted_at is not None and self.granted_at < datetime.now(UTC) - GRANT_PAST:
            raise ValueError("granted_at: a consent is recorded within "
                             f"{GRANT_PAST.days} days of being given")
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
    notice_hash: str | None
    method: ConsentMethod
    evidence_sha256: str | None = None
    granted_at: datetime
    valid_until: datetime
    status: str


class ReferralOut(BaseModel):
    id: UUID
    person_id: UUID | None = Field(description="The pseudonymous person id; a recipient "
                                   "sees a referral only once a consent hands it off, and "
                                   "no longer gets the id once told to stop processing.")
    intake_id: UUID
    sender_org: str
    target: str
    purpose: Purpose
    status: ReferralStatus
    consent_id: UUID | None
    explanation: dict[str, object] = Field(
        description="Why this target: the rule, the candidates weighed, the reason.")
    origin: str = Field(description="routing, manual or commission")
    part_of: UUID | None = Field(description="The referral this one follows, if any.")
    requested_at: datetime | None = Field(description="When it was handed off.")
    due_at: datetime | None = Field(description="The recipient's deadline for a first answer.")
    answered_at: datetime | None
    reject_reason: RejectReason | None
    outcome: Outcome | None
    created_at: datetime
    updated_at: datetime


class HistoryEntry(BaseModel):
    from_status: ReferralStatus | None
    status: ReferralStatus
    at: datetime
    org: str | None = Field(description="Who acted (`relais`: the consent gate or a deadline).")
    action: str
    reason: str | None
    detail: dict[str, object]


class ChainLink(BaseModel):
    """A referral of the chain as the senders of the chain see it: who it went to, where it
    stands, the codes of its answer; never the dossier, the consent or free text."""

    id: UUID
    part_of: UUID | None
    sender_org: str
    target: str
    purpose: Purpose
    status: ReferralStatus
    origin: str
    reject_reason: RejectReason | None
    outcome: Outcome | None
    proposal: str | None = Field(description="The next candidate proposed on a refusal or "
                                 "an expiry.")
    created_at: datetime
    updated_at: datetime


class ReferralDetail(ReferralOut):
    history: list[HistoryEntry]
    chain: list[ChainLink] = Field(
        default_factory=list, description="The first referral of the chain and the ones that "
        "follow it (a commission's decision, a refusal sent on), oldest first: for the "
        "senders of the chain only (empty for anyone else, and when nothing follows).")


class ForwardIn(StrictModel):
    """Send a rejected or expired referral on: to the partner Relais proposed, unless
    `target` names another."""

    target: str | None = Field(default=None, pattern=SLUG, max_length=80,
                               examples=["france-travail"])
    reason: str | None = Field(default=None, min_length=1, max_length=500,
                               description="Why (no personal data).")

    _reason_has_no_nir = field_validator("reason")(_no_nir)


class ReferralPage(BaseModel):
    items: list[ReferralOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page.")


class ReferralIn(StrictModel):
    """A referral by hand, to a chosen target: it waits for a consent that covers it."""

    intake_id: UUID
    target: str = Field(pattern=SLUG, max_length=80, examples=["ccas"])
    purpose: Purpose = Purpose.referral_partner
    reason: str = Field(min_length=1, max_length=500,
                        description="Why this target (no personal data).")

    _reason_has_no_nir = field_validator("reason")(_no_nir)


class ActionIn(StrictModel):
    """What the caller says with an action: a reason to reject (`text` when `other`), an
    outcome to complete, a milestone to start, a free comment otherwise."""

    reason: RejectReason | None = None
    text: str | None = Field(default=None, max_length=500)
    outcome: Outcome | None = None
    milestone: Milestone | None = None

    _text_has_no_nir = field_validator("text")(_no_nir)


class PartnerOut(BaseModel):
    id: str
    name: str
    kind: str
    needs: list[str]
    communes: list[str]
    min_age: int | None
    max_age: int | None
    answer_days: int = Field(description="Deadline for a first answer, in working days.")
    open_places: int | None = Field(description="Places left, as the partner last said.")
    waiting_list: bool
    load: int = Field(description="Referrals handed to it and not closed yet.")
    capacity_at: datetime | None


class PartnerList(BaseModel):
    items: list[PartnerOut]


class CapacityIn(StrictModel):
    open_places: int | None = Field(ge=0, le=100000, description="Places left; null: unknown.")
    waiting_list: bool = Field(default=False, description="Takes people on a waiting list "
                               "when full.")


class SessionIn(StrictModel):
    """A sitting of the commission. Without `referral_ids`, every referral handed to the
    commission and not decided yet is put on the agenda."""

    commission: str = Field(default="commission-remobilisation", pattern=SLUG, max_length=80)
    held_on: date
    members: list[str] = Field(min_length=1, max_length=50,
                               description="Organisations present.")
    referral_ids: list[UUID] | None = Field(default=None, max_length=200)


class AgendaItem(BaseModel):
    referral_id: UUID
    status: ReferralStatus
    decision: str | None
    partner: str | None
    text: str | None
    follow_up: UUID | None
    decided_at: datetime | None


class SessionOut(BaseModel):
    id: UUID
    commission: str
    held_on: date
    members: list[str]
    agenda: list[AgendaItem]


class Decision(StrEnum):
    refer_partner = "refer_partner"
    keep_with_outreach = "keep_with_outreach"
    close = "close"


class DecisionIn(StrictModel):
    referral_id: UUID
    decision: Decision
    partner: str | None = Field(default=None, pattern=SLUG, max_length=80,
                                description="For refer_partner: the partner.")
    text: str = Field(min_length=1, max_length=2000, description="The decision as minuted.")

    _text_has_no_nir = field_validator("text")(_no_nir)

    @model_validator(mode="after")
    def _partner_when_referring(self) -> DecisionIn:
        if (self.decision is Decision.refer_partner) != (self.partner is not None):
            raise ValueError("give the partner with refer_partner, and only then")
        return self


class DossierOut(BaseModel):
    """What the recipient may see, as far as the consent allows (every read is logged)."""

    referral: ReferralOut
    consent_id: UUID
    categories: list[DataCategory]
    needs: list[Need] | None
    situation: dict[str, object] | None = Field(
        description="Flags, age bracket, commune, visits: with the `situation` category.")
    person: PersonOut | None = Field(description="Identity, contact and notes, read from the "
                                     "intake service under this consent: exactly the ones it "
                                     "covers. null when it covers none of them, or when your "
                                     "token has no `people:read`.")


Figure = float | None


class StatsOut(BaseModel):
    """Counts of distinct people (contacts per site and permanence: counts of intakes).
    null: fewer than `threshold` people, not shown."""

    period: dict[str, str | None] = Field(
        description="`from` (included), `to` (excluded: the day after the last day counted), "
        "`site` (null: every site), `programmes` (the programmes counted, comma-separated; "
        "null: the whole instance).")
    threshold: int
    people: int | None
    intakes: int | None
    site: dict[str, Figure]
    permanence: dict[str, Figure]
    visit: dict[str, Figure] = Field(description="first: people met for the first time; "
                                     "returning: people who came back")
    age_bracket: dict[str, Figure]
    gender: dict[str, Figure] = Field(description="Share of the people met, in %")
    need: dict[str, Figure]
    status: dict[str, Figure] = Field(description="Referrals by status")
    target: dict[str, Figure] = Field(description="Referrals by recipient")
    answers: dict[str, Figure] = Field(description="Handed-off referrals: answered, hours to "
                                       "the first answer (median, p90), shares in %")
    signal: dict[str, Figure] = Field(
        default_factory=dict, description="Signals from the relays of the network received "
        "in the period, by relay kind (mayor, shop, ...); never a relay's name")
    signal_answered: dict[str, Figure] = Field(
        default_factory=dict, description="Of those, the signals a contact answered, by relay "
        "kind")
    signal_to_contact: dict[str, Figure] = Field(
        default_factory=dict, description="Signals of the period a contact answered: how "
        "many (`answered`), and the hours from the signal to that first contact "
        "(`hours_median`, `hours_average`)")
    time_spent: dict[str, Figure] = Field(
        default_factory=dict, description="Time spent with people, over the contacts whose "
        "duration was given: `people` (distinct), `contacts`, `minutes_average`, "
        "`minutes_median`")
    qpv: dict[str, Figure] = Field(
        default_factory=dict, description="People met at a site of a priority neighbourhood "
        "(the directory's `qpv` code of the site): `people` (distinct), `share` (% of the "
        "people met)")
    arrival: dict[str, Figure] = Field(
        default_factory=dict, description="People who came without an appointment "
        "(walk_in), with one (appointment), or not said (not_given)")


class NotificationOut(BaseModel):
    id: UUID
    referral_id: UUID
    recipient_org: str
    kind: str = Field(description="new_referral, answered, reminder, escalation, "
                      "stop_processing, cancelled or expired")
    channel: str = Field(description="email, webhook or inbox")
    address: str | None
    status: str = Field(description="pending -> sent -> delivered, or failed")
    attempts: int
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None
    delivered_at: datetime | None
    failed_at: datetime | None


class IntakePage(BaseModel):
    items: list[IntakeOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page.")


class BatchItem(StrictModel):
    idempotency_key: str = Field(min_length=1, max_length=200)
    intake: dict[str, object] = Field(description="An intake, as for POST /v1/intakes.")


class BatchIn(StrictModel):
    items: list[BatchItem] = Field(min_length=1, max_length=500)


class BatchResult(BaseModel):
    idempotency_key: str
    status: str = Field(description="created, duplicate or invalid")
    intake: IntakeOut | None = None
    errors: list[dict[str, str]] | None = None


class BatchOut(BaseModel):
    results: list[BatchResult]
    created: int
    duplicates: int
    invalid: int


class PersonOut(BaseModel):
    """A person's personal data, limited to the categories the caller may read."""

    person_id: UUID
    categories: list[str]
    identity: Identity | None
    notes: list[str] | None
    consent_id: UUID | None = Field(description="The consent that allowed this read, if any.")


class EvidenceKind(StrEnum):
    signature = "signature"
    signed_form = "signed_form"


class EvidenceIn(StrictModel):
    """The proof of a signed consent: the signature drawn on the screen, or a photo of the
    signed paper form. Sealed in the identity vault with the person's key (erased with them)."""

    kind: EvidenceKind = Field(description="`signature` (drawn on the screen, for "
                               "`signed_screen`) or `signed_form` (photo, for `signed_paper`)")
    media_type: Literal["image/png", "image/jpeg"]
    content: Base64Bytes = Field(description=f"The image, base64; at most {EVIDENCE_MAX} "
                                 "bytes once decoded.")

    @field_validator("content")
    @classmethod
    def _small_image(cls, content: bytes) -> bytes:
        if len(content) > EVIDENCE_MAX:
            raise ValueError(f"the image is larger than {EVIDENCE_MAX} bytes")
        return content

    @model_validator(mode="after")
    def _is_that_image(self) -> EvidenceIn:
        magic = {"image/png": b"\x89PNG\r\n\x1a\n", "image/jpeg": b"\xff\xd8\xff"}
        if not self.content.startswith(magic[self.media_type]):
            raise ValueError(f"content: not a {self.media_type} image")
        return self


class EvidenceOut(BaseModel):
    person_id: UUID
    sha256: str = Field(description="What the consent names (`evidence_sha256`).")
    kind: EvidenceKind
    media_type: str
    size: int
    created_at: datetime


class EvidenceContent(EvidenceOut):
    content: str = Field(description="The image, base64.")


class StandingOut(BaseModel):
    """What your organisation is to a person (services/runtime/access.py): it met them, or a
    live consent names it. No personal data."""

    person_id: UUID
    met: bool = Field(description="Your organisation recorded a contact with the person on "
                      "its own grounds.")
    consent_id: UUID | None = Field(description="The live consent naming your organisation "
                                    "that opens the most, if any.")
    categories: list[str] = Field(description="The personal data categories you may read.")
    may: list[str] = Field(description="What you may do: attach, read, correct, erase, "
                           "record_consent.")
    restricted: bool = Field(default=False, description="Processing is stopped at the "
                             "person's request (restriction or objection): nothing is "
                             "recorded for them until it is lifted.")


class RelayKind(StrEnum):
    mayor = "mayor"
    shop = "shop"
    sports_club = "sports_club"
    association = "association"
    social_landlord = "social_landlord"
    school = "school"
    other = "other"


class SignalIn(StrictModel):
    """Minimal data: who signals, where, and a hint to find the person (no full identity)."""

    relay_kind: RelayKind
    relay_name: str = Field(min_length=1, max_length=120, examples=["Mairie de Saleux"])
    commune: str | None = Field(default=None, pattern=INSEE)
    site: str | None = Field(default=None, pattern=SLUG, max_length=80)
    age_bracket: AgeBracket | None = None
    needs: list[Need] = Field(default_factory=list, max_length=10)
    hint: str | None = Field(default=None, max_length=500,
                             description="How to find the person; kept sealed.")

    _hint_has_no_nir = field_validator("hint")(_no_nir)


class SignalOut(BaseModel):
    id: UUID
    org: str
    relay_kind: RelayKind
    relay_name: str
    commune: str | None
    site: str | None
    age_bracket: AgeBracket | None
    needs: list[Need]
    status: str
    outcome: str | None
    intake_id: UUID | None
    created_at: datetime
    closed_at: datetime | None
    relay_id: UUID | None = Field(default=None, description="The relay whose personal link "
                                  "sent it (none: posted through the API)")


class SignalOutcome(StrEnum):
    reached = "reached"
    not_found = "not_found"
    declined = "declined"
    duplicate = "duplicate"
    other = "other"


class SignalClose(StrictModel):
    outcome: SignalOutcome
    intake_id: UUID | None = None


class SignalList(BaseModel):
    items: list[SignalOut]


class NotificationList(BaseModel):
    items: list[NotificationOut]


class NotifyChannel(StrEnum):
    email = "email"
    inbox = "inbox"


class RecipientIn(StrictModel):
    """How an organisation is told. Webhooks are registered apart (POST /v1/webhooks/
    endpoints). A new referral and an order to stop processing cannot be muted, and always
    reach the inbox."""

    email: EmailStr = Field(description="The team mailbox.")
    counsellors: list[EmailStr] = Field(default_factory=list, max_length=50,
                                        description="Counsellors who get the emails too.")
    channels: list[NotifyChannel] = Field(default_factory=lambda: [NotifyChannel.email,
                                                                   NotifyChannel.inbox])
    muted: list[str] = Field(default_factory=list, description="Kinds of message not wanted "
                             "by email: answered, reminder, escalation, cancelled, expired.")


class RecipientOut(BaseModel):
    org: str
    name: str
    email: str
    counsellors: list[str]
    channels: list[str]
    muted: list[str]


class EndpointIn(StrictModel):
    url: str = Field(max_length=2000, examples=["https://si.mission-locale.example.org/relais"],
                     description="Where to POST; public addresses only.")
    kinds: list[str] = Field(default_factory=list, description="The kinds of message wanted "
                             "(all when empty).")


class EndpointOut(BaseModel):
    id: UUID
    org: str
    url: str
    kinds: list[str]
    created_at: datetime
    secret: str | None = Field(default=None, description="Only in the answer to the "
                               "registration: the key of the `webhook-signature` HMAC.")


class EndpointList(BaseModel):
    items: list[EndpointOut]


class DeliveryOut(BaseModel):
    id: UUID
    notification_id: UUID
    endpoint_id: UUID
    url: str
    kind: str
    referral_id: UUID
    attempt: int
    at: datetime
    status_code: int | None
    error: str | None
    duration_ms: int
    outcome: str = Field(description="delivered, retry or dead")
    notification_status: str


class DeliveryList(BaseModel):
    items: list[DeliveryOut]


class InboxItem(BaseModel):
    seq: int = Field(description="Pass the last one as `after` (or Last-Event-ID).")
    id: UUID
    kind: str
    referral_id: UUID
    subject: str
    body: str
    link: str
    created_at: datetime


class InboxPage(BaseModel):
    items: list[InboxItem]


class TokenRequest(BaseModel):
    """OAuth2 client credentials (RFC 6749 §4.4). Authenticate with HTTP Basic
    (client_secret_basic) or with client_id and client_secret in the form
    (client_secret_post)."""

    grant_type: str = Field(examples=["client_credentials"])
    scope: str | None = Field(default=None, description="Space-separated; all the client's "
                                                        "scopes when omitted.")
    client_id: str | None = None
    client_secret: str | None = None


class TokenResponse(BaseModel):
    access_token: str
    token_type: str
    expires_in: int
    scope: str


class RevokedClients(BaseModel):
    revoked: list[str] = Field(description="Ids of the revoked API clients: tokens naming one "
                               "(client_id) are refused though they have not expired.")


class Health(BaseModel):
    status: str
    transport: str | None = None


class AuditKeys(BaseModel):
    keys: list[dict[str, str]]


class AccessLog(BaseModel):
    person_id: UUID
    reads: list[dict[str, object]] = Field(description="Trail entries of kind "
                                                       "personal_data.read, oldest first.")


class WithdrawIn(StrictModel):
    """Withdraw the whole consent (no purposes, no recipients given), or only some purposes
    and/or some recipients."""

    purposes: list[Purpose] = Field(default_factory=list)
    recipients: list[str] = Field(default_factory=list, max_length=50)
    requested_by: WithdrawalRequester
    channel: WithdrawalChannel


class ConsentChange(BaseModel):
    kind: str
    purposes: list[str]
    recipients: list[str]
    requested_by: str | None
    channel: str | None
    org: str
    at: datetime


class ConsentHistory(BaseModel):
    consent: ConsentOut
    changes: list[ConsentChange]


class ConsentList(BaseModel):
    items: list[ConsentHistory]


class CheckReason(StrEnum):
    """Why a recipient may not receive the person."""

    unknown_recipient = "unknown_recipient"
    """Not an organisation of the directory: no consent can name it."""
    not_covered = "not_covered"
    """No live consent of the person covers this purpose for this recipient."""


class ConsentCheck(BaseModel):
    allowed: bool
    consent_id: UUID | None = Field(description="The consent that allows it, if any.")
    reason: CheckReason | None = Field(
        default=None, description="Why not, when not allowed: `unknown_recipient` (not an "
        "organisation of the directory: no consent can name it, nothing is handed off to it) "
        "or `not_covered` (no live consent of the person covers this purpose for this "
        "recipient).")
    detail: str | None = Field(default=None, description="The same, in words.")


class NoticeIn(StrictModel):
    version: str = Field(min_length=1, max_length=80, pattern=r"^[A-Za-z0-9._-]+$",
                         examples=["2026-02"])
    language: str = Field(default="fr", pattern=r"^[a-z]{2}$")
    text: str = Field(min_length=20, max_length=20_000)


class NoticeOut(BaseModel):
    version: str
    language: str
    text: str
    hash: str = Field(description="SHA-256 of the text (UTF-8), hex: what consents refer to.")
    created_at: datetime


class SignedCheckpoint(BaseModel):
    size: int
    root: str
    signed_at: str
    kid: str
    signature: str = Field(description="Ed25519 over the RFC 8785 JSON of size, root (hex), "
                                       "signed_at and kid; base64.")
    consistency_from: int | None = Field(
        default=None, description="Size of the previous checkpoint this one extends.")
    consistency_proof: list[str] | None = Field(
        default=None, description="RFC 6962 consistency proof (hex) from the previous one.")


class ProvenEntry(BaseModel):
    seq: int
    entry: dict[str, object]
    leaf_hash: str
    inclusion_proof: list[str] | None = Field(
        description="RFC 6962 audit path (hex) to the checkpoint's root; null when the entry "
                    "is newer than the last checkpoint.")


class TrailExtract(BaseModel):
    checkpoint: SignedCheckpoint | None
    entries: list[ProvenEntry]


class CheckpointList(BaseModel):
    items: list[SignedCheckpoint]


class OccurrenceOut(BaseModel):
    """A permanence on a day: where, who, from when to when (Paris time, with its offset)."""

    permanence: str
    site: str
    site_name: str
    commune: str | None
    mobile: bool
    organisations: list[str]
    start: datetime
    end: datetime


class OccurrenceList(BaseModel):
    period: dict[str, str] = Field(description="`from` (included), `to` (excluded).")
    items: list[OccurrenceOut]


class ReferralHeld(BaseModel):
    """Every referral of a person, whoever sent or received it, with its history (for the
    person's access request, `people:export`)."""

    items: list[ReferralDetail]


class ExportRead(BaseModel):
    at: datetime
    org: str
    client_id: str
    consent_id: UUID | None
    categories: list[str]


class PersonExport(BaseModel):
    """Everything Relais holds about a person (GDPR art. 15), gathered from every service: the
    data-protection officer's answer to their access request. The export itself is logged."""

    person_id: UUID
    exported_at: datetime
    exported_by: str = Field(description="The organisation of the officer who exported it")
    erased_at: datetime | None = Field(description="Set when the person was erased: their "
                                       "identity and notes are gone")
    identity: Identity | None
    notes: list[str]
    contacts: list[IntakeOut] = Field(description="Every contact, whichever organisation "
                                      "recorded it")
    reads: list[ExportRead] = Field(description="Who read their personal data, when, under "
                                    "which consent")
    consents: list[ConsentHistory]
    referrals: list[ReferralDetail]
    notifications: list[NotificationOut] = Field(description="How the organisations were "
                                                 "told of their referrals")


class RestrictionIn(StrictModel):
    """A person asks that their data be no longer processed, without erasing it."""

    right: Literal["restriction", "objection"] = Field(
        description="`restriction` (GDPR art. 18: while a dispute is settled) or `objection` "
        "(art. 21: the person objects to the processing)")
    channel: WithdrawalChannel = Field(description="How the person asked")


class RestrictionOut(BaseModel):
    person_id: UUID
    right: Literal["restriction", "objection"]
    since: datetime
    org: str = Field(description="The organisation that recorded it")


class RegisterController(BaseModel):
    id: str
    name: str
    kind: str
    email: str
    retention_months: int
    retention_basis: str | None


class RegisterEntry(BaseModel):
    name: str
    detail: str


class ProcessingRegister(BaseModel):
    """The record of processing activities (GDPR art. 30) as the configuration says it: who
    decides, why, about whom, what, to whom, for how long, who processes on their behalf, and
    how it is protected. In French, for the data-protection officer's register."""

    generated_at: datetime
    name: str
    controllers: list[RegisterController]
    purposes: list[RegisterEntry]
    data_subjects: list[RegisterEntry]
    data_categories: list[RegisterEntry]
    recipients: list[RegisterEntry]
    retention: list[RegisterEntry]
    processors: list[RegisterEntry]
    transfers: str
    security: list[RegisterEntry]
