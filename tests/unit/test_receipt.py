"""The receipt's link and code (services/consent/receipt.py): codes without signs that read
alike, typed loosely; links that open only as made, under their own key; the throttle."""

from __future__ import annotations

import uuid

import pytest

from services.consent import receipt
from services.runtime.ratelimit import Buckets
from services.runtime.sealing import Keyring

MASTER = Keyring.single(bytes(range(32)))


def test_a_code_reads_and_types_easily() -> None:
    code = receipt.new_code()
    assert len(code) == receipt.CODE_LENGTH and set(code) <= set(receipt.ALPHABET)
    assert not set("01OILU") & set(receipt.ALPHABET)
    shown = receipt.grouped(code)
    assert shown == f"{code[:5]} {code[5:]}"
    assert receipt.clean(shown.lower().replace(" ", " - ")) == code
    assert receipt.clean("O" + code[1:]) is None and receipt.clean(code[:-1]) is None


def test_only_a_keyed_hash_of_a_code_is_kept() -> None:
    keys, other = receipt.keys(MASTER), receipt.keys(Keyring.single(bytes(32)))
    assert keys.link != keys.code
    digest = receipt.code_hash(keys, "K7M2P9XQ4R")
    assert digest == receipt.code_hash(keys, "K7M2P9XQ4R") != receipt.code_hash(
        other, "K7M2P9XQ4R")
    assert b"K7M2P9XQ4R" not in digest


def test_a_link_opens_only_as_made() -> None:
    keys, receipt_id = receipt.keys(MASTER), uuid.uuid4()
    token = receipt.token(keys, receipt_id)
    assert receipt.open_token(keys, token) == receipt_id
    assert receipt_id.hex not in token and token != receipt.token(keys, receipt_id)
    flipped = token[:10] + ("A" if token[10] != "A" else "Q") + token[11:]
    for altered in (flipped, token[:20], "x",
                    receipt.token(receipt.keys(Keyring.single(bytes(32))), receipt_id)):
        with pytest.raises(receipt.ReceiptError):
            receipt.open_token(keys, altered)
    assert receipt.form_token_matches(keys, token, receipt.form_token(keys, token))
    assert not receipt.form_token_matches(keys, token, receipt.form_token(keys, token + "x"))


async def test_failures_are_throttled_per_address_and_overall() -> None:
    """Counted in memory here (no database: as an instance does while it does not answer);
    shared by instances through PostgreSQL: tests/integration/test_shared_limits.py."""
    throttle = receipt.Throttle.per_minute("receipt-codes", Buckets(), per_address=2, overall=3)
    for _ in range(2):
        assert await throttle.wait("192.0.2.1") == 0
        await throttle.failed("192.0.2.1")
    assert await throttle.wait("192.0.2.1") > 0 and await throttle.wait("192.0.2.2") == 0
    await throttle.failed("192.0.2.2")
    assert await throttle.wait("192.0.2.3") > 0  # everyone waits once too many failed overall
