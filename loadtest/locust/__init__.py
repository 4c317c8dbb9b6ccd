"""The Locust suite of the gateway: ``locust -f loadtest/locust`` (docs/load-testing.md).

Locust imports ``locustfile.py`` only: it skips files whose name starts with ``_``, and the
rest of the package is private on purpose (a public module name here would also be imported
by Locust as a top-level module of that name). The modules below import neither locust nor
gevent, so tests and tools can use them:

``_mix``            the task mix: every weight, in one table
``_shapes``         the load shapes (day, step, spike, soak) as pure functions of time
``_world``          the demo terminals and patients (from the demo seed)
``_cards``          the patients' cards: SM2 signatures, legacy cryptograms
``_http``           signed requests of one terminal, judged for Locust's statistics
``_visits``         the visits, one function per kind of the mix
``_run``            one process's run: its tally and its money requests in flight
``_books``          the books check's arithmetic
``_gateway_books``  the gateway's books, read through its signed API
"""
