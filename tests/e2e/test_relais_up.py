"""`relais up` (what `make run` starts) on its embedded default: healthy fast, keeps what was
written across a restart, and Ctrl-C leaves no PostgreSQL behind."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from deploy.kafka.broker import free_port

RELAIS = [sys.executable, "-m", "services.cli"]


def _env(data_dir: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "RELAIS_DATABASE_URL")}
    return env | {"RELAIS_DATA_DIR": str(data_dir), "RELAIS_HTTP_PORT": str(port),
                  "RELAIS_LOG_LEVEL": "WARNING"}


def _start(env: dict[str, str], *args: str) -> tuple[subprocess.Popen[bytes], float]:
    started = time.monotonic()
    process = subprocess.Popen([*RELAIS, "up", *args], env=env, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{env['RELAIS_HTTP_PORT']}/readyz"
    while time.monotonic() - started < 60:
        assert process.poll() is None, process.stderr.read().decode()  # type: ignore[union-attr]
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return process, time.monotonic() - started
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise AssertionError("relais up was not ready within 60 s")


def _stop(process: subprocess.Popen[bytes]) -> str:
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err.decode()
    return err.decode()


def _token(env: dict[str, str], scopes: str | None = None) -> str:
    """What a partner does: create a client (while Relais runs), then ask for a token."""
    created = subprocess.run(
        [*RELAIS, "client", "create", "--org", "equipe-aller-vers", "--name", "tablette",
         *(["--scopes", scopes] if scopes else [])],
        env=env, check=True, capture_output=True, text=True,
    )
    client = json.loads(created.stdout)
    credentials = base64.b64encode(
        f"{client['client_id']}:{client['client_secret']}".encode()).decode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{env['RELAIS_HTTP_PORT']}/oauth/token", method="POST",
        data=b"grant_type=client_credentials",
        headers={"Authorization": f"Basic {credentials}",
                 "Content-Type": "application/x-www-form-urlencoded"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        token: str = json.loads(response.read())["access_token"]
        return token


def _request(env: dict[str, str], method: str, path: str, token: str,
             body: dict[str, object] | None = None,
             key: str = "first-contact") -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{env['RELAIS_HTTP_PORT']}{path}", method=method,
        data=json.dumps(body).encode() if body else None,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json",
                 "Idempotency-Key": key},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, json.loads(response.read())


def test_relais_up_keeps_its_data_across_a_restart_and_stops_cleanly(tmp_path: Path) -> None:
    env = _env(tmp_path / "data", free_port())
    process, ready_in = _start(env)
    try:
        token = _token(env)
        status, intake = _request(env, "POST", "/v1/intakes", token, {
            "site": "qpv-etouvie", "channel": "mobile_permanence",
            "contacted_at": "2026-11-20T10:00:00+01:00", "needs": ["employment"],
        })
        assert status == 201
        shown = subprocess.run([*RELAIS, "directory", "show"], env=env, check=True,
                               capture_output=True, text=True).stdout
        assert "id: mission-locale" in shown and "camion-etouvie-mardi" in shown
        edited = tmp_path / "directory.yaml"
        edited.write_text(shown.replace("Mission locale du Grand Amiénois",
                                        "Mission locale d'Amiens"))
        loaded = subprocess.run([*RELAIS, "directory", "load", str(edited)], env=env,
                                check=True, capture_output=True, text=True)
        assert "directory version 2 loaded" in loaded.stderr
        broken = tmp_path / "broken.yaml"
        broken.write_text(shown.replace("site: qpv-etouvie", "site: nowhere"))
        refused = subprocess.run([*RELAIS, "directory", "load", str(broken)], env=env,
                                 capture_output=True, text=True)
        assert refused.returncode == 2 and "unknown site nowhere" in refused.stderr
    finally:
        log = _stop(process)
    assert "Embedded PostgreSQL stopped." in log
    pgdata = tmp_path / "data" / "postgres"
    assert not (pgdata / "postmaster.pid").exists(), "PostgreSQL was left running"
    assert ready_in < 30, f"ready in {ready_in:.1f}s"

    process, _ = _start(env)
    try:
        status, again = _request(env, "GET", f"/v1/intakes/{intake['id']}", token)
        assert status == 200
        assert again["person_id"] == intake["person_id"]
    finally:
        _stop(process)


def _workers(parent: int) -> set[int]:
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    return {int(pid) for pid in children}


def _handed_off(env: dict[str, str], token: str, n: int) -> None:
    """A consented flow through whichever processes the kernel gives the connections to."""
    status, intake = _request(env, "POST", "/v1/intakes", token, {
        "site": "qpv-etouvie", "channel": "mobile_permanence",
        "contacted_at": "2026-11-20T10:00:00+01:00", "needs": ["employment"]}, key=f"i{n}")
    assert status == 201
    status, _ = _request(env, "POST", "/v1/consents", token, {
        "person_id": intake["person_id"], "purposes": ["referral_partner"],
        "recipients": ["mission-locale"], "categories": ["needs"], "notice_version": "2026-01",
        "method": "signed_screen", "captured_by": "conseillere-camion"}, key=f"c{n}")
    assert status == 201
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        _, found = _request(env, "GET", f"/v1/referrals?intake_id={intake['id']}", token)
        items = found["items"]
        assert isinstance(items, list)
        if [r for r in items if r["status"] == "requested"]:
            return
        time.sleep(0.2)
    raise AssertionError(f"intake {intake['id']} not handed off within 30 s")


def test_relais_up_on_two_processes_shares_the_port_and_keeps_them_running(
        tmp_path: Path) -> None:
    env = _env(tmp_path / "data", free_port())
    process, _ = _start(env, "--workers", "2")
    try:
        workers = _workers(process.pid)
        assert len(workers) == 2, workers
        token = _token(env)
        for n in range(6):
            _handed_off(env, token, n)
        killed = min(workers)
        os.kill(killed, signal.SIGKILL)  # a worker dies: it is started again
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (
                killed in _workers(process.pid) or len(_workers(process.pid)) < 2):
            time.sleep(0.2)
        assert len(_workers(process.pid) - {killed}) == 2
        for n in range(6, 12):
            _handed_off(env, token, n)
        survivors = _workers(process.pid)
    finally:
        log = _stop(process)
    assert "2 processes" in log and ("worker 0 exited" in log or "worker 1 exited" in log), log
    assert all(not Path(f"/proc/{pid}").exists() for pid in survivors), "a worker was left"
    assert not (tmp_path / "data" / "postgres" / "postmaster.pid").exists()


def test_relais_up_refuses_more_workers_than_postgresql_connections(tmp_path: Path) -> None:
    env = _env(tmp_path / "data", free_port())
    refused = subprocess.run([*RELAIS, "up", "--workers", "3"], env=env, capture_output=True,
                             text=True, timeout=120)
    assert refused.returncode == 1, refused.stderr
    assert "3 workers need about" in refused.stderr and "max_connections" in refused.stderr
    assert "Embedded PostgreSQL stopped." in refused.stderr
    assert not (tmp_path / "data" / "postgres" / "postmaster.pid").exists()
