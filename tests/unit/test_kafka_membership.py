"""A consumer killed on Kafka gives its partitions up sooner (issue #17, point 4): the session
timeout and heartbeats come from the settings, and RELAIS_INSTANCE_ID makes each consumer a
static member of its group (`group.instance.id`); the same options build every consumer."""

from __future__ import annotations

import pytest

from services.runtime.settings import InvalidSettings, Settings, load
from services.runtime.transport import make_transport
from services.runtime.transport.kafka import KafkaConsumer, Membership, group_options

NAMES = ("RELAIS_KAFKA_SESSION_TIMEOUT_MS", "RELAIS_KAFKA_HEARTBEAT_INTERVAL_MS",
         "RELAIS_INSTANCE_ID", "RELAIS_TRANSPORT", "RELAIS_KAFKA_BOOTSTRAP_SERVERS",
         "KAFKA_BOOTSTRAP_SERVERS", "RELAIS_KAFKA_NAMESPACE")


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in NAMES:
        monkeypatch.delenv(name, raising=False)


def test_the_defaults_are_the_lowest_session_a_broker_accepts() -> None:
    settings = load()
    assert settings.kafka_session_timeout_ms == 6000
    assert settings.kafka_heartbeat_interval_ms == 1500
    assert settings.instance_id is None


@pytest.mark.parametrize("env,said", [
    ({"RELAIS_KAFKA_HEARTBEAT_INTERVAL_MS": "2000"},
     "RELAIS_KAFKA_HEARTBEAT_INTERVAL_MS: must be under a third of "
     "RELAIS_KAFKA_SESSION_TIMEOUT_MS (6000 ms)"),
    ({"RELAIS_KAFKA_SESSION_TIMEOUT_MS": "30000", "RELAIS_KAFKA_HEARTBEAT_INTERVAL_MS": "10000"},
     "RELAIS_KAFKA_HEARTBEAT_INTERVAL_MS: must be under a third"),
    ({"RELAIS_KAFKA_SESSION_TIMEOUT_MS": "0"}, "RELAIS_KAFKA_SESSION_TIMEOUT_MS: "),
    ({"RELAIS_INSTANCE_ID": "relais 0"}, "RELAIS_INSTANCE_ID: only letters, digits"),
])
def test_a_wrong_membership_is_one_line_naming_its_variable(
        monkeypatch: pytest.MonkeyPatch, env: dict[str, str], said: str) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(InvalidSettings) as refused:
        load()
    [line] = refused.value.lines
    assert line.startswith(said), line


def test_an_empty_instance_id_is_dynamic_membership(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAIS_INSTANCE_ID", "")
    assert load().instance_id is None
    monkeypatch.setenv("RELAIS_INSTANCE_ID", "relais-0")
    monkeypatch.setenv("RELAIS_KAFKA_SESSION_TIMEOUT_MS", "9000")
    monkeypatch.setenv("RELAIS_KAFKA_HEARTBEAT_INTERVAL_MS", "2999")
    settings = load()
    assert (settings.instance_id, settings.kafka_session_timeout_ms,
            settings.kafka_heartbeat_interval_ms) == ("relais-0", 9000, 2999)


def test_the_options_of_a_member() -> None:
    dynamic = group_options("ns.referral", Membership())
    assert dynamic["group_id"] == "ns.referral"
    assert dynamic["session_timeout_ms"] == 6000 and dynamic["heartbeat_interval_ms"] == 1500
    assert dynamic["group_instance_id"] is None
    assert dynamic["enable_auto_commit"] is False
    assert dynamic["isolation_level"] == "read_committed"
    # a member keeps 10 s to finish its batch when a rebalance revokes its partitions
    assert dynamic["rebalance_timeout_ms"] == 10_000
    static = group_options("ns.referral", Membership(45_000, 3000, "relais-0"))
    assert static["group_instance_id"] == "relais-0.ns.referral"
    assert static["rebalance_timeout_ms"] == 45_000


@pytest.mark.parametrize("instance", [None, "relais-1"])
async def test_the_transport_builds_its_consumers_from_the_settings(
        instance: str | None) -> None:
    settings = Settings.model_validate({
        "transport": "kafka", "kafka_bootstrap_servers": "127.0.0.1:9", "kafka_namespace": "ns.",
        "kafka_session_timeout_ms": 8000, "kafka_heartbeat_interval_ms": 2000,
        "instance_id": instance})
    consumer = make_transport(settings, "postgresql://unused").consumer("referral", ["t"])
    assert isinstance(consumer, KafkaConsumer)
    built = consumer._consumer  # what aiokafka was given (nothing is connected yet)
    assert built._group_id == "ns.referral"
    assert built._session_timeout_ms == 8000
    assert built._heartbeat_interval_ms == 2000
    assert built._rebalance_timeout_ms == 10_000
    assert built._group_instance_id == (f"{instance}.ns.referral" if instance else None)
    await built._client.close()
