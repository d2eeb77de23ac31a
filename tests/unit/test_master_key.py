"""Issue #14: the master key from an environment variable, a file (a mounted secret) or a
command (how a KMS or a PKCS#11 token gives it), behind one interface; one way at most; a
clear error when the source fails."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

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
