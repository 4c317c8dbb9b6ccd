"""Alembic scripts for the issuance tables; gateway.migrate lists them as a source."""
