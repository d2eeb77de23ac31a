"""Consent rules (no I/O)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from schemas.api import ConsentOut
from schemas.events import ConsentGrantedV1


def consent_out(row: Any) -> ConsentOut:
    return ConsentOut(
        id=row["id"], person_id=row["person_id"], org=row["org"], purposes=row["purposes"],
        recipients=row["recipients"], categories=row["categories"],
        notice_version=row["notice_version"],
        notice_hash=row["notice_hash"].hex() if row["notice_hash"] else None,
        method=row["method"], evidence_sha256=row["evidence_sha256"],
        granted_at=row["granted_at"], valid_until=row["valid_until"], status=row["status"],
    )


def granted_event(consent: ConsentOut) -> ConsentGrantedV1:
    return ConsentGrantedV1(
        consent_id=consent.id, person_id=consent.person_id, org=consent.org,
        purposes=consent.purposes, recipients=consent.recipients,
        categories=consent.categories, notice_version=consent.notice_version,
        notice_hash=consent.notice_hash, method=consent.method,
        evidence_sha256=consent.evidence_sha256,
        granted_at=consent.granted_at, valid_until=consent.valid_until,
    )


@dataclass(frozen=True, slots=True)
class Withdrawal:
    removed_purposes: list[str]
    removed_recipients: list[str]
    purposes: list[str]
    recipients: list[str]
    status: str


def withdraw(purposes: list[str], recipients: list[str], take_purposes: list[str],
             take_recipients: list[str]) -> Withdrawal:
    """What remains of a consent once some purposes and/or recipients are taken back; all of
    it when none is named. Nothing left: the consent is withdrawn."""
    if not take_purposes and not take_recipients:
        return Withdrawal(purposes, recipients, [], [], "withdrawn")
    left_purposes = [p for p in purposes if p not in take_purposes]
    left_recipients = [r for r in recipients if r not in take_recipients]
    status = "active" if left_purposes and left_recipients else "withdrawn"
    return Withdrawal([p for p in purposes if p in take_purposes],
                      [r for r in recipients if r in take_recipients],
                      left_purposes if status == "active" else [],
                      left_recipients if status == "active" else [], status)


def covers(row: Any, purpose: str, recipient: str, now: datetime) -> bool:
    return (row["status"] == "active" and now < row["valid_until"]
            and purpose in row["purposes"] and recipient in row["recipients"])
