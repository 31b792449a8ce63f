"""Metrics, baselines, the oracle bound, and the metric table every method is judged by."""
