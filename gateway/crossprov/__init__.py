"""Cross-province settlement, the gateway's HTTP side: the hub client (timeouts, bounded
retries with the same msgid, a per-worker circuit breaker, three outcomes), the reversal
worker, the settle/cancel/eligibility branch for persons insured elsewhere, filings, ops
listings and clearing statements (docs/cross-province.md)."""
