"""Shared plumbing of the Relais services: settings, app factory, database, outbox, consumers."""
