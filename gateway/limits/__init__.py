"""Limits every worker and every replica share (issue 14, item 4).

Module map::

    store    token buckets in the database (guard_buckets) or in Redis (redis_url): atomic spend
    guards   TerminalLimits (per-terminal rate: local answer, shared count, synced every
             limits_sync_s) and WrongTokenGuard (the ops token's lock-out); limits_context
    proxies  trusted_proxies: when X-Forwarded-For names the client

The trade-offs and the settings are in docs/operations.md, "Shared limits and proxies".
"""
