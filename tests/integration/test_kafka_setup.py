"""KafkaTransport.setup on a real broker: a topic the cluster refuses to make stops the
process at start with the cluster's reason. aiokafka returns a refusal inside its
CreateTopics response, not as an exception: it went unread, and a process started without
its topic (its consumers and relay failing later, `auto.create.topics.enable=false`)."""

from __future__ import annotations

import time
import uuid

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import InvalidReplicationFactorError

from services.runtime.transport.kafka import KafkaTransport


async def test_a_topic_the_cluster_cannot_make_stops_the_start(kafka_bootstrap: str) -> None:
    namespace = f"s{uuid.uuid4().hex[:10]}."
    began = time.monotonic()
    with pytest.raises(InvalidReplicationFactorError, match=f"topic {namespace}relais.x"):
        # two replicas asked of a cluster of one broker
        await KafkaTransport(kafka_bootstrap, replication=2, namespace=namespace).setup(
            ["relais.x"])
    assert time.monotonic() - began < 10, "refused at once, not tried again"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        assert f"{namespace}relais.x" not in await admin.list_topics()
    finally:
        await admin.close()
    await KafkaTransport(kafka_bootstrap, namespace=namespace).setup(["relais.x"])  # one: made
