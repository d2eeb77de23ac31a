"""The consent gate: pure rules, no I/O. A referral is handed off only while an active
consent covers its purpose and its recipient; the outcome does not depend on the order in
which the intake, the grant and the withdrawal arrive (each consent keeps what it first
allowed, so a late grant after its own withdrawal still cancels what it covered)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from schemas.vocab import ReferralStatus
from services.referral.lifecycle import ACTIVE


@dataclass(frozen=True, slots=True)
class ConsentScope:
    consent_id: UUID
    purposes: frozenset[str]
    recipients: frozenset[str]
    valid_until: datetime
    active: bool = True
    status: str = "active"  # active (maybe partly withdrawn), withdrawn, expired
    granted_purposes: frozenset[str] | None = None  # None: the grant was not seen yet
    granted_recipients: frozenset[str] | None = None
    categories: frozenset[str] = frozenset()

    def covers(self, target: str, purpose: str, now: datetime) -> bool:
        return (self.active and now < self.valid_until and purpose in self.purposes
                and target in self.recipients)

    def covered(self, target: str, purpose: str) -> bool:
        """Whether the consent allowed this hand-off when it was granted."""
        return (self.granted_purposes is not None and self.granted_recipients is not None
                and purpose in self.granted_purposes and target in self.granted_recipients)


def covering_consent(
    target: str, purpose: str, consents: Iterable[ConsentScope], now: datetime
) -> ConsentScope | None:
    """The consent that lets this referral be handed off, if any (the longest-lived)."""
    covering = [c for c in consents if c.covers(target, purpose, now)]
    return max(covering, key=lambda c: (c.valid_until, c.consent_id)) if covering else None


class Gate(StrEnum):
    wait = "wait"  # no consent covers it yet
    request = "request"  # hand it off
    keep = "keep"  # still covered (maybe by another consent)
    cancel = "cancel"  # what covered it was withdrawn or expired
    stop = "stop"  # closed already, but the recipient had the dossier: tell it to stop


@dataclass(frozen=True, slots=True)
class Verdict:
    gate: Gate
    consent: ConsentScope | None = None
    cause: str | None = None  # consent_withdrawn, consent_expired


def judge(status: ReferralStatus, handed_off: bool, target: str, purpose: str,
          consents: Iterable[ConsentScope], now: datetime) -> Verdict:
    """What the consents the service knows of mean for one referral."""
    consents = list(consents)
    covering = covering_consent(target, purpose, consents, now)
    if covering is not None:
        if status is ReferralStatus.awaiting_consent:
            return Verdict(Gate.request, covering)
        return Verdict(Gate.keep, covering) if status in ACTIVE else Verdict(Gate.wait)
    lost = [c for c in consents if c.covered(target, purpose)]
    if not lost:
        return Verdict(Gate.wait)
    cause = ("consent_expired" if all(
        c.status == "expired" or (c.status == "active" and now >= c.valid_until)
        for c in lost) else "consent_withdrawn")
    if status is ReferralStatus.awaiting_consent or status in ACTIVE:
        return Verdict(Gate.cancel, cause=cause)
    if handed_off and status is not ReferralStatus.cancelled:
        return Verdict(Gate.stop, cause=cause)
    return Verdict(Gate.wait)


def visible_to(referral: Mapping[str, Any], org: str) -> bool:
    """The sender sees its referrals; a recipient only once a consent handed it the person
    (before that, it learns nothing of them, not even that they exist). The store's
    `VISIBLE_TO` is the same rule in SQL."""
    return org == referral["sender_org"] or (
        org == referral["target"] and referral["consent_id"] is not None)


def as_seen_by(referral: dict[str, Any], org: str) -> dict[str, Any]:
    """A recipient told to stop processing no longer gets the person's id."""
    if org != referral["sender_org"] and referral["stopped_at"] is not None:
        return referral | {"person_id": None}
    return referral
