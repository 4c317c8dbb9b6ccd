"""Issuance HTTP API: card applications, employer batches, production, delivery, activation,
loss, replacement, hotline history and daily statistics (issue "Card issuance services").

The domain lives in :mod:`issuance` (no aiohttp there); this package only maps JSON to it.
Routes: :data:`gateway.issuance_api.routes.ISSUANCE_ROUTES`. Roles: :mod:`issuance.access`.
"""
