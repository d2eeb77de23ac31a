"""The ports handed to servers that the tests and benches start (and start again after a kill
on the same port): never twice the same, and outside the kernel's ephemeral range, which
outgoing connections take their local ports from."""

from __future__ import annotations

import socket

from deploy.kafka.broker import _ephemeral_range, free_port


def test_free_ports_are_distinct_bindable_and_outside_the_ephemeral_range() -> None:
    low, high = _ephemeral_range()
    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)
    if low - 1024 >= 4000:  # room below the range (Linux's default: 32768-60999)
        assert all(1024 <= port < low for port in ports), (low, high, sorted(ports)[-3:])
    for port in ports[:20]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))
