"""Traces never carry a secret address: no span for a magic link's or an invitation's page."""

from __future__ import annotations

import pytest
from opentelemetry.instrumentation import aiohttp_server

from services.runtime.telemetry import configure_tracing, traces_statements


def test_the_pages_whose_address_is_a_secret_are_not_traced() -> None:
    configure_tracing()
    excluded = aiohttp_server._excluded_urls
    assert excluded is not None
    assert excluded.url_disabled("/lien/AbCdEf0123")
    assert excluded.url_disabled("/invitation/xyz")
    assert not excluded.url_disabled("/orientations/4c8e")
    assert not excluded.url_disabled("/v1/referrals")


def test_statements_are_traced_when_traces_leave_the_process(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    assert not traces_statements()
    assert traces_statements(True)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    assert traces_statements()
    assert not traces_statements(False)
