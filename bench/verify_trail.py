"""How long `relais audit verify` takes on a large export.

    .venv/bin/python -m bench.verify_trail --entries 1000000

Writes a real export (entries made by the trail's own encoder, a signed checkpoint every
10,000 entries) to a temporary file, then times the offline verification over several runs
and reports the median. The baseline in the same run is reading and JSON-parsing the file,
which any verifier must do."""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from services.consent import merkle, trail


def write_export(path: Path, entries: int, every: int) -> None:
    key, kid = trail.new_key(), "bench"
    tree = merkle.Frontier()
    prev: bytes | None = None
    now = datetime.now(UTC)
    with path.open("w", encoding="utf-8") as out:
        out.write(trail.keys_line([trail.public_jwk(kid, key.public_key())]) + "\n")
        for seq in range(entries):
            entry = trail.encode_entry(seq, prev, now, "consent.granted", {
                "person_id": str(uuid.UUID(int=seq)), "org": "equipe-aller-vers",
                "purposes": ["referral_partner"], "recipients": ["mission-locale"],
                "categories": ["identity", "needs"], "notice_version": "2026-01"})
            prev = merkle.leaf_hash(entry)
            tree.append(prev)
            out.write(trail.entry_line(entry) + "\n")
            if tree.size % every == 0 or tree.size == entries:
                root, signed_at = tree.root(), now.isoformat()
                out.write(trail.checkpoint_line(tree.size, root, signed_at, kid,
                                                trail.sign_checkpoint(key, tree.size, root,
                                                                      signed_at, kid)) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--every", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    path = Path(tempfile.mkdtemp()) / "trail.jsonl"
    started = time.perf_counter()
    write_export(path, args.entries, args.every)
    print(f"export of {args.entries:,} entries ({path.stat().st_size / 1e6:.0f} MB) written in "
          f"{time.perf_counter() - started:.1f} s", flush=True)
    parse, check = [], []
    for run in range(args.runs):
        started = time.perf_counter()
        with path.open(encoding="utf-8") as lines:
            for line in lines:
                json.loads(line)
        parse.append(time.perf_counter() - started)
        started = time.perf_counter()
        with path.open(encoding="utf-8") as lines:
            report = trail.verify(lines)
        check.append(time.perf_counter() - started)
        assert report.ok, report.problem
        print(f"run {run + 1}: read+parse {parse[-1]:.1f} s, verify {check[-1]:.1f} s",
              flush=True)
    print(f"median: verify {statistics.median(check):.1f} s for {args.entries:,} entries "
          f"({report.checkpoints} checkpoints); read+parse alone "
          f"{statistics.median(parse):.1f} s; ratio "
          f"{statistics.median(check) / statistics.median(parse):.1f}")
    path.unlink()


if __name__ == "__main__":
    main()
