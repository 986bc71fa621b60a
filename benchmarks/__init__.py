"""Benchmarks and bench: the parity ladder, latency, device probes, reports, remote runs."""
