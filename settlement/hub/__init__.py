"""The national cross-province hub simulator (``python -m settlement.hub``).

Stands in for the national platform in tests and demos: persons of other provinces derived on
demand, one benefit policy per insured province (``provinces/*.toml``) priced with
``settlement.engine`` under Shanghai's catalogue, the transactions of
``docs/cross-province.md`` (1101, settle/cancel, 2601 reversal, 5201, 3201/3202) with state in
memory, and fault injection (latency, drop after commit, 5xx, refused connections).

The one part of ``settlement`` allowed to import aiohttp (DESIGN §3): it simulates an external
system in its own process, and nothing else in ``settlement`` imports it.

Module map::

    settlement.hub.province   Province: policy + temporary-case policy per insured province
    settlement.hub.persons    derive_person(seed, psn_no) (masking: sscard.masking)
    settlement.hub.state      HubState.handle(request, now=...) -> HubResponse (the books)
    settlement.hub.faults     FaultSwitches, FaultPlan (seeded), X-Hub-Fault header
    settlement.hub.app        create_app(...), start_listener(...), Listener (refuse/re-listen)
    settlement.hub.serve      the CLI: main(argv)
"""
