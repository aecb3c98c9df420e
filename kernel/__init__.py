"""Baton's kernel: what the backend and the worker share, with no I/O of its own.

The bottom layer (docs/architecture.md, scripts/check_layers.py): it imports nothing of
Baton's above it and opens no connection - the DAG model (``dag``), cron arithmetic
(``cron``), the wire protocol and Redis key names (``wire``), the secrets envelope
(``secrets``, ``credential``), metric definitions (``metrics``) and the outage guard
(``dependencies``), which act on clients their callers pass in. ``runtime`` is the one
part with I/O: what every process starts with (settings from the environment, logging, the
Redis client, the metrics port, development keys), so that a worker starts without the
backend.
"""
