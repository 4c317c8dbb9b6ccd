"""Migration scripts of the settlement branch (persons, accounts, settlements, ledger), run by
gateway.migrate."""
