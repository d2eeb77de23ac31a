"""The receipt of a consent (issue #11, point 6): what the person keeps to see and withdraw
their consents themself, without an account. No I/O.

A receipt gives two ways in, both made when the counsellor shows it:

- a **link** (`/mon-accord/<token>`, the QR code's target): the receipt's id sealed
  (AES-256-GCM) under a key derived from the master key with its own HKDF info, as magic
  links are (services/runtime/links.py). It is kept nowhere: Relais opens it, nobody can alter
  it or make one, and it says nothing to whoever reads it. Relais can make it again from the
  receipt's id, which is how the code leads to it;
- a **code** of CODE_LENGTH characters, without the letters and digits that read alike, to
  type at `/mon-accord` without a phone camera. Only its keyed hash is kept (HMAC-SHA-256
  under another derived key): a copy of the database alone gives no code away, not even by
  trying them all. Failures are throttled per address and overall (`Throttle`). The codes
  and their throttle are the runtime's (services/runtime/codes.py), shared with the
  person's card.

Both are shown once, on the receipt; another receipt for the same consent makes another link
and code (the earlier ones still work: a printed receipt stays valid)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from dataclasses import dataclass

from services.runtime import codes, sealing
from services.runtime.codes import ALPHABET as ALPHABET
from services.runtime.codes import CODE_LENGTH as CODE_LENGTH
from services.runtime.codes import FAILURES_OVERALL as FAILURES_OVERALL
from services.runtime.codes import FAILURES_PER_ADDRESS as FAILURES_PER_ADDRESS
from services.runtime.codes import GROUP as GROUP
from services.runtime.codes import Throttle as Throttle
from services.runtime.codes import clean as clean
from services.runtime.codes import grouped as grouped
from services.runtime.codes import new_code as new_code
from services.runtime.sealing import Keyring

LINK_CONTEXT = sealing.derived("relais-consent-receipt-link-v1")
CODE_CONTEXT = sealing.derived("relais-consent-receipt-code-v1")


class ReceiptError(Exception):
    """Not a link Relais made: altered, cut, or made with another key."""


@dataclass(frozen=True, slots=True)
class Keys:
    link: bytes
    code: bytes


def keys(master: Keyring) -> Keys:
    """The receipts' own keys, derived from the master key (so they change with it)."""
    return Keys(codes.derive(master, LINK_CONTEXT), codes.derive(master, CODE_CONTEXT))


def code_hash(found: Keys, code: str) -> bytes:
    """What is kept of a code: its HMAC under the code key."""
    return codes.keyed_hash(found.code, "code", code)


def token(found: Keys, receipt_id: uuid.UUID) -> str:
    """The link's token: the receipt's id, sealed."""
    sealed = sealing.seal(found.link, receipt_id.bytes, LINK_CONTEXT)
    return base64.urlsafe_b64encode(sealed).decode().rstrip("=")


def open_token(found: Keys, text: str) -> uuid.UUID:
    """The receipt's id, if Relais made this token; ReceiptError otherwise."""
    try:
        sealed = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        plain = sealing.open_sealed(found.link, sealed, LINK_CONTEXT)
    except (ValueError, sealing.SealError) as exc:
        raise ReceiptError("not a Relais receipt link") from exc
    if len(plain) != 16:
        raise ReceiptError("not a Relais receipt link")
    return uuid.UUID(bytes=plain)


def form_token(found: Keys, link: str) -> str:
    """The person's forms' CSRF token, bound to their link (there is no session)."""
    digest = hmac.new(found.code, b"form|" + link.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def form_token_matches(found: Keys, link: str, sent: str) -> bool:
    return hmac.compare_digest(form_token(found, link), sent)
