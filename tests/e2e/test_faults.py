"""The short form of the fault harness (issue #17), on both transports: a real PostgreSQL
restarted under load, a real Kafka broker killed, Relais's processes killed (kill -9) and
stopped (SIGTERM), an SMTP server that goes away, then hangs; consented flows at a fixed rate
throughout. bench/faults.py counts, from the partner's answers, the SMTP sink and the
database, what was lost, handed off without consent, sent twice or left stuck, and exits
non-zero on any of it (the full run: `make faults`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.faults import SHORT

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(900)
def test_nothing_is_lost_sent_twice_or_stuck_under_a_handful_of_faults() -> None:
    result = subprocess.run([sys.executable, "-m", "bench.faults", "--short"], cwd=ROOT,
                            capture_output=True, text=True, timeout=840)
    report = result.stdout
    assert result.returncode == 0, report + result.stderr[-3000:]
    for transport in ("postgres", "kafka"):  # the cluster: test_multi_instance.py
        kinds = SHORT[transport]
        assert f"[{transport}] OK: nothing lost" in report, report
        lines = report.splitlines()
        for kind in kinds:  # every fault was injected, and flows came through after it
            line = next(x for x in lines if x.startswith(f"[{transport}] {kind:<20} x1 "))
            assert "begun after it: median" in line, line
        counts = next(x for x in lines if x.startswith(f"[{transport}] acknowledged: "))
        assert "lost: 0 intakes, 0 consents, 0 flows; unconsented hand-offs: 0" in counts
