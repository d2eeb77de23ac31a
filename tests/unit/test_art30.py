"""The record of processing activities (services/consent/art30.py) follows the configuration:
controllers and their retention periods from the directory, processors from the settings."""

from __future__ import annotations

from datetime import UTC, datetime

from services import directory
from services.consent.art30 import build
from services.runtime.settings import Settings

NOW = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)


def test_the_register_names_controllers_periods_recipients_and_processors() -> None:
    demo = directory.load(None)
    settings = Settings.model_validate({
        "smtp_host": "smtp.mailjet.example", "smtp_port": 587, "retention_access_log_days": 200,
        "sms_url": "https://sms.example.fr/send", "database_url":
        "postgresql://relais:S3cr3tPw@db.hebergeur.example/relais"})
    register = build(demo, settings, NOW, environ={})
    assert {c.id for c in register.controllers} == {o.id for o in demo.organisations}
    assert all(c.retention_months == 24 for c in register.controllers)
    processors = {p.name: p.detail for p in register.processors}
    assert "db.hebergeur.example" in processors["Hébergement de la base de données (PostgreSQL)"]
    assert "S3cr3tPw" not in str(register), "no password from a database URL"
    assert processors["Envoi des courriels (SMTP)"].startswith("smtp.mailjet.example:587")
    assert processors["Envoi des SMS"].startswith("sms.example.fr")
    assert "Traces techniques (OpenTelemetry)" not in processors
    assert any(r.detail == "200 jours" for r in register.retention)
    recipients = {r.name for r in register.recipients}
    assert "Mission locale du Grand Amiénois" in recipients
    assert not any("aller vers" in r for r in recipients), "the outreach team sends, not receives"
    assert [d.name for d in register.data_categories][:2] == ["Identité", "Coordonnées"]


def test_a_longer_period_shows_with_its_legal_basis() -> None:
    demo = directory.load(None)
    plie = next(o for o in demo.organisations if o.kind == "plie")
    longer = demo.model_copy(update={"organisations": [
        o.model_copy(update={"retention_months": 60, "retention_basis": "FSE+"})
        if o.id == plie.id else o for o in demo.organisations]})
    register = build(longer, Settings(), NOW, environ={
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector.example:4318"})
    [kept] = [c for c in register.controllers if c.id == plie.id]
    assert (kept.retention_months, kept.retention_basis) == (60, "FSE+")
    assert any(p.name == "Traces techniques (OpenTelemetry)" for p in register.processors)
