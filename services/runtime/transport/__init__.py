"""The two transports behind one interface: `kafka` (aiokafka) and `postgres` (an event log in
PostgreSQL, the embedded default)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from services.runtime.failures import CannotStart
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
                              settings.kafka_replication, settings.kafka_namespace, membership,
                              kafka_security(settings))
    from services.runtime.transport.postgres import PostgresTransport

    return PostgresTransport(
        settings.bus_database_url or database_url, settings.bus_partitions, settings.poll_interval
    )


def kafka_security(settings: Settings) -> dict[str, Any]:
    """aiokafka's arguments for RELAIS_KAFKA_SECURITY_PROTOCOL and its companions (the SASL
    user and password, the CA); none for PLAINTEXT."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return {}
    options: dict[str, Any] = {"security_protocol": protocol}
    if protocol in ("SSL", "SASL_SSL"):
        from aiokafka.helpers import create_ssl_context

        options["ssl_context"] = create_ssl_context(
            cafile=str(settings.kafka_ca_file) if settings.kafka_ca_file else None)
    if protocol.startswith("SASL_"):
        password = settings.kafka_sasl_password or _read(settings.kafka_sasl_password_file)
        options |= {"sasl_mechanism": settings.kafka_sasl_mechanism,
                    "sasl_plain_username": settings.kafka_sasl_username,
                    "sasl_plain_password": password}
    return options


def _read(path: Path | None) -> str:
    try:
        return path.read_text().strip() if path else ""
    except OSError as exc:
        raise CannotStart(f"RELAIS_KAFKA_SASL_PASSWORD_FILE {path}: {exc.strerror}") from exc


__all__ = ["Consumer", "Producer", "ReadableTransport", "TopicPartition", "Transport",
           "make_transport"]
