"""Cross-province settlement (异地就医直接结算), gateway side: routing by insured place,
filings (备案), the remote-settlement state machine with its reversal queue, and clearing.

Pure and store code only (no aiohttp): the hub client lives in ``gateway.crossprov``; the
contract with the hub simulator is ``docs/cross-province.md`` and ``settlement.crossprov.wire``.
"""
