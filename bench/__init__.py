"""Baton vs Celery benchmarks: ``make bench`` (see docs/benchmarks.md)."""
