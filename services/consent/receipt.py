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
  trying them all. Failures are throttled per address and overall (`Throttle`).

Both are shown once, on the receipt; another receipt for the same consent makes another link
and code (the earlier ones still work: a printed receipt stays valid)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from services.runtime import sealing
from services.runtime.ratelimit import RateLimiter

LINK_CONTEXT = "relais-consent-receipt-link-v1"
CODE_CONTEXT = "relais-consent-receipt-code-v1"
ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"
"""30 signs, none that reads like another (no 0/O, 1/I/L, U/V)."""
CODE_LENGTH = 10
"""30^10: about 49 bits, against at most FAILURES_OVERALL guesses a minute."""
GROUP = 5
FAILURES_PER_ADDRESS = 5
"""Wrong codes (or altered links) a minute from one address before it must wait."""
FAILURES_OVERALL = 60
"""Wrong codes a minute from everywhere before everyone must wait (a guess from many
addresses)."""


class ReceiptError(Exception):
    """Not a link Relais made: altered, cut, or made with another key."""


@dataclass(frozen=True, slots=True)
class Keys:
    link: bytes
    code: bytes


def _derive(master: bytes, info: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=info.encode()).derive(master)


def keys(master: bytes) -> Keys:
    """The receipts' own keys, derived from the master key (so they change with it)."""
    return Keys(_derive(master, LINK_CONTEXT), _derive(master, CODE_CONTEXT))


def new_code() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))


def grouped(code: str) -> str:
    """"K7M2P 9XQ4R": in groups, to read out and copy."""
    return " ".join(code[i:i + GROUP] for i in range(0, len(code), GROUP))


def clean(typed: str) -> str | None:
    """The code as typed (spaces, dashes and small letters allowed), or None if it cannot be
    one."""
    code = "".join(ch for ch in typed.upper() if ch.isalnum())
    return code if len(code) == CODE_LENGTH and all(c in ALPHABET for c in code) else None


def code_hash(found: Keys, code: str) -> bytes:
    """What is kept of a code: its HMAC under the code key."""
    return hmac.new(found.code, b"code|" + code.encode(), hashlib.sha256).digest()


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


@dataclass(frozen=True, slots=True)
class Throttle:
    """Wrong codes and altered links: past FAILURES_PER_ADDRESS a minute from one address, or
    FAILURES_OVERALL a minute from all, the next codes are refused (429) without being
    checked, until the buckets refill. Per process, as the API's rate limit."""

    by_address: RateLimiter
    overall: RateLimiter

    @classmethod
    def per_minute(cls, per_address: int = FAILURES_PER_ADDRESS,
                   overall: int = FAILURES_OVERALL) -> Throttle:
        return cls(RateLimiter(per_address / 60, per_address), RateLimiter(overall / 60, overall))

    def wait(self, address: str) -> float:
        """The seconds before a code may be tried from this address (0: now)."""
        return max(self.by_address.wait_time(address), self.overall.wait_time("*"))

    def failed(self, address: str) -> None:
        self.by_address.wait_for(address)
        self.overall.wait_for("*")
