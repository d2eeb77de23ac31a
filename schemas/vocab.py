"""Controlled vocabularies shared by the API and the events."""

from __future__ import annotations

from enum import StrEnum


class Need(StrEnum):
    employment = "employment"
    training = "training"
    administrative_steps = "administrative_steps"
    rights = "rights"  # RSA, CAF, ...
    health = "health"
    housing = "housing"
    mobility = "mobility"  # including the driving licence
    digital_skills = "digital_skills"
    sport_leisure = "sport_leisure"
    other = "other"


class Channel(StrEnum):
    mobile_permanence = "mobile_permanence"
    fixed_permanence = "fixed_permanence"
    online = "online"
    phone = "phone"
    network_relay = "network_relay"


class SituationFlag(StrEnum):
    known_mission_locale = "known_mission_locale"
    known_france_travail = "known_france_travail"
    rsa = "rsa"
    dropped_out = "dropped_out"  # left a programme (school, training, accompaniment)
    no_income = "no_income"
    no_housing = "no_housing"
    disability = "disability"


class Gender(StrEnum):
    """As the person states it, only if they wish (for the funders' anonymised figures)."""

    female = "female"
    male = "male"
    other = "other"


class Arrival(StrEnum):
    """How the person came to a permanence: without an appointment, or with one."""

    walk_in = "walk_in"
    appointment = "appointment"


class AgeBracket(StrEnum):
    under_16 = "under_16"
    from_16_to_17 = "16_17"
    from_18_to_25 = "18_25"
    from_26_to_29 = "26_29"
    from_30_to_49 = "30_49"
    from_50 = "50_plus"


class Purpose(StrEnum):
    referral_commission = "referral_commission"
    referral_partner = "referral_partner"
    share_dossier = "share_dossier"
    recontact = "recontact"


class DataCategory(StrEnum):
    identity = "identity"
    contact = "contact"
    situation = "situation"
    needs = "needs"
    note = "note"


class ConsentMethod(StrEnum):
    signed_paper = "signed_paper"
    signed_screen = "signed_screen"
    oral_witnessed = "oral_witnessed"


class ReferralStatus(StrEnum):
    awaiting_consent = "awaiting_consent"
    requested = "requested"
    received = "received"
    accepted = "accepted"
    rejected = "rejected"
    in_progress = "in_progress"
    completed = "completed"
    cancelled = "cancelled"
    expired = "expired"
    on_hold = "on_hold"


class WithdrawalRequester(StrEnum):
    person = "person"
    legal_representative = "legal_representative"
    counsellor_on_behalf = "counsellor_on_behalf"


class WithdrawalChannel(StrEnum):
    in_person = "in_person"
    phone = "phone"
    email = "email"
    letter = "letter"
    online = "online"


class RejectReason(StrEnum):
    not_reachable = "not_reachable"
    did_not_come = "did_not_come"
    not_eligible = "not_eligible"
    no_place = "no_place"
    not_interested = "not_interested"
    followed_elsewhere = "followed_elsewhere"
    duplicate = "duplicate"
    other = "other"  # with a text


class Milestone(StrEnum):
    """What makes a referral `in_progress`."""

    first_appointment = "first_appointment"
    contract_signed = "contract_signed"


class Outcome(StrEnum):
    registered_mission_locale = "registered_mission_locale"
    registered_france_travail = "registered_france_travail"
    training = "training"
    job = "job"
    contrat_engagement_jeune = "contrat_engagement_jeune"
    stopped = "stopped"
    # the commission's decisions on its own referrals
    oriented_to_partner = "oriented_to_partner"
    kept_with_outreach = "kept_with_outreach"


class ReferralAction(StrEnum):
    receive = "receive"
    accept = "accept"
    reject = "reject"
    start = "start"
    complete = "complete"
    cancel = "cancel"
    hold = "hold"
