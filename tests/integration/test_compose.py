"""docker-compose.yml stays well-formed: validated by a real compose tool (no engine needed)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_compose_file_is_valid_and_complete() -> None:
    compose = shutil.which("docker-compose")
    assert compose, "docker-compose is missing: `make tools` installs it"
    result = subprocess.run([compose, "-f", str(ROOT / "docker-compose.yml"), "config"],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    services = config["services"]
    assert {"kafka", "postgres", "intake", "consent", "referral", "notify", "proxy",
            "otel-collector"} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:4.")
    for name in ("intake", "consent", "referral", "notify"):
        env = services[name]["environment"]
        assert env["RELAIS_TRANSPORT"] == "kafka"
        assert services[name]["command"][-1] == f"services.{name}"
    for mounted in ("deploy/nginx/relais.conf", "deploy/otel/collector.yaml"):
        assert (ROOT / mounted).is_file()
