"""Relais over real HTTP on a fresh database (the integration tests' fixtures), read by
tools nobody on the project wrote."""

from tests.integration.conftest import client, settings, tokens

__all__ = ["client", "settings", "tokens"]
