"""Item catalogues (TOML), shipped as package data."""
