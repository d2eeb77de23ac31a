"""Short codes that people carry and counsellors type (no I/O): the receipt's withdrawal code
(services/consent/receipt.py) and the person's card (services/intake/card.py).

A code is CODE_LENGTH signs of an alphabet without the letters and digits that read alike,
shown in groups. Relais keeps only its keyed hash (HMAC-SHA-256 under a key derived from the
keyring's root, each kind of code with its own HKDF info): a copy of the database alone gives
no code away, not even by trying them all. Wrong codes are throttled per address and overall
(`Throttle`)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from services.runtime.ratelimit import Buckets, SharedLimiter
from services.runtime.sealing import Keyring

ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"
"""30 signs, none that reads like another (no 0/O, 1/I/L, U/V)."""
CODE_LENGTH = 10
"""30^10: about 49 bits, against at most FAILURES_OVERALL guesses a minute."""
GROUP = 5
FAILURES_PER_ADDRESS = 5
"""Wrong codes a minute from one address before it must wait."""
FAILURES_OVERALL = 60
"""Wrong codes a minute from everywhere before everyone must wait (a guess from many
addresses)."""


def derive(master: Keyring, info: str) -> bytes:
    """A key of its own for one use, derived from the keyring's root (which a rotation of the
    master key leaves as it is: the codes people hold keep working)."""
    return master.derive(info)


def new_code(length: int = CODE_LENGTH) -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


def grouped(code: str) -> str:
    """"K7M2P 9XQ4R": in groups, to read out and copy."""
    return " ".join(code[i:i + GROUP] for i in range(0, len(code), GROUP))


def clean(typed: str, length: int = CODE_LENGTH) -> str | None:
    """The code as typed (spaces, dashes and small letters allowed), or None if it cannot be
    one."""
    code = "".join(ch for ch in typed.upper() if ch.isalnum())
    return code if len(code) == length and all(c in ALPHABET for c in code) else None


def keyed_hash(key: bytes, kind: str, code: str) -> bytes:
    """What is kept of a code: its HMAC under its own key."""
    return hmac.new(key, f"{kind}|{code}".encode(), hashlib.sha256).digest()


@dataclass(frozen=True, slots=True)
class Throttle:
    """Wrong codes: past FAILURES_PER_ADDRESS a minute from one address, or FAILURES_OVERALL
    a minute from all, the next codes are refused (429) without being checked, until the
    buckets refill. Per deployment, as the API's rate limit (`family` names the codes)."""

    by_address: SharedLimiter
    overall: SharedLimiter

    @classmethod
    def per_minute(cls, family: str, buckets: Buckets, per_address: int = FAILURES_PER_ADDRESS,
                   overall: int = FAILURES_OVERALL) -> Throttle:
        return cls(SharedLimiter.per_minute(f"{family}:address", per_address, buckets),
                   SharedLimiter.per_minute(f"{family}:overall", overall, buckets))

    async def wait(self, address: str) -> float:
        """The seconds before a code may be tried from this address (0: now)."""
        return max(await self.by_address.wait(address), await self.overall.wait("*"))

    async def failed(self, address: str) -> None:
        await self.by_address.take(address)
        await self.overall.take("*")
