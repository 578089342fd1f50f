"""Reproducible benchmarks: each prints ours beside its baseline from the same run."""
