"""docker-compose.yml stays well-formed: validated by a real compose tool (no engine needed)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import yaml

from services.cli import SERVICE_NAMES, service_specs
from services.runtime.app import create_app
from services.runtime.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_compose_file_is_valid_and_complete() -> None:
    compose = shutil.which("docker-compose")
    assert compose, "docker-compose is missing: `make tools` installs it"
    result = subprocess.run([compose, "-f", str(ROOT / "docker-compose.yml"), "config"],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    services = config["services"]
    assert {"kafka", "postgres", "auth", "intake", "consent", "referral", "notify", "proxy",
            "otel-collector"} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:4.")
    for name in ("auth", "intake", "consent", "referral", "notify"):
        env = services[name]["environment"]
        assert env["RELAIS_TRANSPORT"] == "kafka"
        assert services[name]["command"][-1] == f"services.{name}"
    for mounted in ("deploy/nginx/relais.conf", "deploy/otel/collector.yaml"):
        assert (ROOT / mounted).is_file()


LOCATION = re.compile(r"location\s+(=\s+)?(\S+)\s*\{([^}]*)\}")


def proxied_to(conf: str, path: str) -> str | None:
    """Where nginx sends `path`: an exact location first, else the longest prefix (the
    configuration uses no regular expressions); the upstream's name, or the location's own
    answer ("return ...", "alias ...")."""
    exact: dict[str, str] = {}
    prefixes: dict[str, str] = {}
    for equals, location, body in LOCATION.findall(conf):
        (exact if equals else prefixes)[location] = body.strip()
    body = exact.get(path)
    if body is None:
        best = max((p for p in prefixes if path.startswith(p)), key=len, default=None)
        body = prefixes[best] if best is not None else None
    if body is None:
        return None
    upstream = re.search(r"proxy_pass http://(\w+);", body)
    return upstream.group(1) if upstream else body.split(";")[0]


def test_the_proxy_sends_every_route_to_the_service_that_owns_it() -> None:
    """In the compose deployment each service runs alone: every route it serves (API, pages,
    streams, static files) must reach it through nginx, and its calls to other services
    (/internal/) must not be reachable from outside."""
    conf = (ROOT / "deploy/nginx/relais.conf").read_text()
    settings = Settings.model_validate({"data_dir": "/tmp/unused", "database_url": "x"})
    for name in SERVICE_NAMES:
        app = create_app(settings, "postgresql://unused/x", service_specs([name]))
        for route in app.router.routes():
            path = re.sub(r"\{[^}]+\}", "x", route.resource.canonical) \
                if route.resource is not None else ""
            if path in ("/healthz", "/readyz", "/openapi.json", "/metrics"):
                continue  # each container's own; the proxy answers /healthz and the document
            if path.startswith("/internal/"):
                assert proxied_to(conf, path) == "return 404", path
                continue
            if path.startswith("/static/") and path != "/static/consent":
                path += "/"
            owner = proxied_to(conf, path if path != "/static/consent" else path + "/")
            assert owner == name or (path.startswith("/static/") and owner == "auth"), \
                (name, route.method, path, owner)
    assert proxied_to(conf, "/openapi.json") == "default_type application/json"
    assert proxied_to(conf, "/metrics") is None  # scraped from each container, never outside
    # a location with a proxy_set_header of its own would drop the server's (Host,
    # X-Forwarded-For: the throttles would see nginx's address for everyone)
    assert not [body for _, _, body in LOCATION.findall(conf) if "proxy_set_header" in body]


def test_the_image_makes_the_named_volumes_mount_points_for_its_user() -> None:
    """A named volume mounted where the image has no directory is created owned by root, and
    the service, which runs as `relais`, could not write there (its keys in /data/keys): the
    image makes each mount point and gives /data to its user (Docker copies that ownership
    into a new volume)."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    dockerfile = (ROOT / "Dockerfile").read_text()
    made = {path for args in re.findall(r"mkdir -p ([^&\n]+)", dockerfile)
            for path in args.split()}
    assert re.search(r"chown -R relais /data\b", dockerfile)
    assert re.search(r"^USER relais$", dockerfile, re.M)
    named = set(compose["volumes"])
    for name in ("auth", "intake", "consent", "referral", "notify"):
        for mount in compose["services"][name].get("volumes", []):
            volume, _, target = mount.partition(":")
            if volume in named and target.startswith("/data"):
                assert target in made, f"{name}: {target} is not made by the image"
