from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from schemas.vocab import AgeBracket, Need, Purpose, SituationFlag
from services import directory
from services.referral.domain import (
    COMMISSION,
    ConsentScope,
    IntakeFacts,
    Partner,
    covering_consent,
    route,
)

PARTNERS = [
    Partner(o.id, frozenset(o.needs), frozenset(o.communes), o.min_age, o.max_age)
    for o in directory.load().organisations
]
NOW = datetime(2026, 11, 22, tzinfo=UTC)


def test_a_young_person_looking_for_work_goes_to_the_mission_locale() -> None:
    routing = route(IntakeFacts([Need.employment], [], AgeBracket.from_18_to_25, "80021"),
                    PARTNERS)
    assert routing.target == "mission-locale"
    assert routing.purpose is Purpose.referral_partner
    assert routing.explanation["rule"] == "best_partner_by_needs"
    assert "mission-locale" in routing.explanation["reason"]
    candidates = [c["partner"] for c in routing.explanation["candidates"]]
    assert candidates[0] == "mission-locale" and "france-travail" in candidates


def test_an_adult_with_housing_and_rights_needs_goes_to_the_ccas() -> None:
    routing = route(IntakeFacts([Need.housing, Need.rights], [], AgeBracket.from_30_to_49,
                                "80021"), PARTNERS)
    assert routing.target == "ccas"


def test_several_needs_or_dropping_out_go_to_the_commission() -> None:
    several = route(IntakeFacts([Need.employment, Need.housing, Need.health]), PARTNERS)
    dropped = route(IntakeFacts([Need.employment], [SituationFlag.dropped_out]), PARTNERS)
    for routing in (several, dropped):
        assert routing.target == COMMISSION
        assert routing.purpose is Purpose.referral_commission
        assert routing.explanation["rule"] == "commission_for_complex_situations"


def test_when_no_partner_fits_the_commission_looks_for_a_way() -> None:
    routing = route(IntakeFacts([Need.employment], [], AgeBracket.from_18_to_25, "75056"),
                    PARTNERS)
    assert routing.target == COMMISSION
    assert routing.explanation["rule"] == "commission_when_no_partner"


def test_routing_is_deterministic() -> None:
    facts = IntakeFacts([Need.training], [], None, None)
    assert len({route(facts, list(reversed(PARTNERS))).target for _ in range(3)} |
               {route(facts, PARTNERS).target}) == 1


def scope(purposes: set[str], recipients: set[str], days: int = 30,
          active: bool = True) -> ConsentScope:
    return ConsentScope(uuid.uuid4(), frozenset(purposes), frozenset(recipients),
                        NOW + timedelta(days=days), active)


def test_the_gate_opens_only_for_a_live_consent_covering_purpose_and_recipient() -> None:
    good = scope({"referral_partner"}, {"mission-locale"})
    assert covering_consent("mission-locale", "referral_partner", [good], NOW) == good.consent_id
    for other in (
        scope({"referral_commission"}, {"mission-locale"}),   # another purpose
        scope({"referral_partner"}, {"ccas"}),                 # another recipient
        scope({"referral_partner"}, {"mission-locale"}, days=-1),  # expired
        scope({"referral_partner"}, {"mission-locale"}, active=False),  # withdrawn
    ):
        assert covering_consent("mission-locale", "referral_partner", [other], NOW) is None
