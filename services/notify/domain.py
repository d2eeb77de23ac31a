"""What a notification says (no I/O). Messages are French and carry no personal data: the
referral reference, what happened, and a link."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from email.message import EmailMessage

import jinja2

from schemas.events import ReferralRequestedV1
from schemas.vocab import Purpose

NOTIFICATION_IDS = uuid.UUID("0b7f6a3e-0d4e-4a38-8d0a-2f5b3c1d9e42")
PURPOSE_LABELS = {
    Purpose.referral_commission: "orientation vers la commission de remobilisation",
    Purpose.referral_partner: "orientation vers votre structure pour un accompagnement",
}
_templates = jinja2.Environment(
    loader=jinja2.PackageLoader("services.notify", "templates"),
    autoescape=False,  # plain-text email
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
)


@dataclass(frozen=True, slots=True)
class Draft:
    id: uuid.UUID
    subject: str
    body: str


def notification_id(event_id: str, recipient_org: str, channel: str) -> uuid.UUID:
    """Stable per (event, recipient, channel): the same event never makes two notifications."""
    return uuid.uuid5(NOTIFICATION_IDS, f"{event_id}/{recipient_org}/{channel}")


def referral_requested(event_id: str, referral: ReferralRequestedV1, sender_name: str,
                       base_url: str) -> Draft:
    body = _templates.get_template("referral_requested.txt.j2").render(
        sender_name=sender_name,
        purpose_label=PURPOSE_LABELS.get(referral.purpose, str(referral.purpose)),
        referral_id=referral.referral_id,
        link=f"{base_url}/v1/referrals/{referral.referral_id}",
    )
    return Draft(
        id=notification_id(event_id, referral.target, "email"),
        subject=f"[Relais] Nouvelle orientation {str(referral.referral_id)[:8]}",
        body=body,
    )


def message_id(notification: uuid.UUID) -> str:
    return f"<{notification}@relais.notify>"


def email(notification: uuid.UUID, sender: str, to: str, subject: str, body: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = message_id(notification)
    msg.set_content(body)
    return msg
