"""Issuance HTTP API: card applications, employer batches, production, delivery, activation,
loss, replacement, hotline history and daily statistics (issue "Card issuance services").

The domain lives in :mod:`issuance` (no aiohttp there); this package only maps JSON to it.
Routes: :data:`gateway.issuance_api.routes.ISSUANCE_ROUTES` (handlers), models in
:mod:`gateway.issuance_api.models`, per-call context in :mod:`gateway.issuance_api.calls`.
Roles: :mod:`issuance.access`.
"""
