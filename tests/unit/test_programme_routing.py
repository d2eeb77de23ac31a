"""Which commission routing chooses (issue #16, bug 3), as pure rules: the one that lists the
person's commune, else one covering the whole territory, else any; the lightest among
several; none in the directory passes the rule over (no I/O)."""

from __future__ import annotations

from schemas.vocab import AgeBracket, Need
from services.referral.routing import IntakeFacts, Partner, choose_commission, load_rules, route

NORTH = Partner("commission-nord", frozenset(), frozenset({"62498"}), kind="commission")
SOUTH = Partner("commission-sud", frozenset(), frozenset({"62510"}), load=2, kind="commission")
SOUTH_TOO = Partner("commission-sud-bis", frozenset(), frozenset({"62510"}), kind="commission")
COUNTY = Partner("commission-departement", frozenset(), kind="commission")
ML = Partner("mission-locale", frozenset({Need.employment}), frozenset({"62498"}), 16, 25,
             kind="mission_locale")
RULES = load_rules()


def test_the_commission_listing_the_commune_comes_before_the_whole_territory() -> None:
    choice = choose_commission("62498", [COUNTY, SOUTH, NORTH])
    assert choice is not None and choice.commission == "commission-nord"
    assert choice.why == "La commune de la personne est dans le territoire de cette commission."
    assert [(c["partner"], c["covers"]) for c in choice.weighed] == [
        ("commission-departement", "territory"), ("commission-nord", "commune"),
        ("commission-sud", "no")]


def test_among_several_the_lightest_and_the_explanation_says_so() -> None:
    choice = choose_commission("62510", [SOUTH, SOUTH_TOO, NORTH])
    assert choice is not None and choice.commission == "commission-sud-bis"
    assert "Plusieurs commissions la couvrent (commission-sud-bis, commission-sud)" in choice.why


def test_when_none_covers_the_commune_the_lightest_of_all_and_why() -> None:
    outside = choose_commission("80021", [SOUTH, NORTH])
    unknown = choose_commission(None, [SOUTH, NORTH])
    assert outside is not None and unknown is not None
    assert outside.commission == unknown.commission == "commission-nord"
    assert outside.why.startswith("Aucune commission ne couvre la commune de la personne")
    assert unknown.why.startswith("La commune de la personne n'est pas connue")
    county = choose_commission(None, [SOUTH, COUNTY])
    assert county is not None and county.commission == "commission-departement"


def test_a_commission_is_never_a_best_partner_and_none_passes_its_rule_over() -> None:
    several = IntakeFacts([Need.employment, Need.housing, Need.health],
                          age_bracket=AgeBracket.from_18_to_25, commune="62498")
    routed = route(several, [ML, NORTH], RULES)
    assert routed is not None and routed.target == "commission-nord"
    assert routed.explanation["reason"].startswith("commission-nord : Plusieurs besoins")
    without = route(several, [ML], RULES)
    assert without is not None and without.target == "mission-locale"
    assert without.explanation["passed_over"][0]["rule"] == "commission_for_complex_situations"
    assert route(IntakeFacts([Need.housing], commune="62498"), [ML], RULES) is None
    alone = route(IntakeFacts([Need.housing], commune="62498"), [ML, COUNTY], RULES)
    assert alone is not None and alone.target == "commission-departement"
    assert alone.explanation["rule"] == "commission_when_no_partner"
