"""The gateway: the only package that speaks HTTP on the server side.

Module map (one domain concept each)::

    settings      the one settings object: defaults, TOML, GATEWAY_* env, flags
    app           create_app(settings): middlewares, router, cleanup_ctx resources
    routes        THE route table and its thin handlers
    routing       Route/Call types and the request pipeline (size, signature, body, nonce)
    openapi       OpenAPI 3.1 built from the same route table
    errors        error codes → one HTTP status and one clerk-facing message (problem+json)
    middleware    request id, access log, metrics; exceptions → problem responses
    terminals     terminal directory with a bounded TTL cache
    rate_limit    per-terminal token buckets
    db            sync SQLAlchemy engine + bounded thread pool, one hop per transaction
    store         the gateway's tables (institutions, terminals, request nonces)
    card_auth     card authentication: challenges, chain, registry, card sessions
    migrate       Alembic driven from code; the list of MetaData it manages
    housekeeping  nonce sweeper; the year-end roll-over of personal accounts on every worker
    year_end      `admin rollover --year Y [--check]`: the roll-over by hand
    metrics       Prometheus metrics (multiprocess-aware)
    logs          JSON / key=value log lines without personal data
    demo          DEMO ONLY world (institutions, terminals) for an embedded database
    serve         supervisor + N workers on one port (SO_REUSEPORT)
    cli           python -m gateway serve | db upgrade | db current | db revision

Nothing is re-exported here on purpose: importing ``gateway`` must not import
prometheus_client (see gateway.metrics), so import from the modules themselves.
"""
