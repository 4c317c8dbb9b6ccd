"""Benchmarks that report figures and ratios (never pass/fail tests).

``python -m loadtest.bench crypto [--json]``: SM2 sign/verify per second for each backend beside
``openssl speed sm2`` measured in the same run.
"""
