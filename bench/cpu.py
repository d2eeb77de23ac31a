"""CPU time spent by each party of a benchmark (issue #12): Relais's processes, PostgreSQL's
and the benchmark's own (the load it offers, the SMTP server it runs), read from /proc before
and after a round, so that a result says where the machine's cores went, not only how many
flows came out."""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass
from pathlib import Path

from bench.memory import children

TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str]:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return []
    return text[text.rindex(")") + 2:].split()  # after the command, which may hold spaces


def tree_seconds(root: int) -> float:
    """CPU seconds (user and system) of a process and of its live descendants, each with
    the children it has reaped (a PostgreSQL backend that ended, say)."""
    total, pending = 0, [root]
    while pending:
        pid = pending.pop()
        fields = _stat(pid)
        if fields:
            total += sum(int(x) for x in fields[11:15])  # utime, stime, cutime, cstime
            pending += children(pid)
    return total / TICK


def command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def parent_of(pid: int) -> int | None:
    fields = _stat(pid)
    return int(fields[1]) if fields else None


def postmaster_of(backend: int) -> int | None:
    """The local PostgreSQL server of a backend (`pg_backend_pid()`), or None when that pid
    is not a PostgreSQL process of this machine (a server elsewhere, or in a container:
    another pid space)."""
    parent = parent_of(backend) if command(backend) in ("postgres", "postmaster") else None
    return parent if parent and command(parent) in ("postgres", "postmaster") else None


def machine() -> tuple[float, float]:
    """Busy and total seconds of every core since boot (/proc/stat)."""
    values = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    return (sum(values) - idle) / TICK, sum(values) / TICK


@dataclass
class Sample:
    parties: dict[str, float]
    busy: float
    total: float


class Accounting:
    """CPU seconds per party between two `sample`s: `parties` maps a name to the root pid
    of its processes; the benchmark's own process is counted as `bench`, with the children
    it has waited for (a load generator run to its end between the samples)."""

    def __init__(self, parties: dict[str, int]) -> None:
        self.parties = parties

    def sample(self) -> Sample:
        own = resource.getrusage(resource.RUSAGE_SELF)
        waited = resource.getrusage(resource.RUSAGE_CHILDREN)
        busy, total = machine()
        return Sample({name: tree_seconds(pid) for name, pid in self.parties.items()}
                      | {"bench": own.ru_utime + own.ru_stime + waited.ru_utime
                         + waited.ru_stime}, busy, total)

    @staticmethod
    def per_item(before: Sample, after: Sample, items: float, unit: str = "flow") -> str:
        """e.g. 'CPU per flow: relais 9.1 ms, postgres 6.0 ms, bench 4.2 ms; the machine
        97% busy (2 cores)' (under 5 ms: 1.52 ms)."""
        if items <= 0:
            return f"CPU per {unit}: nothing done"
        ms = {name: (after.parties[name] - before.parties[name]) * 1000 / items
              for name in after.parties}
        spent = ", ".join(f"{name} {value:.{2 if value < 5 else 1}f} ms"  # (two digits
                          for name, value in ms.items())                 # for a request's)
        cores = os.cpu_count() or 1
        busy = (after.busy - before.busy) / max(after.total - before.total, 1e-9)
        return f"CPU per {unit}: {spent}; the machine {busy:.0%} busy ({cores} cores)"
