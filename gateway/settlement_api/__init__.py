"""The settlement API (issue "Local settlement"): eligibility, pre-settle, settle, cancel,
queries, inpatient admission → fee lines → discharge, and reconciliation (3201/3202).

Module map::

    gateway.settlement_api.models   request/response bodies and their bounds
    gateway.settlement_api.views    how the use cases' outcomes read on /v1 (and the renderers
                                    whose answers the keyed use cases store)
    gateway.settlement_api.calls    what every handler does around its use case: card session,
                                    counter, route, Idempotency-Key, the unit run once per key
    gateway.settlement_api.routes   SETTLEMENT_ROUTES and their thin handlers: parse, call a use
                                    case of settlement.counter or settlement.crossprov, render
    gateway.settlement_api.reconciliation  3201 / 3202 / mismatches routes
    gateway.settlement_api.demo     DEMO ONLY: insured persons for the demo cardholders

The contract is docs/CONTRACTS.md "Settlement API". This package imports nothing on its own:
gateway.demo imports the demo part from the serve supervisor, which must not import
prometheus_client (via the routes) before it has set PROMETHEUS_MULTIPROC_DIR.
"""
