from __future__ import annotations

import uuid

from schemas.events import ReferralRequestedV1
from services.notify import domain


def test_the_message_is_french_has_no_personal_data_and_a_stable_id() -> None:
    person = uuid.uuid4()
    referral = ReferralRequestedV1(
        referral_id=uuid.uuid4(), person_id=person, intake_id=uuid.uuid4(),
        sender_org="equipe-aller-vers", target="mission-locale", purpose="referral_partner",
        consent_id=uuid.uuid4(),
    )
    draft = domain.referral_requested("event-1", referral, "Le Camion", "https://relais.test")
    assert draft.subject.startswith("[Relais] Nouvelle orientation")
    assert "consentement explicite" in draft.body
    assert f"https://relais.test/v1/referrals/{referral.referral_id}" in draft.body
    assert str(person) not in draft.body and str(person) not in draft.subject
    again = domain.referral_requested("event-1", referral, "Le Camion", "https://relais.test")
    assert again.id == draft.id, "the same event and recipient make the same notification"
    other = domain.referral_requested("event-2", referral, "Le Camion", "https://relais.test")
    assert other.id != draft.id
    msg = domain.email(draft.id, "from@x.org", "to@y.org", draft.subject, draft.body)
    assert msg["Message-ID"] == f"<{draft.id}@relais.notify>"
