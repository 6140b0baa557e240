"""Helpers for tests, benchmarks and sample data (no third-party dependencies)."""
