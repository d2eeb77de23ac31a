"""The second factor's pure parts: RFC 4226 and RFC 6238 codes against the RFCs' own test
vectors, the window of one step either side, a code serving once, the enrolment URI and QR
code, the secret sealed to its account, and wrong codes judged like wrong passwords."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from services.auth import accounts, totp
from services.runtime import sealing

RFC_SECRET = b"12345678901234567890"  # RFC 4226 appendix D and RFC 6238 appendix B (SHA-1)


def test_hotp_matches_rfc_4226_appendix_d() -> None:
    expected = ["755224", "287082", "359152", "969429", "338314", "254676", "287922",
                "162583", "399871", "520489"]
    assert [totp.hotp(RFC_SECRET, counter) for counter in range(10)] == expected


@pytest.mark.parametrize(("moment", "code"), [
    (59, "94287082"), (1111111109, "07081804"), (1111111111, "14050471"),
    (1234567890, "89005924"), (2000000000, "69279037"), (20000000000, "65353130")])
def test_totp_matches_rfc_6238_appendix_b(moment: int, code: str) -> None:
    assert totp.hotp(RFC_SECRET, totp.time_step(moment), digits=8) == code
    assert totp.check(RFC_SECRET, code[-6:], moment, None).step == totp.time_step(moment)


def test_one_step_either_side_and_no_further() -> None:
    now = 1_700_000_000.0
    step = totp.time_step(now)
    for offset in (-1, 0, 1):
        assert totp.check(RFC_SECRET, totp.hotp(RFC_SECRET, step + offset), now,
                          None).step == step + offset
    for offset in (-2, 2):
        assert not totp.check(RFC_SECRET, totp.hotp(RFC_SECRET, step + offset), now, None).ok


def test_a_code_serves_once() -> None:
    now = 1_700_000_000.0
    step = totp.time_step(now)
    code = totp.hotp(RFC_SECRET, step)
    used = totp.check(RFC_SECRET, code, now, step)
    assert not used.ok and used.replayed
    assert not totp.check(RFC_SECRET, code, now + totp.STEP, step).ok  # still in the window
    earlier = totp.check(RFC_SECRET, totp.hotp(RFC_SECRET, step - 1), now, step)
    assert not earlier.ok and earlier.replayed  # a code older than the last one used
    later = totp.check(RFC_SECRET, totp.hotp(RFC_SECRET, step + 1), now, step)
    assert later.step == step + 1 and not later.replayed
    wrong = totp.check(RFC_SECRET, "000000" if code != "000000" else "111111", now, None)
    assert not wrong.ok and not wrong.replayed


@pytest.mark.parametrize("typed", ["", "12345", "1234567", "12345a", "١٢٣٤٥٦", "12 34 5",
                                   "+12345", "123456\x00"])
def test_what_is_not_six_digits_is_refused(typed: str) -> None:
    assert totp.clean(typed) is None
    assert not totp.check(RFC_SECRET, typed, 59, None).ok


def test_spaces_and_a_dash_are_forgiven() -> None:
    assert totp.clean(" 287 082 ") == totp.clean("287-082") == "287082"
    assert totp.check(RFC_SECRET, "287 082", 59, None).ok


def test_the_enrolment_uri_and_qr_code() -> None:
    secret = totp.new_secret()
    assert len(secret) == totp.SECRET_BYTES and secret != totp.new_secret()
    uri = totp.provisioning_uri(secret, "camille.martin+ml@example.org")
    parts = urlsplit(uri)
    assert (parts.scheme, parts.netloc) == ("otpauth", "totp")
    assert unquote(parts.path) == "/Relais:camille.martin+ml@example.org"
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert query == {"secret": base64.b32encode(secret).decode().rstrip("="),
                     "issuer": "Relais", "algorithm": "SHA1", "digits": "6", "period": "30"}
    text = totp.secret_text(secret)
    assert text.replace(" ", "") == query["secret"] and len(text.split()[0]) == 4
    assert totp.qr_code(uri).startswith("data:image/svg+xml")


def test_the_secret_is_sealed_to_its_account() -> None:
    master, user, other = sealing.Keyring.single(sealing.new_key()), uuid.uuid4(), uuid.uuid4()
    secret = totp.new_secret()
    sealed = totp.seal_secret(master, user, secret)
    assert secret not in sealed
    assert totp.open_secret(master, user, sealed) == secret
    with pytest.raises(sealing.SealError):
        totp.open_secret(master, other, sealed)  # copied onto another account
    with pytest.raises(sealing.SealError):
        totp.open_secret(sealing.Keyring.single(sealing.new_key()), user, sealed)


def test_wrong_codes_lock_the_account_like_wrong_passwords() -> None:
    now, failures, locked = datetime.now(UTC), 0, None
    for _ in range(accounts.MAX_FAILURES):
        attempt = accounts.judge_login(exists=True, disabled=False, password_ok=False,
                                       failures=failures, locked_until=locked, now=now)
        failures, locked = attempt.failures, attempt.locked_until
    assert locked is not None
    right = accounts.judge_login(exists=True, disabled=False, password_ok=True,
                                 failures=failures, locked_until=locked, now=now)
    assert not right.ok  # a right code while locked
