"""Retention's decision (services/intake/retention.py) and the directory's periods."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from services.directory import Organisation
from services.intake.retention import Seen, cutoff, due, end_of, period, report

NOW = datetime(2028, 4, 1, tzinfo=UTC)
ORG = {"id": "plie", "name": "PLIE", "kind": "plie", "email": "plie@example.org"}


def seen(last: datetime, *orgs: str) -> Seen:
    return Seen(uuid.uuid4(), last, orgs)


def test_the_longest_period_of_those_who_met_the_person_keeps_them() -> None:
    months = {"ml": 12, "plie": 60, "ccas": 24}
    assert period(["ml", "ccas"], months) == (24, "ccas")
    assert period(["ml", "plie"], months) == (60, "plie")
    assert period(["gone"], months) == (24, "gone"), "an organisation no longer in the directory"
    assert period(["gone", "ml"], months) == (24, "gone"), "counts for the default, not less"
    assert period(["gone", "plie"], months) == (60, "plie")
    assert period([], months) == (24, None)


def test_a_period_counts_calendar_months_from_the_last_activity() -> None:
    assert end_of(datetime(2026, 1, 31, tzinfo=UTC), 1) == datetime(2026, 2, 28, tzinfo=UTC)
    assert end_of(datetime(2026, 3, 10, tzinfo=UTC), 24) == datetime(2028, 3, 10, tzinfo=UTC)
    assert cutoff({"ml": 12, "plie": 60}, NOW) == datetime(2027, 4, 1, tzinfo=UTC)


def test_only_those_past_their_period_are_due_the_longest_overdue_first() -> None:
    months = {"ml": 12, "plie": 60}
    old = seen(datetime(2025, 1, 5, tzinfo=UTC), "ml")
    older = seen(datetime(2024, 6, 1, tzinfo=UTC), "ml")
    kept_by_plie = seen(datetime(2025, 1, 5, tzinfo=UTC), "ml", "plie")
    recent = seen(datetime(2027, 6, 1, tzinfo=UTC), "ml")
    exactly = seen(datetime(2027, 4, 1, tzinfo=UTC), "ml")
    plan = due([old, older, kept_by_plie, recent, exactly], months, NOW)
    assert [d.person_id for d in plan] == [older.person_id, old.person_id, exactly.person_id]
    assert plan[0].months == 12 and plan[0].kept_by == "ml"
    assert plan[0].since == datetime(2025, 6, 1, tzinfo=UTC)
    lines = report(plan, NOW)
    assert lines[0].startswith("Retention at 2028-04-01 00:00 UTC: 3 people past their period")
    assert f"{older.person_id}  last activity 2024-06-01; ml keeps 12 months; period ended " \
           "2025-06-01" in lines


def test_an_organisation_keeps_longer_than_24_months_only_with_a_legal_basis() -> None:
    assert Organisation.model_validate(ORG).retention_months == 24
    with pytest.raises(ValidationError, match="needs retention_basis"):
        Organisation.model_validate(ORG | {"retention_months": 60})
    basis = "FSE+ : obligations de contrôle, règlement (UE) 2021/1060, art. 82"
    assert Organisation.model_validate(
        ORG | {"retention_months": 60, "retention_basis": basis}).retention_months == 60
    with pytest.raises(ValidationError):
        Organisation.model_validate(ORG | {"retention_months": 0})
