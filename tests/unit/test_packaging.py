"""What the services read at run time ships in the package (the Dockerfile installs it with
`pip install .`, not from the source tree): a screen, a script or a migration whose kind is
not in the package data would be missing in production only."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_file_the_services_read_is_package_data() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["*"]
    files = [p for p in (ROOT / "services").rglob("*")
             if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts]
    assert files, "the services have screens, static files and migrations"
    missing = sorted(str(p.relative_to(ROOT)) for p in files
                     if not any(fnmatch.fnmatch(p.name, pattern) for pattern in patterns))
    assert missing == []
