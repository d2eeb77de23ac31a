"""The closed loop of a referral's statuses: a pure state machine (no I/O).

The recipient answers (receive, accept, reject, start, complete, hold); the sender cancels
or puts on hold. Relais itself moves a referral on the consent gate and the deadlines."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from schemas.vocab import Milestone, Outcome, ReferralAction, ReferralStatus, RejectReason

S = ReferralStatus
A = ReferralAction

ACTIVE = frozenset({S.requested, S.received, S.accepted, S.in_progress, S.on_hold})
TERMINAL = frozenset({S.rejected, S.completed, S.cancelled, S.expired})
ANSWERED = frozenset({S.received, S.accepted, S.rejected})
OPEN = ACTIVE | {S.awaiting_consent}
"""Not closed: a returning person's new contact joins such a referral (same sender, partner
and purpose) instead of opening another."""


class Role(StrEnum):
    sender = "sender"
    recipient = "recipient"


@dataclass(frozen=True, slots=True)
class Rule:
    to: ReferralStatus
    sources: frozenset[ReferralStatus]
    roles: frozenset[Role]


RULES: dict[ReferralAction, Rule] = {
    A.receive: Rule(S.received, frozenset({S.requested}), frozenset({Role.recipient})),
    A.accept: Rule(S.accepted, frozenset({S.requested, S.received, S.on_hold}),
                   frozenset({Role.recipient})),
    A.reject: Rule(S.rejected, frozenset({S.requested, S.received, S.accepted, S.on_hold}),
                   frozenset({Role.recipient})),
    A.start: Rule(S.in_progress, frozenset({S.accepted, S.on_hold}),
                  frozenset({Role.recipient})),
    A.complete: Rule(S.completed, frozenset({S.in_progress}), frozenset({Role.recipient})),
    A.cancel: Rule(S.cancelled, frozenset({S.awaiting_consent}) | ACTIVE,
                   frozenset({Role.sender})),
    A.hold: Rule(S.on_hold, frozenset({S.requested, S.received, S.accepted, S.in_progress}),
                 frozenset({Role.recipient, Role.sender})),
}


class Refused(Exception):
    """An action that this referral's status or the caller's role does not allow."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail


@dataclass(frozen=True, slots=True)
class Answer:
    """What the caller says with the action."""

    reason: RejectReason | None = None
    text: str | None = None
    outcome: Outcome | None = None
    milestone: Milestone | None = None


@dataclass(frozen=True, slots=True)
class Change:
    to: ReferralStatus
    changed: bool  # False: the same action again, nothing to do (a retried request)


def decide(status: ReferralStatus, action: ReferralAction, roles: frozenset[Role],
           answer: Answer) -> Change:
    rule = RULES[action]
    if not roles & rule.roles:
        who = " or ".join(sorted(rule.roles))
        raise Refused(403, "Not yours to do", f"Only the {who} can {action} a referral.")
    _check_answer(action, answer)
    if status == rule.to:
        return Change(status, changed=False)
    if status not in rule.sources:
        allowed = ", ".join(sorted(rule.sources))
        raise Refused(409, "Illegal transition",
                      f"A referral in status '{status}' cannot be {action}ed "
                      f"(only from: {allowed}).")
    return Change(rule.to, changed=True)


def available(status: ReferralStatus, roles: frozenset[Role]) -> list[ReferralAction]:
    """The actions these roles may take on a referral in this status (what a page offers)."""
    return [action for action, rule in RULES.items()
            if roles & rule.roles and status in rule.sources]


def roles_of(org: str, sender: str, target: str) -> frozenset[Role]:
    return frozenset(role for role, who in ((Role.sender, sender), (Role.recipient, target))
                     if who == org)


def _check_answer(action: ReferralAction, answer: Answer) -> None:
    if action is A.reject and answer.reason is None:
        raise Refused(422, "Reason required", "A rejection needs a reason from the list.")
    if answer.reason is RejectReason.other and not (answer.text or "").strip():
        raise Refused(422, "Text required", "Reason 'other' needs a text.")
    if action is A.complete and answer.outcome is None:
        raise Refused(422, "Outcome required", "Completing a referral needs its outcome.")
    if action is A.start and answer.milestone is None:
        raise Refused(422, "Milestone required",
                      "Starting needs the milestone: first_appointment or contract_signed.")
