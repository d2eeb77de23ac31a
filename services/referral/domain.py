"""Routing and the consent gate: pure rules, no I/O.

Routing is deterministic and explained: every referral carries the rule that chose its
target, the candidates that were weighed and why this one."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from schemas.vocab import AgeBracket, Need, Purpose, SituationFlag

COMMISSION = "commission-remobilisation"
SEVERAL_NEEDS = 3

AGE_RANGES: dict[AgeBracket, tuple[int, int]] = {
    AgeBracket.under_16: (0, 15),
    AgeBracket.from_16_to_17: (16, 17),
    AgeBracket.from_18_to_25: (18, 25),
    AgeBracket.from_26_to_29: (26, 29),
    AgeBracket.from_30_to_49: (30, 49),
    AgeBracket.from_50: (50, 120),
}


@dataclass(frozen=True, slots=True)
class Partner:
    id: str
    needs: frozenset[Need]
    communes: frozenset[str] = frozenset()
    min_age: int | None = None
    max_age: int | None = None

    def serves_age(self, bracket: AgeBracket | None) -> bool:
        if bracket is None:
            return True
        low, high = AGE_RANGES[bracket]
        return (self.min_age is None or high >= self.min_age) and (
            self.max_age is None or low <= self.max_age
        )

    @property
    def age_span(self) -> int:
        """How wide the partner's age range is: the narrower, the more dedicated."""
        return (self.max_age or 120) - (self.min_age or 0)

    def serves_commune(self, commune: str | None) -> bool:
        return commune is None or not self.communes or commune in self.communes


@dataclass(frozen=True, slots=True)
class IntakeFacts:
    needs: Sequence[Need]
    flags: Sequence[SituationFlag] = ()
    age_bracket: AgeBracket | None = None
    commune: str | None = None


@dataclass(frozen=True, slots=True)
class Routing:
    target: str
    purpose: Purpose
    explanation: dict[str, Any] = field(default_factory=dict)


def route(intake: IntakeFacts, partners: Iterable[Partner]) -> Routing:
    if len(set(intake.needs)) >= SEVERAL_NEEDS or SituationFlag.dropped_out in intake.flags:
        return Routing(COMMISSION, Purpose.referral_commission, {
            "rule": "commission_for_complex_situations",
            "reason": "Plusieurs besoins à la fois ou décrochage d'un parcours : "
                      "la commission de remobilisation étudie la situation.",
            "candidates": [],
        })
    scored = sorted(
        (
            (-len(p.needs & set(intake.needs)), p.age_span, p.id)
            for p in partners
            if p.id != COMMISSION and p.needs & set(intake.needs)
            and p.serves_age(intake.age_bracket) and p.serves_commune(intake.commune)
        ),
    )
    candidates = [{"partner": pid, "needs_matched": -score, "age_span": span}
                  for score, span, pid in scored]
    if not scored:
        return Routing(COMMISSION, Purpose.referral_commission, {
            "rule": "commission_when_no_partner",
            "reason": "Aucun partenaire du territoire ne couvre ces besoins pour cet âge et "
                      "cette commune : la commission cherche une solution.",
            "candidates": [],
        })
    best = scored[0][2]
    return Routing(best, Purpose.referral_partner, {
        "rule": "best_partner_by_needs",
        "reason": f"{best} couvre le plus de besoins exprimés pour cet âge et cette commune ; "
                  "à égalité, la structure dédiée à la tranche d'âge la plus étroite.",
        "candidates": candidates,
    })


@dataclass(frozen=True, slots=True)
class ConsentScope:
    consent_id: UUID
    purposes: frozenset[str]
    recipients: frozenset[str]
    valid_until: datetime
    active: bool = True

    def covers(self, target: str, purpose: str, now: datetime) -> bool:
        return (self.active and now < self.valid_until and purpose in self.purposes
                and target in self.recipients)


def covering_consent(
    target: str, purpose: str, consents: Iterable[ConsentScope], now: datetime
) -> UUID | None:
    """The consent that lets this referral be handed off, if any (the latest first)."""
    covering = [c for c in consents if c.covers(target, purpose, now)]
    if not covering:
        return None
    return max(covering, key=lambda c: c.valid_until).consent_id
