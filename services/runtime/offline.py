"""What the outreach app records without a network, sealed on the device so that only Relais
can open it (pure crypto, no I/O).

The device never holds a key that opens its queue. Each entry is encrypted in the browser
(Web Crypto, `services/intake/static/hors-ligne.js`) to Relais's public key: an ephemeral
ECDH P-256 key pair per entry, the shared secret through HKDF-SHA-256 into an AES-256-GCM key,
the organisation and the entry's id as the associated data. The private key is derived from
the master key and never leaves the server; the public key, published in the offline page,
may sit beside the data: a lost tablet exposes nothing readable, even to whoever unlocks it.
The queue's metadata (when, how many, what failed and why) is kept in clear, and holds no
personal data.

When the network comes back, the page sends each entry as it is (`POST /terrain/envoi`, then
`POST /terrain/accord/{intake}/envoi` for the person's answer); the services open it here and
run the same units of work as the online pages and the API, under the entry's idempotency
keys: each entry is recorded once, however often it is sent."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from datetime import datetime, timedelta
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from multidict import MultiDict, MultiDictProxy
from pydantic import BaseModel, Field, ValidationError

from services.runtime import sealing
from services.runtime.problem import Problem

CONTEXT = sealing.derived("relais/offline-queue/v1", 48)
"""The HKDF label of the server's key pair, and of each entry's key."""
ORDER = int("FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551", 16)
"""The order of P-256's group."""


class Sealed(BaseModel):
    """An entry as the device keeps and sends it: only Relais can open it."""

    id: str = Field(pattern=r"^[0-9a-f-]{36}$", description="The entry's id (a UUID), also "
                    "its idempotency key.")
    kid: str = Field(max_length=40)
    epk: str = Field(max_length=200, description="The ephemeral public key, raw, base64url.")
    iv: str = Field(max_length=40)
    ct: str = Field(max_length=1_000_000)


class OpenError(Exception):
    """An entry that cannot be opened: another key, altered, or another organisation's."""


def unreadable() -> Problem:
    """What the device is told of an entry that cannot be opened, in French."""
    return Problem(422, "Fiche illisible", "Relais ne peut pas ouvrir cette fiche : elle a été "
                   "chiffrée pour un autre serveur ou une autre structure, ou abîmée.")


def _b64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def private_key(master: sealing.Keyring) -> ec.EllipticCurvePrivateKey:
    """The server's key pair, derived from the keyring's root (a rotation of the master key
    leaves it as it is: entries queued on a device still open)."""
    seed = master.derive(CONTEXT, 48)
    return ec.derive_private_key(int.from_bytes(seed, "big") % (ORDER - 1) + 1, ec.SECP256R1())


def public_jwk(master: sealing.Keyring) -> dict[str, str]:
    """The public key, as Web Crypto imports it (`importKey("jwk", ...)`), with its id."""
    numbers = private_key(master).public_key().public_numbers()
    x, y = numbers.x.to_bytes(32, "big"), numbers.y.to_bytes(32, "big")
    return {"kty": "EC", "crv": "P-256", "x": _b64url(x), "y": _b64url(y),
            "kid": hashlib.sha256(x + y).hexdigest()[:16]}


def associated(org: str, entry_id: str) -> bytes:
    return f"{CONTEXT}/{org}/{entry_id}".encode()


def open_entry(master: sealing.Keyring, org: str, sealed: Sealed) -> dict[str, Any]:
    """The entry's content (a JSON object), if it was sealed to this server's key for this
    organisation."""
    if sealed.kid != public_jwk(master)["kid"]:
        raise OpenError("sealed to another key")
    try:
        ephemeral = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(),
                                                                 _b64(sealed.epk))
        shared = private_key(master).exchange(ec.ECDH(), ephemeral)
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"",
                   info=CONTEXT.encode()).derive(shared)
        plain = AESGCM(key).decrypt(_b64(sealed.iv), _b64(sealed.ct),
                                    associated(org, sealed.id))
        content = json.loads(plain)
    except (InvalidTag, ValueError, TypeError) as exc:
        raise OpenError("cannot open this entry") from exc
    if not isinstance(content, dict):
        raise OpenError("not an entry")
    return content


def seal_entry(public: dict[str, str], org: str, entry_id: str,
               content: dict[str, Any]) -> Sealed:
    """What the browser does, in Python (for the tests and for tools that queue entries)."""
    numbers = ec.EllipticCurvePublicNumbers(int.from_bytes(_b64(public["x"]), "big"),
                                            int.from_bytes(_b64(public["y"]), "big"),
                                            ec.SECP256R1())
    ephemeral = ec.generate_private_key(ec.SECP256R1())
    shared = ephemeral.exchange(ec.ECDH(), numbers.public_key())
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"",
               info=CONTEXT.encode()).derive(shared)
    iv = os.urandom(12)
    ct = AESGCM(key).encrypt(iv, json.dumps(content).encode(), associated(org, entry_id))
    point = ephemeral.public_key().public_bytes(serialization.Encoding.X962,
                                                serialization.PublicFormat.UncompressedPoint)
    return Sealed(id=entry_id, kid=public["kid"], epk=_b64url(point), iv=_b64url(iv),
                  ct=_b64url(ct))


def form_of(part: object) -> MultiDictProxy[str]:
    """An entry's part (the page's fields, each a value or a list of values) as the form the
    online page would have posted."""
    if not isinstance(part, dict):
        raise OpenError("no such part in this entry")
    pairs: list[tuple[str, str]] = []
    for name, value in part.items():
        values = value if isinstance(value, list) else [value]
        pairs += [(str(name), str(v)) for v in values if v is not None]
    return MultiDictProxy(MultiDict(pairs))


DEVICE_TIME = "X-Relais-Device-Time"
"""The header a device sends its own clock in, with each entry: what it recorded is moved by
the difference with the server's (a tablet whose clock is off records the right times)."""
DRIFT = timedelta(minutes=1)


def corrected(moment: str, device_now: str | None, server_now: datetime) -> str:
    """A time the device recorded (ISO 8601), moved by how far the device's clock is from
    the server's when it sends it (when more than a minute); as it is when the device did
    not say its time or the text is not a time (the model then says what is wrong)."""
    try:
        at = datetime.fromisoformat(moment)
        device = datetime.fromisoformat(device_now) if device_now else None
    except ValueError:
        return moment
    if device is None or at.tzinfo is None or device.tzinfo is None:
        return moment
    offset = server_now - device
    return (at + offset).isoformat() if abs(offset) > DRIFT else moment


def parse(payload: object) -> Sealed:
    try:
        return Sealed.model_validate(payload)
    except ValidationError as exc:
        raise OpenError("not a sealed entry") from exc
