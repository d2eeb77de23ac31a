"""Importing the national data·inclusion catalogue: rows checked with its published v1
schema, structures turned into organisations of the directory, then `relais directory load`
takes the result (checked as a whole)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from schemas.vocab import Need
from services import directory
from services.directory import data_inclusion

DATA = Path(__file__).resolve().parents[1] / "data" / "data_inclusion"


def load(name: str) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = json.loads((DATA / name).read_text())
    return rows


def test_structures_become_organisations_with_the_needs_their_services_serve() -> None:
    orgs, report = data_inclusion.convert(load("structures.json"), load("services.json"),
                                          {"80021", "80479"})
    by_id = {o.id: o for o in orgs}
    assert set(by_id) == {"di-dora-ml-amiens-nord", "di-emplois-de-linclusion-4217"}
    ml = by_id["di-dora-ml-amiens-nord"]
    assert ml.kind == "mission_locale" and ml.needs == [Need.employment, Need.training]
    assert ml.communes == ["80021", "80479"] and str(ml.email).startswith("antenne-nord@")
    assert by_id["di-emplois-de-linclusion-4217"].needs == [Need.mobility]
    assert report.imported == ["dora--ml-amiens-nord", "emplois-de-linclusion--4217"]
    reasons = "\n".join(report.skipped)
    assert "dora--svc-bad: thematiques" in reasons  # not in the catalogue's vocabulary
    assert "dora--invalide: nom" in reasons  # too short for the schema
    assert "dora--sans-courriel: no email" in reasons
    merged = data_inclusion.merge(directory.load(), orgs)
    assert len(merged.organisations) == len(directory.load().organisations) + 2
    directory.Directory.model_validate(merged.model_dump())  # still whole


def test_the_cli_writes_a_directory_that_loads(tmp_path: Path) -> None:
    out = tmp_path / "directory.yaml"
    run = subprocess.run(
        [sys.executable, "-m", "services.cli", "directory", "import-data-inclusion",
         str(DATA / "structures.json"), str(DATA / "services.json"), "--commune", "80021",
         "--out", str(out)], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    assert "2 structures imported, 3 rows skipped" in run.stderr
    loaded = directory.load(out)
    assert loaded.get("di-dora-ml-amiens-nord") is not None
    assert loaded.get("di-dora-lille-asso") is None  # another territory
