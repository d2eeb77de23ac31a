"""Issue #14: the master key from an environment variable, a file (a mounted secret) or a
command (how a KMS or a PKCS#11 token gives it), behind one interface; one way at most; a
clear error when the source fails."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from services.runtime import sealing
from services.runtime.settings import InvalidSettings, Settings, load

KEY = os.urandom(32)
ENCODED = base64.b64encode(KEY).decode()


def test_each_source_gives_the_same_key(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text(ENCODED + "\n")
    for settings in (Settings(master_key=ENCODED), Settings(master_key_file=secret),
                     Settings(master_key_command=f"cat {secret}"),
                     Settings(master_key_command=f"printf %s {ENCODED}")):
        assert sealing.master_key_source(settings).load() == KEY


def test_the_command_is_asked_once_per_process(tmp_path: Path) -> None:
    count = tmp_path / "asked"
    command = f"echo x >> {count}; printf %s {ENCODED}"
    settings = Settings(master_key_command=command)
    assert sealing.master_key(settings) == sealing.master_key(settings) == KEY
    assert count.read_text().count("x") == 1


def test_without_any_a_key_is_made_once_in_the_data_directory(tmp_path: Path) -> None:
    first = sealing.master_key_source(Settings(data_dir=tmp_path)).load()
    assert (tmp_path / "keys" / "master.key").stat().st_mode & 0o777 == 0o600
    assert sealing.master_key_source(Settings(data_dir=tmp_path)).load() == first


def test_a_failing_source_says_what_failed(tmp_path: Path) -> None:
    with pytest.raises(sealing.MasterKeyUnavailable, match="failed: no such token"):
        sealing.FromCommand("echo no such token >&2; exit 3").load()
    with pytest.raises(sealing.MasterKeyUnavailable, match="printed no key"):
        sealing.FromCommand("echo not-base64-of-32-bytes").load()
    with pytest.raises(sealing.MasterKeyUnavailable, match="master key file"):
        sealing.FromFile(tmp_path / "missing").load()


def test_two_ways_at_once_are_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RELAIS_MASTER_KEY", ENCODED)
    monkeypatch.setenv("RELAIS_MASTER_KEY_COMMAND", "printf x")
    with pytest.raises(InvalidSettings) as refused:
        load()
    assert refused.value.lines == ["give the master key one way, not 2: RELAIS_MASTER_KEY, "
                                   "RELAIS_MASTER_KEY_COMMAND"]
    assert ENCODED not in str(refused.value)


def test_two_previous_keys_at_once_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAIS_PREVIOUS_MASTER_KEY", ENCODED)
    monkeypatch.setenv("RELAIS_PREVIOUS_MASTER_KEY_FILE", "/run/secrets/old")
    with pytest.raises(InvalidSettings) as refused:
        load()
    assert refused.value.lines == ["give the previous master key one way, not 2: "
                                   "RELAIS_PREVIOUS_MASTER_KEY, RELAIS_PREVIOUS_MASTER_KEY_FILE"]


def test_a_keyring_opens_what_either_key_sealed_and_seals_under_the_current() -> None:
    old, new = sealing.new_key(), sealing.new_key()
    before = sealing.Keyring.single(old)
    legacy = sealing.seal(old, b"a person's key", "person-key/1")  # sealed before keyrings
    marked = before.seal(b"a person's key", "person-key/1")
    assert marked.startswith(sealing.MARK + sealing.key_id(old)) and before.current_for(marked)
    rotating = sealing.Keyring(new, old)
    for sealed in (legacy, marked):
        assert rotating.open(sealed, "person-key/1") == b"a person's key"
        assert not rotating.current_for(sealed)
        with pytest.raises(sealing.SealError):
            rotating.open(sealed, "person-key/2")  # bound to its owner
    resealed = rotating.seal(b"a person's key", "person-key/1")
    assert rotating.current_for(resealed)
    after = sealing.Keyring(new, None, {"codes": before.derive("codes")})
    assert after.open(resealed, "person-key/1") == b"a person's key"
    for sealed in (legacy, marked):
        with pytest.raises(sealing.SealError):
            after.open(sealed, "person-key/1")  # the old key gone, what only it sealed too
    with pytest.raises(sealing.SealError):
        before.open(resealed, "person-key/1")
    assert after.derive("codes") == before.derive("codes") != sealing.Keyring.single(
        new).derive("codes"), "the derived keys are kept as they were, not derived again"


def test_an_unmarked_nonce_that_looks_marked_still_opens() -> None:
    """Data sealed before keyrings starts with a random nonce: one that happens to start like
    the mark of a known key is still opened the old way."""
    key = sealing.new_key()
    nonce = sealing.MARK + sealing.key_id(key) + os.urandom(sealing.NONCE - sealing.PREFIX)
    legacy = nonce + AESGCM(key).encrypt(nonce, b"x", b"c")
    assert sealing.Keyring.single(key).open(legacy, "c") == b"x"
