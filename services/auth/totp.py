"""The optional second factor of personal accounts: time-based one-time codes (TOTP, RFC 6238:
HMAC-SHA-1, 6 digits, 30-second steps, one step either side), as every authenticator app
computes them, the QR code that enrols a phone, and the secret sealed at rest. No I/O.

The algorithm is RFC 4226's few lines of `hmac` (checked against the RFCs' own test vectors in
tests/unit/test_totp.py) rather than a library: refusing a replayed code needs the time step a
code matched, which a library's `verify()` does not give, and the secret is kept as sealed
bytes, not as the base32 text libraries expect."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
from dataclasses import dataclass
from urllib.parse import quote, urlencode
from uuid import UUID

import segno

from services.runtime import sealing

STEP = 30
"""Seconds a code lasts."""
DIGITS = 6
WINDOW = 1
"""Steps accepted either side of now: a phone's clock a little off, a code typed as it
changed."""
SECRET_BYTES = 20
"""160 bits, RFC 4226's recommended length (the SHA-1 block it keys)."""
ISSUER = "Relais"


def new_secret() -> bytes:
    return secrets.token_bytes(SECRET_BYTES)


def hotp(secret: bytes, counter: int, digits: int = DIGITS) -> str:
    """RFC 4226, 5.3: HMAC-SHA-1 of the counter, dynamically truncated to `digits` digits."""
    mac = hmac.new(secret, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    value = struct.unpack(">I", mac[offset:offset + 4])[0] & 0x7FFF_FFFF
    return str(value % 10**digits).zfill(digits)


def time_step(moment: float) -> int:
    """RFC 6238's T: the number of whole steps since the Unix epoch."""
    return int(moment // STEP)


def clean(code: str) -> str | None:
    """The code as typed (spaces and a dash allowed, "123 456"), or None if it is not
    DIGITS ASCII digits."""
    digits = "".join(code.split()).replace("-", "")
    return digits if len(digits) == DIGITS and digits.isascii() and digits.isdigit() else None


@dataclass(frozen=True, slots=True)
class Check:
    """A code checked: `step` is the time step it matched (to record, so that it cannot serve
    again); `replayed` when it matched a step already used."""

    step: int | None
    replayed: bool = False

    @property
    def ok(self) -> bool:
        return self.step is not None


def check(secret: bytes, code: str, moment: float, last_step: int | None) -> Check:
    """Whether `code` is the one of a step within WINDOW of `moment` that comes after
    `last_step` (the step of the last code accepted): a code serves once."""
    typed = clean(code)
    if typed is None:
        return Check(None)
    now = time_step(moment)
    matched = [step for step in range(now - WINDOW, now + WINDOW + 1)
               if hmac.compare_digest(hotp(secret, step), typed)]
    fresh = [step for step in matched if last_step is None or step > last_step]
    if fresh:
        return Check(max(fresh))
    return Check(None, replayed=bool(matched))


def secret_text(secret: bytes) -> str:
    """The secret as an app asks for it when typed (base32, no padding), in groups of four."""
    text = base64.b32encode(secret).decode().rstrip("=")
    return " ".join(text[i:i + 4] for i in range(0, len(text), 4))


def provisioning_uri(secret: bytes, account: str) -> str:
    """The `otpauth://` URI of the QR code (Key Uri Format, as authenticator apps read it)."""
    label = quote(f"{ISSUER}:{account}", safe=":@")
    query = urlencode({"secret": base64.b32encode(secret).decode().rstrip("="),
                       "issuer": ISSUER, "algorithm": "SHA1", "digits": DIGITS,
                       "period": STEP}, quote_via=quote)
    return f"otpauth://totp/{label}?{query}"


def qr_code(uri: str) -> str:
    """The QR code of `uri` as an SVG `data:` URI, for an <img> (the pages' CSP allows
    `img-src data:`): black on white with the standard quiet zone, whatever the theme."""
    return segno.make(uri, error="m", micro=False).svg_data_uri(
        scale=5, border=4, dark="#000", light="#fff")


CONTEXT = "auth/totp/{}"


def _context(user_id: UUID) -> str:
    return CONTEXT.format(user_id)


def seal_secret(master: sealing.Keyring, user_id: UUID, secret: bytes) -> bytes:
    """Sealed under the master key, bound to its account (a sealed secret copied onto another
    account does not open)."""
    return master.seal(secret, _context(user_id))


def open_secret(master: sealing.Keyring, user_id: UUID, sealed: bytes) -> bytes:
    return master.open(sealed, _context(user_id))
