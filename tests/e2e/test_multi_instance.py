"""Issue #13, points 1 and 2, the short form: the kafka transport on a cluster of three real
Apache Kafka brokers (topics replicated on three, min.insync.replicas=2), two processes of
every service behind a round-robin balancer each, one PostgreSQL; consented flows at a fixed
rate while one instance of each service and one broker are killed (kill -9) and stay down
for a while, then every instance is stopped (SIGTERM) and started again, one by one (a rolling
upgrade). bench/faults.py counts what was lost, handed off without consent, sent twice or
left stuck (none allowed), and how long the flows begun at each kill waited (the fail-over:
partitions moving to the surviving instance, the workers' leases taken over)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.faults import SHORT

ROOT = Path(__file__).resolve().parents[2]
BOUND = 20.0
"""Seconds a flow begun at a kill may wait for its email: the consumer group's session
timeout (6 s) for the partitions to move, the lease poll (1 s), and the flow's own work."""


@pytest.mark.timeout(600)
def test_two_instances_of_every_service_on_three_brokers_lose_nothing_when_killed() -> None:
    result = subprocess.run([sys.executable, "-m", "bench.faults", "--short", "--transport",
                             "cluster"], cwd=ROOT, capture_output=True, text=True, timeout=540)
    report = result.stdout
    assert result.returncode == 0, report + result.stderr[-3000:]
    assert "[cluster] OK: nothing lost" in report, report
    lines = report.splitlines()
    counts = next(x for x in lines if x.startswith("[cluster] acknowledged: "))
    assert "lost: 0 intakes, 0 consents, 0 flows; unconsented hand-offs: 0" in counts
    for kind in SHORT["cluster"]:
        line = next(x for x in lines if x.startswith(f"[cluster] {kind:<20} x1 "))
        assert "begun after it: median" in line, line
        waited = re.search(r"the slowest flow begun within 1 s of it or while it lasted: +"
                           r"([\d.]+) s", line)
        assert waited is not None and float(waited.group(1)) < BOUND, line
