"""Reproducible benchmarks: each scenario runs beside its raw baseline in the same run."""
