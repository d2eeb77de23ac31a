"""The identity vault (pure crypto, no I/O): identity, contact details and notes are sealed
with AES-256-GCM under a key per person; that key is itself sealed under the master key.
Erasing a person deletes their wrapped key (crypto-shredding): every copy of their sealed
data, in backups or elsewhere, becomes unreadable. The sealing itself is the runtime's
(`services.runtime.sealing`), shared with the services that seal their signing keys."""

from __future__ import annotations

from uuid import UUID

from services.runtime.sealing import Keyring, SealError, load_master_key, new_key, open_sealed, seal

__all__ = ["VaultError", "load_master_key", "new_person_key", "open_sealed", "seal", "unwrap",
           "wrap"]

VaultError = SealError
"""Sealed data that cannot be opened: wrong key, altered, or erased."""


def new_person_key() -> bytes:
    return new_key()


CONTEXT = "person-key/{}"
"""A person's key is sealed under the master key bound to the person (`{}`: their id)."""


def wrap(master: Keyring, person_id: UUID, person_key: bytes) -> bytes:
    return master.seal(person_key, CONTEXT.format(person_id))


def unwrap(master: Keyring, person_id: UUID, wrapped: bytes) -> bytes:
    return master.open(wrapped, CONTEXT.format(person_id))
