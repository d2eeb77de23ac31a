"""`relais migrate` (the Kubernetes chart's migrations Job): every service's migrations, in
the order `relais up` applies them, on the configured database, and nothing started. The
migrations themselves run against a real PostgreSQL in the integration tests; here the
database is a fake that records what was asked of it."""

from __future__ import annotations

import pytest

from services import cli
from services.runtime import db


def test_migrate_applies_every_services_migrations_and_starts_nothing(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    asked: list[tuple[str, str, str]] = []

    async def migrated(dsn: str, schema: str, package: str) -> None:
        asked.append((dsn, schema, package))

    def must_not_start(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("relais migrate started something")

    monkeypatch.setenv("RELAIS_DATABASE_URL", "postgresql://relais@db.example/relais")
    monkeypatch.setattr(db, "migrated", migrated)
    monkeypatch.setattr(cli, "EmbeddedPostgres", must_not_start)
    monkeypatch.setattr(cli, "create_app", must_not_start)
    # Not the process's logging bound to this test's captured stderr (closed after it: a later
    # test that logs would write to a closed file).
    monkeypatch.setattr(cli, "configure_logging", lambda *_args: None)
    with pytest.raises(SystemExit) as exited:
        cli.main(["migrate"])
    assert exited.value.code == 0
    specs = cli.service_specs(cli.SERVICE_NAMES)
    assert asked == [("postgresql://relais@db.example/relais", s.schema, s.package)
                     for s in specs]
    assert capsys.readouterr().out.splitlines() == [
        f"{s.schema}: migrations applied" for s in specs]
