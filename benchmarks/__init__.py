"""Benchmarks: speed and memory figures, printed and kept in reports/benchmarks.json (`make bench`)."""
