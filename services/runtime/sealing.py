"""Sealing secrets at rest (AES-256-GCM) under the master key, and the master key itself:
`RELAIS_MASTER_KEY`, or a key made once in the data directory. Every service that keeps a
secret in PostgreSQL (the intake vault's person keys, the auth service's token signing keys,
the consent trail's checkpoint keys) seals it with this, so a copy of the database alone
gives none of them away."""

from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from services.runtime.logging import get_logger
from services.runtime.settings import Settings

log = get_logger("relais.sealing")
NONCE = 12


class SealError(Exception):
    """Sealed data that cannot be opened: wrong key, altered, or erased."""


def new_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def seal(key: bytes, plaintext: bytes, context: str) -> bytes:
    """Nonce and ciphertext; `context` binds it to its owner and purpose (AES-GCM AAD)."""
    nonce = os.urandom(NONCE)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, context.encode())


def open_sealed(key: bytes, sealed: bytes, context: str) -> bytes:
    try:
        return AESGCM(key).decrypt(sealed[:NONCE], sealed[NONCE:], context.encode())
    except (InvalidTag, ValueError) as exc:
        raise SealError("cannot open sealed data") from exc


def load_master_key(encoded: str) -> bytes:
    key = base64.b64decode(encoded)
    if len(key) != 32:
        raise ValueError("the master key must be 32 bytes, base64-encoded")
    return key


def master_key(settings: Settings) -> bytes:
    """RELAIS_MASTER_KEY, or a key made once in the data directory (back it up: without it,
    nothing sealed can be read)."""
    if settings.master_key:
        return load_master_key(settings.master_key)
    path = settings.data_dir / "keys" / "master.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it meanwhile
            return load_master_key(path.read_text().strip())
        with os.fdopen(fd, "w") as file:
            file.write(base64.b64encode(new_key()).decode())
        log.warning("master_key_created", path=str(path),
                    advice="set RELAIS_MASTER_KEY in production and keep a copy safe")
    return load_master_key(path.read_text().strip())
