"""Settlement (结算): who pays what for a visit — the pooling fund, the personal accounts, or
the patient in cash — and the append-only ledger that records it.

A pure core (policy data + engine, no I/O) and its store (SQLAlchemy). Imports neither
aiohttp nor ``gateway``; the single exception is ``settlement.hub``, the national hub
simulator, which runs in its own process and which nothing else here imports.

Module map::

    settlement.money        int fen, ratios in basis points, THE rounding rule (share_floor_fen)
    settlement.errors       SettlementError hierarchy with stable .code values
    settlement.policy       Policy (one TOML per policy year, strict), PolicyBook.for_date,
                            shipped_policies(); VisitType, HospitalLevel, BenefitCategory
    settlement.policies/    sh-employee-2019.toml (pre-reform), sh-employee-2023.toml (later)
    settlement.catalogue    Catalogue (甲/乙/丙 classes), load_catalogue("demo")
    settlement.catalogues/  demo.toml
    settlement.claim        ClaimLine, InsuredPerson, Visit, YearToDate, AccountBalances
    settlement.engine       settle(...) -> SettlementResult (the pure policy engine)
    settlement.result       SettlementResult (setlinfo field names, int fen), FundPayment
    settlement.store        tables on their own MetaData (persons, accounts, year totals,
                            settlements, idempotency keys, ledger)
    settlement.ledger       post_transaction (balanced, append-only), settlement_postings,
                            reversal_postings, account_balance_fen, unbalanced_transactions
    settlement.recording    record_settlement / cancel_settlement in the caller's session
    settlement.rollover     the year-end roll-over of personal accounts: roll_over_year (the
                            job, in batches), roll_over_due (inside a settle), spendable
    settlement.idempotency  begin_request / finish_request / release_request
    settlement.migrations   Alembic branch "settlement" (st0001)

Quick use::

    from settlement.policy import shipped_policies
    from settlement.catalogue import load_catalogue
    from settlement.engine import settle
    result = settle(lines=..., person=..., visit=..., policy=shipped_policies().for_date(day),
                    catalogue=load_catalogue(), year_to_date=..., balances=...)
"""
