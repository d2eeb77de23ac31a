"""The relays of the network (issue #11, MiloMouv'): a mayor, an association, a shop that knows
a young person and signals them to the mobile team, without an account, from a personal link
the coordination gives it. No I/O.

The link (`/signalement/<token>`) carries a random secret of TOKEN_BYTES bytes. Relais keeps
only its keyed hash (HMAC-SHA-256 under a key derived from the master key with its own HKDF
info, LINK_CONTEXT, as the codes of services/runtime/codes.py): a copy of the database gives
no link away, and the coordination cannot show a link again (a relay that lost it gets a new
one, the old one revoked). Revoking a relay is a column: the next request with its link is
refused. Wrong links are throttled per address and overall, and logged without the token
(services/runtime/codes.py: `Throttle`).

The relay's form has no session: its CSRF token is bound to the link (`form_token`), as the
person's own pages of the consent receipt do."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import string

from services.runtime import codes
from services.runtime.sealing import Keyring, derived

LINK_CONTEXT = derived("relais-relay-link-v1")
TOKEN_BYTES = 32
TOKEN_LENGTH = 43
"""The token as the link carries it: TOKEN_BYTES in URL-safe base64, without padding."""
URL_SAFE = frozenset(string.ascii_letters + string.digits + "-_")


def key(master: Keyring) -> bytes:
    """The relays' own key, derived from the master key (so it changes with it)."""
    return codes.derive(master, LINK_CONTEXT)


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def well_formed(token: str) -> bool:
    """Whether `token` could be one Relais made (checked before any database lookup)."""
    return len(token) == TOKEN_LENGTH and all(c in URL_SAFE for c in token)


def link_hash(relay_key: bytes, token: str) -> bytes:
    """What is kept of a relay's link."""
    return codes.keyed_hash(relay_key, "relay", token)


def form_token(relay_key: bytes, token: str) -> str:
    """The relay's form's CSRF token, bound to its link (there is no session)."""
    digest = hmac.new(relay_key, b"form|" + token.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def form_token_matches(relay_key: bytes, token: str, sent: str) -> bool:
    return hmac.compare_digest(form_token(relay_key, token), sent)


def hint(who: str, reach: str | None) -> str:
    """The signal's hint, as the mobile team reads it: who the person is (a first name or a
    way to recognise them), then how to reach them."""
    return f"{who}\nPour la joindre : {reach}" if reach else who
