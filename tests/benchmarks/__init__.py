"""Tests of the gateway benchmark scripts and their helpers (benchmarks/lib)."""
