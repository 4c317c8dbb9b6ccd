"""Benefit policy files (one TOML per policy year), shipped as package data."""
