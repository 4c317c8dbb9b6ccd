"""The counter's use cases (窗口结算): eligibility, pre-settle, settle, cancel, inpatient stays,
queries and reconciliation, as units of work over the settlement package's tables.

Each use case is a function ``unit(session, **inputs)`` that the gateway's Database runs in
one transaction. What a use case needs from outside settlement is passed in, never imported
(settlement.counter.ports): the card-status check (a callable: settlement never imports
issuance), the institution at the counter (kind and level, from the terminal directory), the
clock (``now``), the request nonce, and, for a use case that stores its answer under an
idempotency key, the door's renderer (settlement.keyed: each door replays its own bytes).

The route (local, or through the national hub) is decided before any of these runs; these are
the local use cases, and they refuse a person insured elsewhere rather than dispatch them.
The hub's are in settlement.crossprov.flows.

Module map::

    settlement.counter.ports       Counter, CardCheck, NonceClaim: what is passed in
    settlement.counter.visits      visit_at (who may settle which visit), new_id
    settlement.counter.holders     the holder read (one statement) and its judges
    settlement.counter.outcomes    Settled, Estimate, Eligibility, ...: what doors render
    settlement.counter.settle      eligibility, counter_read + estimate, settle, cancel
    settlement.counter.admissions  admit, fee_lines, discharge, stay_to_discharge
    settlement.counter.queries     get_settlement, list_settlements
    settlement.counter.reconcile   totals (3201), details (3202), mismatches
"""
