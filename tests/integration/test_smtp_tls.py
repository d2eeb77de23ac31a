"""Email over STARTTLS with authentication, against a real aiosmtpd server that requires both
(its certificate made for the test and trusted through RELAIS_SMTP_CA_FILE)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from deploy.kafka.broker import free_port
from services.runtime.app import RUNTIME
from services.runtime.settings import Settings
from tests.conftest import Mailbox, wait_until
from tests.integration.test_referral import consent, intake, referral_of

USER, PASSWORD = "relais", "s3cret-smtp"


def certificate(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(
                ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = directory / "smtp.crt", directory / "smtp.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def authenticate(_server: Any, _session: Any, _envelope: Any, _mechanism: str,
                 data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
        USER.encode(), PASSWORD.encode())
    return AuthResult(success=ok)


@pytest.fixture
def tls_mailbox(tmp_path: Path) -> Iterator[tuple[Mailbox, Path]]:
    cert_file, key_file = certificate(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    mailbox = Mailbox(port=free_port())
    controller = Controller(mailbox, hostname="127.0.0.1", port=mailbox.port,
                            tls_context=context, require_starttls=True,
                            authenticator=authenticate, auth_required=True)
    controller.start()
    yield mailbox, cert_file
    controller.stop()


@pytest.fixture
def settings(database: str, tmp_path: Path, tls_mailbox: tuple[Mailbox, Path],
             request: pytest.FixtureRequest) -> Settings:
    mailbox, cert_file = tls_mailbox
    password = getattr(request, "param", PASSWORD)
    return Settings.model_validate({
        "data_dir": tmp_path, "database_url": database, "poll_interval": 0.5,
        "smtp_port": mailbox.port, "smtp_starttls": True, "smtp_username": USER,
        "smtp_password": password, "smtp_ca_file": cert_file})


async def test_email_goes_over_starttls_with_authentication(
    client: Any, tokens: Any, tls_mailbox: tuple[Mailbox, Path]
) -> None:
    mailbox, _ = tls_mailbox
    met = await intake(client, tokens)
    await consent(client, tokens, met["person_id"], ["mission-locale"])
    await referral_of(client, tokens, met["id"], "requested")
    [message] = await mailbox.wait_for(1)
    assert "Nouvelle orientation" in message["Subject"]


@pytest.mark.parametrize("settings", ["wrong-password"], indirect=True)
async def test_a_refused_login_is_retried_not_lost(client: Any, tokens: Any,
                                                    tls_mailbox: tuple[Mailbox, Path]) -> None:
    met = await intake(client, tokens)
    await consent(client, tokens, met["person_id"], ["mission-locale"])
    pool = client.app[RUNTIME].pool

    async def failed_once() -> bool:
        row = await pool.fetchrow("SELECT status, attempts, last_error FROM"
                                  " notify.notifications WHERE channel = 'email'")
        return row is not None and row["attempts"] >= 1

    await wait_until(failed_once, 30, "a refused login recorded")
    row = await pool.fetchrow("SELECT status, last_error FROM notify.notifications"
                              " WHERE channel = 'email'")
    # aiosmtpd answers a bad login slowly: a refusal (535) or our 10 s timeout, both retried
    assert row["status"] == "pending" and row["last_error"]
    assert tls_mailbox[0].messages == []
