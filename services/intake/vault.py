"""The identity vault (pure crypto, no I/O): identity, contact details and notes are sealed
with AES-256-GCM under a key per person; that key is itself sealed under the master key.
Erasing a person deletes their wrapped key (crypto-shredding): every copy of their sealed
data, in backups or elsewhere, becomes unreadable."""

from __future__ import annotations

import base64
import os
from uuid import UUID

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE = 12


class VaultError(Exception):
    """Sealed data that cannot be opened: wrong key, altered, or erased."""


def new_person_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def seal(key: bytes, plaintext: bytes, context: str) -> bytes:
    """Nonce and ciphertext; `context` binds it to its owner and purpose (AES-GCM AAD)."""
    nonce = os.urandom(NONCE)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, context.encode())


def open_sealed(key: bytes, sealed: bytes, context: str) -> bytes:
    try:
        return AESGCM(key).decrypt(sealed[:NONCE], sealed[NONCE:], context.encode())
    except (InvalidTag, ValueError) as exc:
        raise VaultError("cannot open sealed data") from exc


def wrap(master: bytes, person_id: UUID, person_key: bytes) -> bytes:
    return seal(master, person_key, f"person-key/{person_id}")


def unwrap(master: bytes, person_id: UUID, wrapped: bytes) -> bytes:
    return open_sealed(master, wrapped, f"person-key/{person_id}")


def load_master_key(encoded: str) -> bytes:
    key = base64.b64decode(encoded)
    if len(key) != 32:
        raise ValueError("the master key must be 32 bytes, base64-encoded")
    return key
