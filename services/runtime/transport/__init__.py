"""The two transports behind one interface: `kafka` (aiokafka) and `postgres` (an event log in
PostgreSQL, the embedded default)."""

from __future__ import annotations

from services.runtime.settings import Settings
from services.runtime.transport.base import (
    Consumer,
    Producer,
    ReadableTransport,
    TopicPartition,
    Transport,
)


def make_transport(settings: Settings, database_url: str) -> ReadableTransport:
    if settings.transport == "kafka":
        from services.runtime.transport.kafka import KafkaTransport, Membership

        if not settings.kafka_bootstrap_servers:
            raise ValueError("the kafka transport needs RELAIS_KAFKA_BOOTSTRAP_SERVERS")
        membership = Membership(settings.kafka_session_timeout_ms,
                                settings.kafka_heartbeat_interval_ms, settings.instance_id)
        return KafkaTransport(settings.kafka_bootstrap_servers, settings.kafka_partitions,
                              settings.kafka_replication, settings.kafka_namespace, membership)
    from services.runtime.transport.postgres import PostgresTransport

    return PostgresTransport(
        settings.bus_database_url or database_url, settings.bus_partitions, settings.poll_interval
    )


__all__ = ["Consumer", "Producer", "ReadableTransport", "TopicPartition", "Transport",
           "make_transport"]
