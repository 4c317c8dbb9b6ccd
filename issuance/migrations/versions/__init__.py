"""Migration scripts of the issuance branch (cardholders, cards), run by gateway.migrate."""
