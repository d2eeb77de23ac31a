"""`make bench`: a short form of every benchmark of issue #12, one after the other (under ten
minutes on a 2-core machine), each printing its figures against its baseline measured in the
same invocation, and a report of them all in `bench/results/latest.md` with the machine.

    .venv/bin/python -m bench.run_all              # or: make bench
    .venv/bin/python -m bench.run_all --only intake,verify

The longer forms, for the README's tables, are the commands each section names."""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


@dataclass(frozen=True)
class Bench:
    name: str
    title: str
    args: tuple[str, ...]
    keep: tuple[str, ...]
    """The lines of its output that carry the figures (by their beginning); [] keeps all."""


BENCHES = (
    Bench("intake", "POST /v1/intakes against a bare aiohttp+asyncpg endpoint (point 3)",
          ("bench.intake_throughput", "--seconds", "5", "--rounds", "3"),
          ("POST", "round", "  baseline", "  relais", "median")),
    Bench("consents", "POST /v1/consents against a bare aiohttp+asyncpg endpoint (point 3)",
          ("bench.intake_throughput", "--endpoint", "consents", "--seconds", "5", "--rounds",
           "3"), ("POST", "round", "  baseline", "  relais", "median")),
    Bench("flows", "Complete consented flows, closed loop of 16, all-in-one (point 1)",
          ("bench.consented_flows", "--seconds", "10", "--rounds", "3"),
          ("complete", "round", "outbox", "stages", "median", "peak", "  not emailed")),
    Bench("latency", "Consent to email at fixed offered rates, open loop (point 2)",
          ("bench.consented_flows", "--seconds", "8", "--rounds", "1",
           "--rates", "10,25,50,100,150"),
          ("complete", "|", "  not emailed")),
    Bench("retention", "The daily retention pass's read against grouping every contact (point 4)",
          ("bench.retention_pass", "--intakes", "200000", "--rounds", "3"),
          ("retention pass", "  at ")),
    Bench("verify", "`relais audit verify` against reading and parsing the export (point 5)",
          ("bench.verify_trail", "--entries", "200000", "--runs", "3"), ()),
    Bench("proofs", "Inclusion and consistency proofs on a large trail (point 5)",
          ("bench.trail_proofs", "--entries", "1000000", "--rounds", "3"),
          ("trail of", "  a person", "  two tree", "  baseline")),
)


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "?")
    memory = next((int(line.split()[1]) // 1024 // 1024 for line in
                   Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal")), 0)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, check=False).stdout.strip() or "?"
    return (f"{os.cpu_count()} cores ({cpu}), {memory} GiB, {platform.system()} "
            f"{platform.release()}, Python {platform.python_version()}, commit {commit}")


def run(bench: Bench) -> tuple[list[str], float, int]:
    """Its output, printed as it comes, and how long it took."""
    started = time.monotonic()
    print(f"\n== {bench.title}\n$ .venv/bin/python -m {' '.join(bench.args)}", flush=True)
    process = subprocess.Popen([sys.executable, "-m", *bench.args], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        print(line, end="", flush=True)
        lines.append(line.rstrip("\n"))
    code = process.wait()
    return lines, time.monotonic() - started, code


def report(results: list[tuple[Bench, list[str], float, int]], took: float) -> str:
    out = [f"# Benchmarks, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC", "",
           f"Machine: {machine()}. `make bench` took {took / 60:.1f} min. Each figure is "
           "compared with its baseline measured in the same invocation (these machines are "
           "shared: compare ratios, not absolutes).", ""]
    for bench, lines, seconds, code in results:
        kept = [line for line in lines if not bench.keep or line.startswith(bench.keep)]
        out += [f"## {bench.title}", "",
                f"`.venv/bin/python -m {' '.join(bench.args)}` ({seconds:.0f} s"
                + (f", exit {code}" if code else "") + ")", "", "```", *kept, "```", ""]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", default="", help="comma-separated: "
                        + ", ".join(b.name for b in BENCHES))
    parser.add_argument("--out", type=Path, default=RESULTS / "latest.md")
    args = parser.parse_args()
    wanted = set(args.only.split(",")) if args.only else {b.name for b in BENCHES}
    started = time.monotonic()
    results = [(b, *run(b)) for b in BENCHES if b.name in wanted]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report(results, time.monotonic() - started) + "\n", encoding="utf-8")
    print(f"\nwritten: {args.out}")
    if any(code for *_, code in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
