"""`relais up --workers N`: what each worker process is told."""

from __future__ import annotations

from services.runtime.workers import MIN_POOL, PER_PROCESS, pool_per_worker, worker_env


def test_each_worker_gets_the_database_the_port_and_an_instance_of_its_own() -> None:
    base = {"PATH": "/usr/bin", "RELAIS_WORKERS": "2", "RELAIS_DATABASE_URL": "postgres://old"}
    env = worker_env(base, 1, "postgres://found", 8080, "relais-7c9", {
        "RELAIS_TRANSPORT": "kafka"})
    assert env["RELAIS_DATABASE_URL"] == "postgres://found"  # the one started or given
    assert env["RELAIS_HTTP_PORT"] == "8080" and env["RELAIS_WORKERS"] == "1"
    assert env["RELAIS_INSTANCE_ID"] == "relais-7c9-1" and env["RELAIS_TRANSPORT"] == "kafka"
    assert env["PATH"] == "/usr/bin"
    unnamed = worker_env(base, 0, "postgres://found", 8080, None, {})
    assert "RELAIS_INSTANCE_ID" not in unnamed  # dynamic members, as a single process


def test_the_pools_share_what_the_server_allows() -> None:
    # the embedded server: 100 connections, 3 reserved; nothing else connected
    assert pool_per_worker(2, 97, 0) == 97 // 2 - PER_PROCESS
    assert pool_per_worker(2, 97, 0) >= MIN_POOL
    assert pool_per_worker(3, 97, 0) < MIN_POOL  # refused at start, with the reason
    assert pool_per_worker(4, 497, 20) >= MIN_POOL
