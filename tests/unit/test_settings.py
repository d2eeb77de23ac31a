"""Settings from the environment (issue #16, point 13): list settings comma-separated or as
JSON, and a wrong setting said in one line naming its variable, never its value."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from ipaddress import ip_network
from pathlib import Path

import pytest

from services.runtime.settings import InvalidSettings, load


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RELAIS_WEBHOOK_ALLOWED_NETWORKS", "RELAIS_TRUSTED_PROXIES",
                 "RELAIS_JWT_ALGORITHMS", "RELAIS_JWT_TYPES", "RELAIS_OIDC_ORGANISATIONS",
                 "RELAIS_HTTP_PORT", "DATABASE_URL", "RELAIS_DATABASE_URL",
                 "RELAIS_BUS_DEAD_LETTER_RETENTION_DAYS", "RELAIS_RETENTION_INBOX_DAYS"):
        monkeypatch.delenv(name, raising=False)


def test_lists_are_comma_separated_or_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAIS_WEBHOOK_ALLOWED_NETWORKS", " 127.0.0.0/8 , fd00::/8,")
    monkeypatch.setenv("RELAIS_TRUSTED_PROXIES", '["10.0.0.0/8"]')
    monkeypatch.setenv("RELAIS_JWT_ALGORITHMS", "Ed25519,ES256")
    monkeypatch.setenv("RELAIS_JWT_TYPES", "")
    monkeypatch.setenv("RELAIS_OIDC_ORGANISATIONS", '{"13002526500013": "mission-locale"}')
    settings = load()
    assert settings.webhook_allowed_networks == ["127.0.0.0/8", "fd00::/8"]
    assert settings.trusted_proxies == [ip_network("10.0.0.0/8")]
    assert settings.jwt_algorithms == ["Ed25519", "ES256"]
    assert settings.jwt_types == []
    assert settings.oidc_organisations == {"13002526500013": "mission-locale"}


def test_the_defaults_hold() -> None:
    settings = load()
    assert settings.webhook_allowed_networks == [] and settings.trusted_proxies == []
    assert settings.jwt_algorithms == ["EdDSA", "Ed25519"]


@pytest.mark.parametrize("name,value,said", [
    ("RELAIS_WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/8,le-camion",
     "RELAIS_WEBHOOK_ALLOWED_NETWORKS: 'le-camion' is not a network"),
    ("RELAIS_WEBHOOK_ALLOWED_NETWORKS", "127.0.0.1/8",
     "RELAIS_WEBHOOK_ALLOWED_NETWORKS: '127.0.0.1/8' is not a network"),
    ("RELAIS_TRUSTED_PROXIES", "10.0.0.0/8,proxy", "RELAIS_TRUSTED_PROXIES (item 2): "),
    ("RELAIS_JWT_ALGORITHMS", "[Ed25519", "RELAIS_JWT_ALGORITHMS: not a JSON list"),
    ("RELAIS_OIDC_ORGANISATIONS", "siret=ml", "RELAIS_OIDC_ORGANISATIONS: not a JSON object"),
    ("RELAIS_HTTP_PORT", "huit", "RELAIS_HTTP_PORT: Input should be a valid integer"),
    ("RELAIS_BUS_DEAD_LETTER_RETENTION_DAYS", "53",
     "RELAIS_RETENTION_INBOX_DAYS (60) must be more than an event can come again: "
     "RELAIS_BUS_RETENTION_DAYS and RELAIS_BUS_DEAD_LETTER_RETENTION_DAYS together (60 days)"),
])
def test_a_wrong_setting_is_one_line_naming_its_variable(
        monkeypatch: pytest.MonkeyPatch, name: str, value: str, said: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(InvalidSettings) as refused:
        load()
    [line] = refused.value.lines
    assert line.startswith(said), line
    assert "\n" not in line


def test_each_wrong_setting_has_its_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAIS_HTTP_PORT", "huit")
    monkeypatch.setenv("RELAIS_SSE_MAX_PER_CLIENT", "0")
    with pytest.raises(InvalidSettings) as refused:
        load()
    assert [line.split(":")[0] for line in refused.value.lines] == [
        "RELAIS_HTTP_PORT", "RELAIS_SSE_MAX_PER_CLIENT"]


def test_relais_settings_prints_no_secret(tmp_path: Path) -> None:
    """`relais settings` ends up in support tickets: the secrets and the database passwords
    are hidden, the rest is printed as it is."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAIS_")} | {
        "RELAIS_SMTP_PASSWORD": "smtp-secret-1", "RELAIS_OIDC_CLIENT_SECRET": "oidc-secret-2",
        "RELAIS_MASTER_KEY": "bWFzdGVyLWtleS1zZWNyZXQtMy0zMi1ieXRlcy0tLS0=",
        "RELAIS_SMS_TOKEN": "sms-secret-4",
        "RELAIS_DATABASE_URL": "postgresql://relais:db-secret-5@db.example.org:5432/relais",
        "RELAIS_DATA_DIR": str(tmp_path)}
    result = subprocess.run([str(Path(sys.executable).parent / "relais"), "settings"],
                            capture_output=True, text=True, env=env, check=True)
    for secret in ("smtp-secret-1", "oidc-secret-2", "bWFzdGVyLWtleS1zZWNyZXQt", "sms-secret-4",
                   "db-secret-5"):
        assert secret not in result.stdout, secret
    printed = json.loads(result.stdout)
    assert printed["smtp_password"] == printed["master_key"] == "**********"
    assert printed["database_url"] == \
        "postgresql://relais:**********@db.example.org:5432/relais"
    assert printed["smtp_host"] == "127.0.0.1"  # the rest as it is
