"""Routing: deterministic rules a coordinator can read and change (`rules.yaml`), and the
scoring of partners (no I/O). Every decision carries its explanation: the rule, the
candidates weighed with their figures, and why this one."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from schemas.vocab import AgeBracket, Need, Purpose, RejectReason, SituationFlag

COMMISSION = "commission"
"""The directory's kind of the commissions de remobilisation (a territory may have several)."""
BEST_PARTNER = "best_partner"

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
    open_places: int | None = None  # None: not declared
    waiting_list: bool = False
    load: int = 0  # referrals handed to it and not closed yet
    kind: str = ""  # the directory's kind: mission_locale, commission, ...

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

    @property
    def can_take(self) -> bool:
        """Full (no place declared left) and no waiting list: not a candidate."""
        return self.open_places is None or self.open_places > 0 or self.waiting_list

    @property
    def has_places(self) -> bool:
        return self.open_places is None or self.open_places > 0


@dataclass(frozen=True, slots=True)
class IntakeFacts:
    needs: Sequence[Need]
    flags: Sequence[SituationFlag] = ()
    age_bracket: AgeBracket | None = None
    commune: str | None = None


class When(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    min_needs: int | None = Field(default=None, ge=1)
    flags_any: list[SituationFlag] = Field(default_factory=list)
    needs_any: list[Need] = Field(default_factory=list)
    age_brackets: list[AgeBracket] = Field(default_factory=list)
    communes: list[str] = Field(default_factory=list)

    def holds(self, facts: IntakeFacts) -> bool:
        return ((self.min_needs is None or len(set(facts.needs)) >= self.min_needs)
                and (not self.flags_any or bool(set(self.flags_any) & set(facts.flags)))
                and (not self.needs_any or bool(set(self.needs_any) & set(facts.needs)))
                and (not self.age_brackets or facts.age_bracket in self.age_brackets)
                and (not self.communes or facts.commune in self.communes))


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(pattern=r"^[a-z0-9_]+$")
    when: When = Field(default_factory=When)
    to: Literal["commission", "best_partner"] | str
    reason: str


class OnRefusal(BaseModel):
    """What the coordination decided for a refused referral: by default the sender sends it
    on to the partner proposed (`POST /v1/referrals/{id}/forward`); with `forward`, Relais
    does it at once for the reasons listed."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    forward: bool = False
    reasons: list[RejectReason] = Field(default_factory=lambda: [RejectReason.no_place])
    reason: str = ("Refus faute de place : la coordination envoie l'orientation au partenaire "
                   "suivant qui a des places.")


class Rules(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    rules: list[Rule] = Field(min_length=1)
    on_refusal: OnRefusal = Field(default_factory=OnRefusal)


def load_rules(path: Path | None = None) -> Rules:
    text = (path.read_text("utf-8") if path is not None else
            resources.files(__package__).joinpath("rules.yaml").read_text("utf-8"))
    return Rules.model_validate(yaml.safe_load(text))


@cache
def rules_for(path: Path | None) -> Rules:
    """The rules file of the settings, read once (it is checked when Relais starts)."""
    return load_rules(path)


@dataclass(frozen=True, slots=True)
class Routing:
    target: str
    purpose: Purpose
    explanation: dict[str, Any] = field(default_factory=dict)


def candidates(facts: IntakeFacts, partners: Iterable[Partner],
               exclude: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    """The partners that could follow the person, best first, with the figures compared."""
    needs = set(facts.needs)
    eligible = [p for p in partners
                if p.kind != COMMISSION and p.id not in exclude and p.needs & needs
                and p.serves_age(facts.age_bracket) and p.serves_commune(facts.commune)
                and p.can_take]
    eligible.sort(key=lambda p: (-len(p.needs & needs), not p.has_places, p.age_span,
                                 p.load, p.id))
    return [{"partner": p.id, "needs_matched": len(p.needs & needs),
             "open_places": p.open_places, "waiting_list": p.waiting_list, "load": p.load,
             "age_span": p.age_span} for p in eligible]


@dataclass(frozen=True, slots=True)
class CommissionChoice:
    commission: str
    why: str
    weighed: list[dict[str, Any]]


def choose_commission(commune: str | None,
                      partners: Iterable[Partner]) -> CommissionChoice | None:
    """The commission de remobilisation for the person's commune, among the organisations of
    kind `commission`: one that lists the commune, else one with no communes (it covers the
    whole territory), else, when none covers it, any of them; among several, the lightest
    load, then the id. None when the directory has no commission.

    The reason never names the commune: the recipient reads the explanation whatever the
    consent covers."""
    found = sorted((p for p in partners if p.kind == COMMISSION), key=lambda p: (p.load, p.id))
    if not found:
        return None
    listing = [p for p in found if commune is not None and commune in p.communes]
    everywhere = [p for p in found if not p.communes]
    if listing:
        chosen = listing
        why = "La commune de la personne est dans le territoire de cette commission."
    elif everywhere:
        chosen, why = everywhere, "Cette commission couvre tout le territoire."
    else:
        chosen = found
        why = ("Aucune commission ne couvre la commune de la personne" if commune else
               "La commune de la personne n'est pas connue et aucune commission ne couvre "
               "tout le territoire") + " : la moins chargée étudie la situation."
    if len(chosen) > 1 and (listing or everywhere):
        why += (f" Plusieurs commissions la couvrent ({', '.join(p.id for p in chosen)}) : "
                "la moins chargée est choisie.")
    covers = {p.id: "commune" for p in listing} | {p.id: "territory" for p in everywhere}
    return CommissionChoice(chosen[0].id, why, [
        {"partner": p.id, "covers": covers.get(p.id, "no"), "load": p.load} for p in found])


def _to_commission(rule_id: str, reason: str, choice: CommissionChoice,
                   passed_over: list[dict[str, str]]) -> Routing:
    explanation: dict[str, Any] = {"rule": rule_id,
                                   "reason": f"{choice.commission} : {reason} {choice.why}",
                                   "candidates": choice.weighed}
    if passed_over:
        explanation["passed_over"] = passed_over
    return Routing(choice.commission, Purpose.referral_commission, explanation)


def route(facts: IntakeFacts, partners: Iterable[Partner], rules: Rules) -> Routing | None:
    """Where the intake goes, with why; None when nothing in the directory can take it (no
    partner fits and there is no commission)."""
    partners = list(partners)
    passed_over: list[dict[str, str]] = []
    for rule in rules.rules:
        if not rule.when.holds(facts):
            continue
        if rule.to == "commission":
            choice = choose_commission(facts.commune, partners)
            if choice is None:
                passed_over.append({"rule": rule.id, "reason": "Aucune commission de "
                                    "remobilisation dans l'annuaire : règle suivante."})
                continue
            return _to_commission(rule.id, rule.reason, choice, passed_over)
        if rule.to != BEST_PARTNER:
            return Routing(rule.to, Purpose.referral_partner,
                           {"rule": rule.id, "reason": rule.reason, "candidates": []})
        ranked = candidates(facts, partners)
        if ranked:
            best = ranked[0]["partner"]
            explanation = {"rule": rule.id, "reason": f"{best} : {rule.reason}",
                           "candidates": ranked}
            return Routing(best, Purpose.referral_partner,
                           explanation | ({"passed_over": passed_over} if passed_over else {}))
    choice = choose_commission(facts.commune, partners)
    if choice is None:
        return None
    return _to_commission(
        "commission_when_no_partner",
        "Aucun partenaire du territoire ne couvre ces besoins pour cet âge et cette commune, "
        "ou n'a de place : la commission cherche une solution.", choice, passed_over)
