"""bench/cpu.py reads who spent the CPU from /proc: a process's own time, its live children's
and the children it reaped."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from bench.cpu import Accounting, Sample, parent_of, postmaster_of, tree_seconds

SPIN = "import time\nend = time.process_time() + {0}\nwhile time.process_time() < end: pass"


def test_a_live_child_and_a_reaped_one_count_for_their_parent() -> None:
    me = os.getpid()
    assert parent_of(me) == os.getppid()
    before = tree_seconds(me)
    subprocess.run([sys.executable, "-c", SPIN.format(0.3)], check=True)  # reaped: cutime
    reaped = tree_seconds(me)
    assert reaped - before >= 0.25
    child = subprocess.Popen([sys.executable, "-c", SPIN.format(30)])
    try:
        spent = 0.0
        deadline = time.monotonic() + 20
        while spent < 0.2 and time.monotonic() < deadline:  # however loaded the machine
            time.sleep(0.05)
            spent = tree_seconds(me) - reaped
        assert spent >= 0.2, "the live child's time counted"
        assert tree_seconds(child.pid) <= spent + 0.05
    finally:
        child.kill()
        child.wait()


def test_only_a_local_postgresql_process_counts_as_the_server() -> None:
    """A backend pid from a server elsewhere (another pid space) may name any local process:
    this one, whose parent is not PostgreSQL's, is not taken for it."""
    assert postmaster_of(os.getpid()) is None
    assert postmaster_of(2**22 + 12345) is None  # no such process


def test_the_time_is_shared_among_what_was_done() -> None:
    before = Sample({"relais": 1.0, "postgres": 2.0, "bench": 0.5}, busy=10.0, total=20.0)
    after = Sample({"relais": 2.0, "postgres": 2.5, "bench": 0.75}, busy=13.0, total=24.0)
    line = Accounting.per_item(before, after, 100)
    assert line.startswith("CPU per flow: relais 10.0 ms, postgres 5.0 ms, bench 2.50 ms; "
                           "the machine 75% busy")
    assert Accounting.per_item(before, after, 0) == "CPU per flow: nothing done"
    assert Accounting.per_item(before, after, 800, "request").startswith(
        "CPU per request: relais 1.25 ms, postgres 0.62 ms, bench 0.31 ms; ")
