"""Sealing secrets at rest (AES-256-GCM) under the master key, and the master key itself:
`RELAIS_MASTER_KEY`, `RELAIS_MASTER_KEY_FILE`, `RELAIS_MASTER_KEY_COMMAND` (a KMS, a PKCS#11
token), or a key made once in the data directory. Every service that keeps a
secret in PostgreSQL (the intake vault's person keys, the auth service's token signing keys,
the consent trail's checkpoint keys) seals it with this, so a copy of the database alone
gives none of them away."""

from __future__ import annotations

import base64
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

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


class MasterKeyUnavailable(Exception):
    """The master key could not be had from where the settings say it is."""


class MasterKeySource(Protocol):
    """Where the master key comes from: one small interface for an environment variable, a
    file (a mounted secret) or a command (a KMS, a PKCS#11 token, a vault)."""

    def load(self) -> bytes: ...


@dataclass(frozen=True)
class FromEnvironment:
    encoded: str

    def load(self) -> bytes:
        return load_master_key(self.encoded)


@dataclass(frozen=True)
class FromFile:
    path: Path
    create: bool = False
    """Make one the first time (the data directory's default, for a laptop)."""

    def load(self) -> bytes:
        if self.create and not self.path.exists():
            self._make()
        try:
            return load_master_key(self.path.read_text().strip())
        except (OSError, ValueError) as exc:
            raise MasterKeyUnavailable(f"the master key file {self.path}: {exc}") from exc

    def _make(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it meanwhile
            return
        with os.fdopen(fd, "w") as file:
            file.write(base64.b64encode(new_key()).decode())
        log.warning("master_key_created", path=str(self.path),
                    advice="set RELAIS_MASTER_KEY in production and keep a copy safe")


@dataclass(frozen=True)
class FromCommand:
    command: str
    """Run by the shell; prints the key, base64 (e.g. `aws kms decrypt ... --output text
    --query Plaintext`, `pkcs11-tool --read-object ...  | base64`, `vault kv get -field=key`)."""

    def load(self) -> bytes:
        try:
            done = subprocess.run(self.command, shell=True, capture_output=True, text=True,
                                  timeout=60, check=False)
        except subprocess.TimeoutExpired as exc:
            raise MasterKeyUnavailable("RELAIS_MASTER_KEY_COMMAND did not answer within "
                                       "60 s") from exc
        if done.returncode != 0:
            said = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
            raise MasterKeyUnavailable(f"RELAIS_MASTER_KEY_COMMAND failed: {said}")
        try:
            return load_master_key(done.stdout.strip())
        except ValueError as exc:
            raise MasterKeyUnavailable(f"RELAIS_MASTER_KEY_COMMAND printed no key: {exc}") \
                from exc


def master_key_source(settings: Settings) -> MasterKeySource:
    """RELAIS_MASTER_KEY, RELAIS_MASTER_KEY_FILE or RELAIS_MASTER_KEY_COMMAND (at most one),
    else a key made once in the data directory (back it up: without it, nothing sealed can be
    read)."""
    if settings.master_key:
        return FromEnvironment(settings.master_key)
    if settings.master_key_file:
        return FromFile(settings.master_key_file)
    if settings.master_key_command:
        return FromCommand(settings.master_key_command)
    return FromFile(settings.data_dir / "keys" / "master.key", create=True)


_loaded: dict[MasterKeySource, bytes] = {}


def master_key(settings: Settings) -> bytes:
    """The master key, had once per process from its source (a KMS is asked once)."""
    source = master_key_source(settings)
    if source not in _loaded:
        _loaded[source] = source.load()
    return _loaded[source]
