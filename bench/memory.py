"""Peak resident memory of server processes (and of the workers they start), sampled from
/proc while a benchmark loads them (issue #12, point 6)."""

from __future__ import annotations

import threading
from pathlib import Path


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MB (0 once it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    line = next((x for x in status.splitlines() if x.startswith("VmRSS:")), "VmRSS: 0 kB")
    return int(line.split()[1]) / 1024


def children(pid: int) -> list[int]:
    """A process's children, started from any of its threads."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


class Peaks:
    """Samples every `every` seconds, in a thread, until `stop`; `peaks` maps a label (the
    server's, `label/worker pid` for its workers) to the highest RSS seen."""

    def __init__(self, servers: dict[str, int], every: float = 0.5) -> None:
        self.servers = servers
        self.every = every
        self.peaks: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Peaks:
        self._thread.start()
        return self

    def stop(self) -> dict[str, float]:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        return self.peaks

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            for label, pid in self.servers.items():
                workers = children(pid)
                sampled = {label: rss_mb(pid)} | {f"{label}/{w}": rss_mb(w) for w in workers}
                for name, mb in sampled.items():
                    self.peaks[name] = max(self.peaks.get(name, 0.0), mb)

    def summary(self) -> str:
        return ", ".join(f"{name} {mb:.0f} MB" for name, mb in sorted(self.peaks.items()))
