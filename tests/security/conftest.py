"""Security regression tests run against a real Relais (real PostgreSQL, real HTTP): the
integration fixtures, which a test module may override (e.g. its own `settings`)."""

from tests.integration.conftest import client, settings, tokens  # noqa: F401
