"""Magic links: what an email to a partner carries so that its recipient opens that one
referral without an account.

A link is sealed (AES-256-GCM, under a key derived from the master key), so it is both
signed and unreadable: nobody can alter it, make one, or learn from it which person it is
about. It says which notification it came with (its id: one per address), for which
referral, person, organisation and email address, and until when. The notify service makes
one for each email it sends; the auth service opens it (`/lien/...`), asks the notify
service whether the address still receives that organisation's referrals, binds the link to
the first device that opens it, and gives a short session limited to that referral
(`Principal.referral`, `Principal.person`). Pure code: no I/O."""

from __future__ import annotations

import base64
import struct
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from services.runtime import sealing

PREFIX = "link:"
"""The client id of a link's session: `link:<notification id>`."""
CONTEXT = sealing.derived("relais-magic-link-v1")
LINK_DAYS = 14
SESSION_MINUTES = 30
COOKIE = "relais_lien"
DEVICE_COOKIE = "relais_appareil"


class LinkError(Exception):
    """Not a link Relais made: altered, cut, or made with another key."""


@dataclass(frozen=True, slots=True)
class Link:
    id: uuid.UUID
    referral: uuid.UUID
    person: uuid.UUID
    org: str
    email: str
    expires: datetime

    def expired(self, now: datetime) -> bool:
        return now >= self.expires


def key(master: sealing.Keyring) -> bytes:
    """The links' own key, derived from the keyring's root (a rotation of the master key
    leaves the links sent valid)."""
    return master.derive(CONTEXT)


def make(link_key: bytes, link: Link) -> str:
    org, email = link.org.encode(), link.email.lower().encode()
    plain = (link.id.bytes + link.referral.bytes + link.person.bytes
             + struct.pack(">IBB", int(link.expires.timestamp()), len(org), len(email))
             + org + email)
    sealed = sealing.seal(link_key, plain, CONTEXT)
    return base64.urlsafe_b64encode(sealed).decode().rstrip("=")


def open_link(link_key: bytes, token: str) -> Link:
    """The link, if Relais made it with this key; LinkError otherwise (expiry is the
    caller's to check, to say it plainly)."""
    try:
        sealed = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        plain = sealing.open_sealed(link_key, sealed, CONTEXT)
        expires, org_len, email_len = struct.unpack(">IBB", plain[48:54])
        org = plain[54:54 + org_len].decode()
        email = plain[54 + org_len:54 + org_len + email_len].decode()
    except (ValueError, struct.error, sealing.SealError, UnicodeDecodeError) as exc:
        raise LinkError("not a Relais link") from exc
    if len(plain) != 54 + org_len + email_len:
        raise LinkError("not a Relais link")
    return Link(uuid.UUID(bytes=plain[:16]), uuid.UUID(bytes=plain[16:32]),
                uuid.UUID(bytes=plain[32:48]), org, email,
                datetime.fromtimestamp(expires, UTC))
