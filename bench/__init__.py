"""Benchmarks: the service against sequential, ideal in-process and peer-server baselines (not tests)."""
