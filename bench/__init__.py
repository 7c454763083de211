"""Benchmarks and long runs against the real service: bench, chaos, soak, outage (run with ``python -m``)."""
