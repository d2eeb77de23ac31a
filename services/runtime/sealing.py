"""Sealing secrets at rest (AES-256-GCM) under the master key, and the master key itself:
`RELAIS_MASTER_KEY`, `RELAIS_MASTER_KEY_FILE`, `RELAIS_MASTER_KEY_COMMAND` (a KMS, a PKCS#11
token), or a key made once in the data directory. Every service that keeps a
secret in PostgreSQL (the intake vault's person keys, the auth service's token signing keys,
the consent trail's checkpoint keys) seals it with this, so a copy of the database alone
gives none of them away.

The master key can change while Relais serves (`Keyring`): what is sealed under it carries
the id of the key that sealed it; during a rotation the previous key
(`RELAIS_PREVIOUS_MASTER_KEY`, or its `_FILE` or `_COMMAND`) still opens what it sealed,
and `relais master-key rewrap` seals it all again under the new one, in batches. The keys of
codes, cards, links, the name index and the offline key pair (each derived by HKDF from the
master key the first time, `derived`) are kept sealed in `relais_keys.derived`, one row per
use, shared by every service: they do not change with the master key, so nobody's card or
receipt code stops working, and none of them gives the master key away."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import asyncpg
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from services.runtime.failures import CannotStart
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


class MasterKeyUnavailable(CannotStart):
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


def previous_key_source(settings: Settings) -> MasterKeySource | None:
    """During a rotation, the master key being replaced: RELAIS_PREVIOUS_MASTER_KEY, its _FILE
    or its _COMMAND (at most one); None otherwise."""
    if settings.previous_master_key:
        return FromEnvironment(settings.previous_master_key)
    if settings.previous_master_key_file:
        return FromFile(settings.previous_master_key_file)
    if settings.previous_master_key_command:
        return FromCommand(settings.previous_master_key_command)
    return None


_loaded: dict[MasterKeySource, bytes] = {}


def _had(source: MasterKeySource) -> bytes:
    if source not in _loaded:
        _loaded[source] = source.load()
    return _loaded[source]


def master_key(settings: Settings) -> bytes:
    """The master key, had once per process from its source (a KMS is asked once)."""
    return _had(master_key_source(settings))


def previous_master_key(settings: Settings) -> bytes | None:
    source = previous_key_source(settings)
    return None if source is None else _had(source)


# --- the keyring: rotation of the master key -------------------------------------------------

MARK = b"RK"
"""What sealed data under a `Keyring` starts with, followed by the sealing key's id (6
bytes). Data sealed before keyrings has no mark: it starts with its random nonce, and is
opened by trying the keys."""
PREFIX = len(MARK) + 6
DERIVED_CONTEXT = "derived-key/{}"
DERIVED: dict[str, int] = {}
"""Every use of a derived key (its HKDF info) and its length, as the modules declare them."""


def derived(info: str, length: int = 32) -> str:
    """Declare a derived key (at import): the keyring has it from `relais_keys.derived`."""
    DERIVED[info] = length
    return info


def key_id(master: bytes) -> bytes:
    """Six bytes that name a master key without telling anything about it."""
    return hmac.new(master, b"relais/master-key-id", hashlib.sha256).digest()[:6]


def hkdf(secret: bytes, info: str, length: int = 32) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None,
                info=info.encode()).derive(secret)


@dataclass(frozen=True)
class SealedColumn:
    """A column a service seals under the master key (`ServiceSpec.sealed`, rewrap.py)."""

    table: str
    """In the service's schema."""
    key: str
    """The row's primary key (one column)."""
    column: str
    """bytea, sealed under the master key; NULL when there is nothing (erased, none yet)."""
    context: str
    """The sealing context, `{}` standing for the key's value (e.g. `person-key/{}`)."""
    key_type: str = "uuid"
    """The key's SQL type (the batch's update finds its rows by the primary key's index)."""

    def context_of(self, key: object) -> str:
        return self.context.format(key)


KEYS_SCHEMA = "relais_keys"
DERIVED_COLUMN = SealedColumn("derived", "info", "sealed", DERIVED_CONTEXT, "text")


@dataclass(frozen=True)
class Keyring:
    """The master key that seals (`current`), the one being replaced that still opens what it
    sealed (`previous`, during a rotation only), and the derived keys (`derived`: info ->
    key, as stored; None: derived from `current` on demand, for tests and tools)."""

    current: bytes
    previous: bytes | None = None
    derived: Mapping[str, bytes] | None = None

    @classmethod
    def single(cls, master: bytes) -> Keyring:
        return cls(master)

    @property
    def prefix(self) -> bytes:
        """What everything sealed under the current key starts with."""
        return MARK + key_id(self.current)

    @property
    def keys(self) -> tuple[bytes, ...]:
        return (self.current,) if self.previous is None else (self.current, self.previous)

    def seal(self, plaintext: bytes, context: str) -> bytes:
        return self.prefix + seal(self.current, plaintext, context)

    def open(self, sealed: bytes, context: str) -> bytes:
        """Whichever of the keys sealed it; SealError if none did."""
        if sealed[:len(MARK)] == MARK:
            named = {key_id(k): k for k in self.keys}.get(sealed[len(MARK):PREFIX])
            if named is not None:
                try:
                    return open_sealed(named, sealed[PREFIX:], context)
                except SealError:
                    pass  # an unmarked nonce that happens to start so: tried below
        for key in self.keys:
            try:
                return open_sealed(key, sealed, context)
            except SealError:
                continue
        raise SealError("cannot open sealed data")

    def current_for(self, sealed: bytes) -> bool:
        """Whether it is sealed under the current key already (nothing to re-seal)."""
        return sealed[:PREFIX] == self.prefix

    def derive(self, info: str, length: int = 32) -> bytes:
        """The key of one use (`info`, declared with `derived`)."""
        if self.derived is None:
            return hkdf(self.current, info, length)
        return self.derived[info]


async def keyring(db: asyncpg.Pool | asyncpg.Connection, settings: Settings,
                  sealed: Sequence[tuple[str, SealedColumn]] = ()) -> Keyring:
    """The keyring: the master keys from the settings, and the derived keys stored in
    `relais_keys.derived` (made the first time, from the previous master key during a
    rotation, else the current one; refused if that key does not open what the services
    already sealed, `sealed` as (schema, column)). MasterKeyUnavailable when the keys given
    do not open the stored ones."""
    current, previous = master_key(settings), previous_master_key(settings)
    if previous == current:
        raise MasterKeyUnavailable("RELAIS_PREVIOUS_MASTER_KEY is the master key itself: "
                                   "give the new key as RELAIS_MASTER_KEY")
    ring = Keyring(current, previous)
    stored = await _stored(db, ring)
    missing = sorted(set(DERIVED) - set(stored))
    if missing:
        source = previous or current
        await _fits(db, source, sealed)
        await db.executemany(
            f"INSERT INTO {KEYS_SCHEMA}.derived (info, sealed) VALUES ($1, $2)"
            " ON CONFLICT DO NOTHING",
            [(info, ring.seal(hkdf(source, info, DERIVED[info]), DERIVED_CONTEXT.format(info)))
             for info in missing])
        stored = await _stored(db, ring)
    return Keyring(current, previous, stored)


async def _stored(db: asyncpg.Pool | asyncpg.Connection, ring: Keyring) -> dict[str, bytes]:
    rows = await db.fetch(f"SELECT info, sealed FROM {KEYS_SCHEMA}.derived")
    try:
        return {r["info"]: ring.open(r["sealed"], DERIVED_CONTEXT.format(r["info"]))
                for r in rows}
    except SealError as exc:
        raise MasterKeyUnavailable(
            "the master key given does not open Relais's keys in this database (they were "
            "sealed under another one: give that one as RELAIS_MASTER_KEY, or as "
            "RELAIS_PREVIOUS_MASTER_KEY during a rotation)") from exc


async def _fits(db: asyncpg.Pool | asyncpg.Connection, key: bytes,
                sealed: Sequence[tuple[str, SealedColumn]]) -> None:
    """Refuse to derive keys from a master key that opens nothing the services sealed (a new
    key given without the previous one: codes and cards would silently change)."""
    ring = Keyring.single(key)
    for schema, column in sealed:
        try:
            row = await db.fetchrow(
                f'SELECT {column.key} AS key, {column.column} AS sealed FROM "{schema}".'
                f'"{column.table}" WHERE {column.column} IS NOT NULL LIMIT 1')
        except asyncpg.UndefinedTableError:
            continue
        if row is None:
            continue
        try:
            ring.open(row["sealed"], column.context_of(row["key"]))
        except SealError as exc:
            raise MasterKeyUnavailable(
                f"the master key given does not open what the {schema} service sealed: give "
                "that key as RELAIS_MASTER_KEY (or, during a rotation, as "
                "RELAIS_PREVIOUS_MASTER_KEY)") from exc
        return
