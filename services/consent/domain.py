"""Consent rules (no I/O)."""

from __future__ import annotations

from typing import Any

from schemas.api import ConsentOut
from schemas.events import ConsentGrantedV1


def consent_out(row: Any) -> ConsentOut:
    return ConsentOut(
        id=row["id"], person_id=row["person_id"], org=row["org"], purposes=row["purposes"],
        recipients=row["recipients"], categories=row["categories"],
        notice_version=row["notice_version"], method=row["method"],
        granted_at=row["granted_at"], valid_until=row["valid_until"], status=row["status"],
    )


def granted_event(consent: ConsentOut) -> ConsentGrantedV1:
    return ConsentGrantedV1(
        consent_id=consent.id, person_id=consent.person_id, org=consent.org,
        purposes=consent.purposes, recipients=consent.recipients,
        categories=consent.categories, notice_version=consent.notice_version,
        granted_at=consent.granted_at, valid_until=consent.valid_until,
    )
