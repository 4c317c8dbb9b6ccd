"""Migration scripts of the gateway branch."""
