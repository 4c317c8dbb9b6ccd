"""Alembic migrations for the gateway's tables (see gateway.migrate)."""
