from __future__ import annotations

import uuid

import pytest

from services.intake import vault
from services.runtime.sealing import Keyring


def test_sealed_data_opens_only_with_its_key_and_context() -> None:
    master, person = Keyring.single(vault.new_person_key()), uuid.uuid4()
    person_key = vault.new_person_key()
    wrapped = vault.wrap(master, person, person_key)
    assert vault.unwrap(master, person, wrapped) == person_key
    sealed = vault.seal(person_key, "Léa Martin".encode(), f"identity/{person}")
    assert b"Martin" not in sealed
    assert vault.open_sealed(person_key, sealed, f"identity/{person}") == "Léa Martin".encode()
    with pytest.raises(vault.VaultError):
        vault.open_sealed(person_key, sealed, f"identity/{uuid.uuid4()}")  # someone else's
    with pytest.raises(vault.VaultError):
        vault.unwrap(Keyring.single(vault.new_person_key()), person, wrapped)  # another key
    altered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(vault.VaultError):
        vault.open_sealed(person_key, altered, f"identity/{person}")


def test_the_master_key_must_be_32_bytes() -> None:
    with pytest.raises(ValueError):
        vault.load_master_key("c2hvcnQ=")
