"""Alembic scripts for the settlement tables; gateway.migrate lists them as a source."""
