"""The local Kafka broker's helpers (no broker started here)."""

from __future__ import annotations

import base64
from unittest import mock

from deploy.kafka import broker


def test_cluster_ids_never_start_with_a_dash() -> None:
    dashed = mock.Mock(bytes=b"\xf8" + bytes(15))  # base64url: "-A..."
    plain = mock.Mock(bytes=bytes(16))
    assert base64.urlsafe_b64encode(dashed.bytes).decode().startswith("-")
    with mock.patch("deploy.kafka.broker.uuid.uuid4", side_effect=[dashed, dashed, plain]):
        assert broker.cluster_id() == "AAAAAAAAAAAAAAAAAAAAAA"


def test_cluster_ids_are_kafka_uuids() -> None:
    for _ in range(2000):
        value = broker.cluster_id()
        assert len(value) == 22 and not value.startswith("-")
        assert len(base64.urlsafe_b64decode(value + "==")) == 16
