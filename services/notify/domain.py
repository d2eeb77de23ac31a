"""Who is told what, and what it says (no I/O). Messages are French, from Jinja2 templates,
and carry no personal data: the referral reference, what happened, and a link."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import random
import secrets
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

import jinja2

from schemas import events as ev
from schemas.vocab import Purpose

NOTIFICATION_IDS = uuid.UUID("0b7f6a3e-0d4e-4a38-8d0a-2f5b3c1d9e42")
_templates = jinja2.Environment(
    loader=jinja2.PackageLoader("services.notify", "templates"),
    autoescape=False,  # plain text
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
)


class Kind(StrEnum):
    new_referral = "new_referral"  # to the recipient
    answered = "answered"  # to the sending team
    reminder = "reminder"  # to the recipient
    escalation = "escalation"  # to the coordinator
    stop_processing = "stop_processing"  # to the recipient that had the dossier
    cancelled = "cancelled"  # to the recipient, when the sender cancels
    expired = "expired"  # to the sending team


LINKED = frozenset({Kind.new_referral, Kind.reminder, Kind.answered})
"""Kinds whose email carries a magic link to the referral (one per address, made when it is
sent: `services/runtime/links.py`): to the recipient it waits on, and to the sending team
while the referral is open (`linked`)."""
OPEN_ANSWERS = frozenset({"received", "accepted", "in_progress"})
LINK_MARK = "{{lien personnel}}"
"""Where the magic link goes in an email's stored text (the link is made when it is sent,
so that it is never kept)."""

MANDATORY = frozenset({Kind.new_referral, Kind.stop_processing})
"""Kinds a recipient cannot mute: a hand-off, and the order to stop processing."""

ANSWERS = {"received", "accepted", "rejected", "in_progress", "completed"}
TOLD = frozenset({ev.REFERRAL_REQUESTED, ev.REFERRAL_REMINDER_DUE, ev.REFERRAL_ESCALATED,
                  ev.REFERRAL_STOP_PROCESSING, ev.REFERRAL_STATUS_CHANGED})
"""The event types that may call for a message."""
LABELS = {
    "received": "accusé de réception", "accepted": "acceptée", "rejected": "refusée",
    "in_progress": "accompagnement commencé", "completed": "terminée",
    "not_reachable": "personne injoignable", "did_not_come": "ne s'est pas présentée",
    "not_eligible": "non éligible", "no_place": "pas de place disponible",
    "not_interested": "ne souhaite pas être accompagnée", "followed_elsewhere": "déjà suivie "
    "ailleurs", "duplicate": "doublon", "other": "autre motif",
    "registered_mission_locale": "inscription à la Mission locale",
    "registered_france_travail": "inscription à France Travail", "training": "formation",
    "job": "emploi", "contrat_engagement_jeune": "Contrat d'engagement jeune",
    "stopped": "arrêt de l'accompagnement", "oriented_to_partner": "orientée vers un partenaire",
    "kept_with_outreach": "suivie par l'équipe d'aller vers",
    "first_appointment": "premier rendez-vous tenu", "contract_signed": "contrat signé",
    "consent_withdrawn": "retiré", "consent_expired": "expiré",
    Purpose.referral_commission: "orientation vers la commission de remobilisation",
    Purpose.referral_partner: "orientation vers votre structure pour un accompagnement",
}


@dataclass(frozen=True, slots=True)
class Message:
    kind: Kind
    recipient_org: str
    subject: str
    body: str
    referral_id: uuid.UUID
    person_id: uuid.UUID
    link: str
    facts: dict[str, Any]
    """What a webhook or the inbox carries besides the text: ids, statuses, no personal data."""
    email_body: str
    """The email's text: with `LINK_MARK` where the magic link goes, for the kinds that
    carry one."""


def notification_id(event_id: str, recipient_org: str, channel: str,
                    endpoint: uuid.UUID | str | None = None) -> uuid.UUID:
    """Stable per (event, recipient, channel[, endpoint or address]): an event never makes
    two."""
    suffix = f"/{endpoint}" if endpoint else ""
    return uuid.uuid5(NOTIFICATION_IDS, f"{event_id}/{recipient_org}/{channel}{suffix}")


def render(kind: Kind, **values: Any) -> tuple[str, str]:
    """(subject, body) of a kind of message."""
    module = _templates.get_template(f"{kind}.txt.j2").make_module(values)
    return str(vars(module)["subject"]), str(module).lstrip("\n")


def messages(event_type: str, data: Mapping[str, Any], names: Mapping[str, str],
             base_url: str, link_days: int = 14) -> list[Message]:
    """The messages an event calls for (none for most events)."""
    plan = _plan(event_type, data)
    if plan is None:
        return []
    kind, recipients, extra = plan
    referral_id = uuid.UUID(str(data["referral_id"]))
    person_id = uuid.UUID(str(data["person_id"]))
    link = f"{base_url}/orientations/{referral_id}"  # the console's page (sign-in first)
    proposal = data.get("proposal") or ""
    values = {
        "ref": str(referral_id)[:8], "referral_id": referral_id, "link": link,
        "sender_name": names.get(data["sender_org"], data["sender_org"]),
        "target_name": names.get(data["target"], data["target"]),
        "purpose_label": LABELS.get(data["purpose"], data["purpose"]),
        "proposal_name": names.get(proposal, proposal), "relayed": False,
    } | extra
    subject, body = render(kind, **values, personal=False, link_days=link_days)
    email_body = render(kind, **(values | {"link": LINK_MARK}), personal=True,
                        link_days=link_days)[1] if linked(kind, data) else body
    facts = {"kind": str(kind), "referral_id": str(referral_id), "link": link,
             "sender_org": data["sender_org"], "target": data["target"]} | {
        k: data[k] for k in ("status", "reason", "outcome", "cause", "timer", "proposal")
        if data.get(k) is not None}
    drafts = [Message(kind, org, subject, body, referral_id, person_id, link, facts,
                      email_body) for org in recipients]
    first = data.get("first_sender")
    if kind is Kind.answered and first and data.get("first_referral_id"):
        drafts.append(_relayed(values, facts, person_id, first,
                               uuid.UUID(str(data["first_referral_id"])), base_url,
                               link_days))
    return drafts


def _relayed(values: dict[str, Any], facts: dict[str, Any], person_id: uuid.UUID,
             first_sender: str, first_id: uuid.UUID, base_url: str,
             link_days: int) -> Message:
    """The same answer, to the team that met the person and sent the first referral of the
    chain: about its own referral (its page shows the chain), with the follow-up's status,
    target, codes and outcome only, and no magic link (the follow-up is not its to open)."""
    link = f"{base_url}/orientations/{first_id}"
    subject, body = render(Kind.answered, **(values | {
        "relayed": True, "first_ref": str(first_id)[:8], "first_referral_id": first_id,
        "link": link}), personal=False, link_days=link_days)
    said = facts | {"referral_id": str(first_id), "link": link,
                    "follow_up_id": facts["referral_id"]}
    return Message(Kind.answered, first_sender, subject, body, first_id, person_id, link,
                   said, body)


def linked(kind: Kind, data: Mapping[str, Any]) -> bool:
    """Whether the emails of this message carry a magic link: never about a referral that
    is closed (the link would open nothing)."""
    return kind in LINKED and (kind != Kind.answered or data.get("status") in OPEN_ANSWERS)


def _plan(event_type: str, d: Mapping[str, Any]) -> tuple[Kind, list[str],
                                                          dict[str, Any]] | None:
    if event_type == ev.REFERRAL_REQUESTED:
        return Kind.new_referral, [d["target"]], {}
    if event_type == ev.REFERRAL_REMINDER_DUE:
        return Kind.reminder, [d["target"]], {"timer": d["timer"],
                                              "deadline": _day(d["deadline"])}
    if event_type == ev.REFERRAL_ESCALATED:
        return Kind.escalation, [d["coordinator"]], {"deadline": _day(d["deadline"])}
    if event_type == ev.REFERRAL_STOP_PROCESSING:
        return Kind.stop_processing, [d["target"]], {"cause_label": LABELS[d["cause"]]}
    if event_type != ev.REFERRAL_STATUS_CHANGED:
        return None
    status = d["status"]
    if status in ANSWERS and d["actor_org"] == d["target"]:
        return Kind.answered, [d["sender_org"]], {
            "status_label": LABELS[status],
            "reason_label": LABELS.get(d.get("reason") or "", ""),
            "outcome_label": LABELS.get(d.get("outcome") or "", ""),
            "milestone_label": LABELS.get(d.get("milestone") or "", "")}
    if status == "cancelled" and d.get("cause") is None \
            and d.get("from_status") != "awaiting_consent":  # the target never had it: a
        return Kind.cancelled, [d["target"]], {}              # person refused, say nothing
    if status == "expired":
        return Kind.expired, [d["sender_org"]], {}
    return None


def _day(value: Any) -> str:
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment.strftime("%d/%m/%Y")


# --- email ---------------------------------------------------------------------------------


def message_id(notification: uuid.UUID) -> str:
    return f"<{notification}@relais.notify>"


def mail_domain(address: str) -> str:
    return address.rpartition("@")[2].strip().lower()


def gets_magic_link(address: str, directory_email: str | None) -> bool:
    """A magic link opens the organisation's referrals to whoever reads the address: only to
    the mail domain of the team mailbox the directory gives the organisation. An address
    added elsewhere (a personal one, another organisation's) gets the console's page, which
    asks to sign in."""
    return bool(directory_email) and mail_domain(address) == mail_domain(str(directory_email))


def addresses_changed(name: str, before: Sequence[str], after: Sequence[str],
                      who: str) -> tuple[str, str] | None:
    """The notice to an organisation's team mailbox (old and new) when the addresses that
    receive its referrals change: (subject, text), or None when they did not change."""
    if list(before) == list(after):
        return None
    lines = "\n".join(f"  - {a}" for a in after) or "  (aucune)"
    was = "\n".join(f"  - {a}" for a in before) or "  (aucune)"
    return (f"[Relais] Les adresses qui reçoivent les orientations de {name} ont changé",
            "Bonjour,\n\n"
            f"{who} a modifié dans Relais les adresses qui reçoivent les orientations de "
            f"{name}.\n\nAvant :\n{was}\n\nMaintenant :\n{lines}\n\n"
            "Chaque adresse de votre domaine reçoit dans les courriels un lien personnel qui "
            "ouvre l'orientation et son dossier. Si ce changement vous surprend, prévenez "
            "sans attendre la coordination du territoire et le délégué à la protection des "
            "données.\n\n--\nRelais\n")


def with_link(body: str, link: str) -> str:
    """The email's text with its magic link (or the console's address, for a message
    without one)."""
    return body.replace(LINK_MARK, link)


def email(notification: uuid.UUID, sender: str, to: Sequence[str], subject: str,
          body: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    msg["Subject"] = subject
    msg["Message-ID"] = message_id(notification)
    msg.set_content(body)
    return msg


# --- webhooks (Standard Webhooks) ------------------------------------------------------------

SECRET_PREFIX = "whsec_"
RETRY_SCHEDULE = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
"""Seconds before each retry (Standard Webhooks' schedule): 27 h 40 min in all, then dead."""


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header: v1, then base64 HMAC-SHA256 of id.timestamp.body."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def retry_in(attempts_made: int, rng: random.Random | None = None) -> float | None:
    """Seconds before the next attempt after `attempts_made` failed ones; None: dead."""
    if attempts_made > len(RETRY_SCHEDULE):
        return None
    base = RETRY_SCHEDULE[attempts_made - 1]
    return base * (0.8 + 0.4 * (rng or random).random())  # +-20 % jitter


def refused_addresses(addresses: Iterable[str], allowed: Iterable[str]) -> list[str]:
    """The addresses a webhook may not reach: private, loopback, link-local and the like,
    unless they fall in an allowed network (a setting; the tests allow loopback)."""
    nets = [ipaddress.ip_network(n) for n in allowed]
    refused = []
    for text in addresses:
        address = ipaddress.ip_address(text.split("%", 1)[0])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        if any(address in net for net in nets):
            continue
        if not address.is_global or address.is_multicast:
            refused.append(text)
    return refused


def webhook_target(url: str) -> tuple[str, int]:
    """The host and port a webhook URL names; ValueError (with the reason) when it is not an
    http(s) URL with a host."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise ValueError("not a valid URL") from exc
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError("the URL must be http(s)://host/...")
    return parts.hostname, port


def answer_error(status: int, location: str | None = None) -> str | None:
    """Why an endpoint's answer is not a delivery (None for a 2xx). A redirect is never
    followed: a webhook goes to the registered URL only, whose address was checked, and the
    receiver fixes its URL (a 3xx is a failed attempt, retried on the schedule)."""
    if 200 <= status < 300:
        return None
    if 300 <= status < 400:
        where = f" to {location[:200]}" if location else ""
        return f"HTTP {status}: redirect{where} not followed (webhooks go to the registered URL" \
            " only)"
    return f"HTTP {status}"


# --- the inbox -------------------------------------------------------------------------------

MAX_SEQ = 2**63 - 1
"""The largest sequence number (a PostgreSQL bigint)."""


def sequence_number(text: str | None) -> int | None:
    """An inbox sequence number (`after`, `Last-Event-ID`): 0 when absent, None when it is not
    ASCII digits or is beyond a bigint."""
    if not text:
        return 0
    if not (text.isascii() and text.isdigit()) or len(text) > len(str(MAX_SEQ)):
        return None
    value = int(text)
    return value if value <= MAX_SEQ else None


def stream_refused(client_streams: int, org_streams: int, max_per_client: int,
                   max_per_org: int) -> str | None:
    """Why one more live inbox stream is refused (None: it may open), given the streams the
    client and its organisation hold open already."""
    if client_streams >= max_per_client:
        return f"This client has {client_streams} inbox streams open already (at most " \
            f"{max_per_client}): close one first."
    if org_streams >= max_per_org:
        return f"Your organisation has {org_streams} inbox streams open already (at most " \
            f"{max_per_org}): close one first."
    return None
