"""Pure rules of the referral service: routing, the consent gate, the state machine, the
working-day deadlines and the statistics' suppression."""

from __future__ import annotations

import dataclasses
import itertools
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from schemas.vocab import (
    AgeBracket,
    Milestone,
    Need,
    Outcome,
    Purpose,
    ReferralAction,
    ReferralStatus,
    RejectReason,
    SituationFlag,
)
from services import directory
from services.referral import deadlines, stats
from services.referral import routing as routing_rules
from services.referral.domain import ConsentScope, Gate, covering_consent, judge
from services.referral.lifecycle import RULES, Answer, Refused, Role, decide
from services.referral.routing import IntakeFacts, Partner, Routing, Rules, load_rules

RULES_FILE = load_rules()
PARTNERS = [
    Partner(o.id, frozenset(o.needs), frozenset(o.communes), o.min_age, o.max_age, kind=o.kind)
    for o in directory.load().organisations
]
COMMISSION = "commission-remobilisation"  # the demo directory's only commission


def route(facts: IntakeFacts, partners: list[Partner], rules: Rules) -> Routing:
    """Routing in the demo territory, which always has somewhere to go (its commission)."""
    routed = routing_rules.route(facts, partners, rules)
    assert routed is not None
    return routed


NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # a Monday


def test_a_young_person_looking_for_work_goes_to_the_mission_locale() -> None:
    routing = route(IntakeFacts([Need.employment], [], AgeBracket.from_18_to_25, "80021"),
                    PARTNERS, RULES_FILE)
    assert routing.target == "mission-locale"
    assert routing.purpose is Purpose.referral_partner
    assert routing.explanation["rule"] == "best_partner_by_needs"
    assert "mission-locale" in routing.explanation["reason"]
    candidates = [c["partner"] for c in routing.explanation["candidates"]]
    assert candidates[0] == "mission-locale" and "france-travail" in candidates


def test_an_adult_with_housing_and_rights_needs_goes_to_the_ccas() -> None:
    routing = route(IntakeFacts([Need.housing, Need.rights], [], AgeBracket.from_30_to_49,
                                "80021"), PARTNERS, RULES_FILE)
    assert routing.target == "ccas"


def test_several_needs_or_dropping_out_go_to_the_commission_each_by_its_rule() -> None:
    several = route(IntakeFacts([Need.employment, Need.housing, Need.health]), PARTNERS,
                    RULES_FILE)
    dropped = route(IntakeFacts([Need.employment], [SituationFlag.dropped_out]), PARTNERS,
                    RULES_FILE)
    assert several.explanation["rule"] == "commission_for_complex_situations"
    assert dropped.explanation["rule"] == "commission_for_dropouts"
    for routing in (several, dropped):
        assert routing.target == COMMISSION
        assert routing.purpose is Purpose.referral_commission


def test_when_no_partner_fits_the_commission_looks_for_a_way() -> None:
    routing = route(IntakeFacts([Need.employment], [], AgeBracket.from_18_to_25, "75056"),
                    PARTNERS, RULES_FILE)
    assert routing.target == COMMISSION
    assert routing.explanation["rule"] == "commission_when_no_partner"


def test_a_full_partner_without_waiting_list_is_passed_over_and_places_then_load_decide(
) -> None:
    facts = IntakeFacts([Need.employment], [], AgeBracket.from_18_to_25, "80021")
    full = [dataclasses.replace(p, open_places=0) if p.id == "mission-locale" else p
            for p in PARTNERS]
    assert route(facts, full, RULES_FILE).target != "mission-locale"
    waiting = [dataclasses.replace(p, open_places=0, waiting_list=True)
               if p.id == "mission-locale" else p for p in PARTNERS]
    ranked = route(facts, waiting, RULES_FILE).explanation["candidates"]
    assert "mission-locale" in [c["partner"] for c in ranked]
    # same needs matched: the one with places goes first, then the lighter load
    a = Partner("a", frozenset({Need.training}), load=9)
    b = Partner("b", frozenset({Need.training}), load=1)
    c = Partner("c", frozenset({Need.training}), open_places=0, waiting_list=True)
    assert [x["partner"] for x in route(IntakeFacts([Need.training]), [c, a, b],
                                        RULES_FILE).explanation["candidates"]] == ["b", "a", "c"]


def test_routing_is_deterministic() -> None:
    facts = IntakeFacts([Need.training], [], None, None)
    assert len({route(facts, list(reversed(PARTNERS)), RULES_FILE).target for _ in range(3)} |
               {route(facts, PARTNERS, RULES_FILE).target}) == 1


def test_a_coordinator_changes_the_rules_in_a_file(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - id: housing_first\n    when: {needs_any: [housing]}\n"
                     "    to: ccas\n    reason: Le logement d'abord.\n"
                     "  - id: everyone_else\n    to: commission\n    reason: Par défaut.\n")
    loaded = load_rules(rules)
    assert route(IntakeFacts([Need.housing, Need.health]), PARTNERS, loaded).explanation[
        "rule"] == "housing_first"
    assert route(IntakeFacts([Need.employment]), PARTNERS, loaded).target == COMMISSION
    rules.write_text("rules:\n  - id: bad\n    when: {unknown_condition: 1}\n    to: ccas\n"
                     "    reason: x\n")
    with pytest.raises(ValidationError):
        load_rules(rules)


def scope(purposes: set[str], recipients: set[str], days: int = 30, active: bool = True,
          status: str = "active") -> ConsentScope:
    return ConsentScope(uuid.uuid4(), frozenset(purposes), frozenset(recipients),
                        NOW + timedelta(days=days), active, status, frozenset(purposes),
                        frozenset(recipients))


def test_the_gate_opens_only_for_a_live_consent_covering_purpose_and_recipient() -> None:
    good = scope({"referral_partner"}, {"mission-locale"})
    assert covering_consent("mission-locale", "referral_partner", [good], NOW) == good
    for other in (
        scope({"referral_commission"}, {"mission-locale"}),   # another purpose
        scope({"referral_partner"}, {"ccas"}),                 # another recipient
        scope({"referral_partner"}, {"mission-locale"}, days=-1),  # expired
        scope({"referral_partner"}, {"mission-locale"}, active=False),  # withdrawn
    ):
        assert covering_consent("mission-locale", "referral_partner", [other], NOW) is None


def test_a_withdrawal_cancels_what_it_covered_and_stops_closed_hand_offs() -> None:
    withdrawn = dataclasses.replace(
        scope({"referral_partner"}, {"mission-locale"}), active=False, status="withdrawn",
        purposes=frozenset(), recipients=frozenset())
    expired = dataclasses.replace(withdrawn, status="expired")
    args = ("mission-locale", "referral_partner")
    assert judge(ReferralStatus.requested, True, *args, [withdrawn], NOW).gate is Gate.cancel
    assert judge(ReferralStatus.awaiting_consent, False, *args, [withdrawn], NOW).cause == \
        "consent_withdrawn"
    assert judge(ReferralStatus.accepted, True, *args, [expired], NOW).cause == \
        "consent_expired"
    assert judge(ReferralStatus.completed, True, *args, [withdrawn], NOW).gate is Gate.stop
    assert judge(ReferralStatus.cancelled, True, *args, [withdrawn], NOW).gate is Gate.wait
    # another live consent still covers it: nothing stops
    other = scope({"referral_partner"}, {"mission-locale"})
    assert judge(ReferralStatus.accepted, True, *args, [withdrawn, other], NOW).gate is \
        Gate.keep
    # a closed referral stays closed, whatever consent comes later
    assert judge(ReferralStatus.cancelled, False, *args, [other], NOW).gate is Gate.wait
    # a grant never seen (only its withdrawal): it covered nothing we know of
    unseen = dataclasses.replace(withdrawn, granted_purposes=None, granted_recipients=None)
    assert judge(ReferralStatus.awaiting_consent, False, *args, [unseen], NOW).gate is Gate.wait


def test_the_recipient_answers_the_sender_cancels_and_illegal_moves_are_refused() -> None:
    S, A = ReferralStatus, ReferralAction
    recipient, sender = frozenset({Role.recipient}), frozenset({Role.sender})
    assert decide(S.requested, A.receive, recipient, Answer()).to is S.received
    assert decide(S.received, A.accept, recipient, Answer()).to is S.accepted
    assert decide(S.accepted, A.start, recipient,
                  Answer(milestone=Milestone.first_appointment)).to is S.in_progress
    assert decide(S.in_progress, A.complete, recipient,
                  Answer(outcome=Outcome.job)).to is S.completed
    assert decide(S.accepted, A.cancel, sender, Answer()).to is S.cancelled
    assert not decide(S.accepted, A.accept, recipient, Answer()).changed  # a retry
    cases = [
        (S.completed, A.accept, recipient, Answer(), 409),
        (S.awaiting_consent, A.accept, recipient, Answer(), 409),
        (S.requested, A.accept, sender, Answer(), 403),
        (S.requested, A.cancel, recipient, Answer(), 403),
        (S.requested, A.reject, recipient, Answer(), 422),
        (S.requested, A.reject, recipient, Answer(reason=RejectReason.other), 422),
        (S.in_progress, A.complete, recipient, Answer(), 422),
    ]
    for status, action, roles, answer, code in cases:
        with pytest.raises(Refused) as refused:
            decide(status, action, roles, answer)
        assert refused.value.status == code, (status, action)
    assert decide(S.requested, A.reject, recipient,
                  Answer(reason=RejectReason.other, text="Déménagement")).to is S.rejected


def test_every_status_is_reachable_and_terminal_ones_have_no_way_out() -> None:
    reachable = {ReferralStatus.awaiting_consent, ReferralStatus.requested,
                 ReferralStatus.expired}  # the gate and the deadlines move those
    reachable |= {rule.to for rule in RULES.values()}
    assert reachable == set(ReferralStatus)
    terminal = {ReferralStatus.completed, ReferralStatus.rejected, ReferralStatus.cancelled,
                ReferralStatus.expired}
    for status, rule in itertools.product(terminal, RULES.values()):
        assert status not in rule.sources


def test_working_days_skip_weekends_and_french_holidays() -> None:
    assert deadlines.easter(2026) == date(2026, 4, 5)
    assert deadlines.easter(2027) == date(2027, 3, 28)
    friday = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
    assert deadlines.add_working_days(friday, 1).date() == date(2026, 11, 23)
    before_christmas = datetime(2026, 12, 24, 10, 0, tzinfo=UTC)  # Thursday; 25th is off
    assert deadlines.add_working_days(before_christmas, 1).date() == date(2026, 12, 28)
    plan = deadlines.schedule(NOW, 3)
    assert plan[deadlines.Timer.deadline] == datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
    assert plan[deadlines.Timer.half_way] == datetime(2026, 11, 24, 21, 0, tzinfo=UTC)
    assert plan[deadlines.Timer.escalate] == datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
    assert plan[deadlines.Timer.expire] == datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def test_a_figure_about_fewer_than_five_people_is_not_shown() -> None:
    assert stats.shown(4) is None and stats.shown(5) == 5
    assert stats.shown(3, 12) is None and stats.shown(7, 12) == 12
    rows = [{"dimension": "total", "key": "all", "people": 12, "intakes": 20},
            {"dimension": "site", "key": "qpv-etouvie", "people": 9, "intakes": 15},
            {"dimension": "site", "key": "en-ligne", "people": 3, "intakes": 5},
            {"dimension": "gender", "key": "female", "people": 6, "intakes": 9},
            {"dimension": "gender", "key": "male", "people": 2, "intakes": 2}]
    out = stats.figures(rows, [], [])
    assert out["site"] == {"qpv-etouvie": 15, "en-ligne": None}
    assert out["gender"] == {"female": 50.0, "male": None}
    csv_text = stats.to_csv({"from": "2026-01-01", "to": "2027-01-01", "site": None}, out)
    assert "Contacts par lieu,en-ligne,<5" in csv_text
