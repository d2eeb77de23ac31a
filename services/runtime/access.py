"""Who may do what to a person: the one rule every service applies (no I/O).

A person's id is not a capability: knowing it grants nothing. What an organisation may do to
a person follows from two facts only, which each service gathers from its own data:

- it **met** the person: it recorded a contact with them on its own grounds, either the first
  contact (which made the id) or a later one with a person it had met itself;
- a **live consent names it**: a consent recorded by an organisation that met the person,
  still active and in date, lists it as a recipient for a sharing purpose.

| act                                | met | named by a live consent                  |
|------------------------------------|-----|------------------------------------------|
| attach a new contact (intake)      | yes | yes (the contact does not make it "met") |
| read identity, contact, notes      | all | the categories the consent covers        |
| read under one consent (a dossier) | the categories that consent covers (met or not)|
| correct identity or contact        | yes | if the consent covers identity or contact|
| erase                              | yes | yes                                      |
| record a consent                   | yes | no: a recipient grants itself nothing    |
| withdraw a consent                 | the recorder: all or part; a recipient: its own part only |
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from uuid import UUID

PERSONAL = frozenset({"identity", "contact", "note"})
SHARING_PURPOSES = frozenset({"share_dossier", "referral_partner", "referral_commission"})


class Act(StrEnum):
    attach = "attach"
    read = "read"
    correct = "correct"
    erase = "erase"
    record_consent = "record_consent"


@dataclass(frozen=True, slots=True)
class Grant:
    """A consent as the services see it."""

    consent_id: UUID
    recorded_by: str | None
    """The organisation that recorded it (None for records older than this rule)."""
    purposes: frozenset[str]
    recipients: frozenset[str]
    categories: frozenset[str]
    valid_until: datetime
    active: bool


@dataclass(frozen=True, slots=True)
class Standing:
    """What one organisation is to one person."""

    met: bool
    consent: Grant | None
    """The live consent naming the organisation that opens the most personal data."""

    @property
    def categories(self) -> frozenset[str]:
        """The personal data categories it may read."""
        if self.met:
            return PERSONAL
        return self.consent.categories & PERSONAL if self.consent else frozenset()

    @property
    def known(self) -> bool:
        return self.met or self.consent is not None

    def may(self, act: Act) -> bool:
        if act is Act.record_consent:
            return self.met
        if act is Act.correct:
            return self.met or bool(self.categories & {"identity", "contact"})
        return self.known


def standing(org: str, met_by: Iterable[str], grants: Iterable[Grant],
             now: datetime) -> Standing:
    met = set(met_by)
    live = [g for g in grants
            if g.active and now < g.valid_until and org in g.recipients
            and g.purposes & SHARING_PURPOSES
            and (g.recorded_by is None or g.recorded_by in met)]
    best = max(live, key=lambda g: (len(g.categories & PERSONAL), g.valid_until),
               default=None)
    return Standing(org in met, best)


def under_consent(org: str, met_by: Iterable[str], grants: Iterable[Grant],
                  consent_id: UUID, now: datetime) -> Standing:
    """What `org` may read of a person under one consent only: the personal categories that
    consent covers, when it is live and names `org` for a sharing purpose; nothing otherwise.

    A recipient reads a referral's dossier under the consent that handed the referral off:
    exactly what the person agreed to give it, not the union of everything it may read of
    them by other consents, nor everything because it also met the person."""
    named = standing(org, met_by, [g for g in grants if g.consent_id == consent_id], now)
    return Standing(False, named.consent)


def withdrawal_refused(org: str, recorded_by: str, recipients: Sequence[str],
                       purposes: Sequence[str]) -> str | None:
    """Why `org` may not withdraw this part of a consent (None: it may).

    The organisation that recorded the consent withdraws all of it or any part, as the person
    asks. A recipient the person tells withdraws its own part only (`recipients` = itself):
    it cannot prove the person's word to the others, and must not silently end their
    hand-offs; the person asks the recorder, or uses the receipt's link, for the rest."""
    if org == recorded_by:
        return None
    if purposes or list(recipients) != [org]:
        return ("A recipient withdraws its own part only: send {\"recipients\": [\""
                f"{org}\"]}} and no purposes. The organisation that recorded the consent "
                "withdraws the rest.")
    return None
