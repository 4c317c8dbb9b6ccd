"""Province policy files of the hub simulator (one TOML per insured province), package data."""
