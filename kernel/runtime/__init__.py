"""What every Baton process starts with, shared by ``baton api``/``scheduler`` and the worker.

The rest of the kernel has no I/O of its own; this package is the exception, and only
process plumbing lives here: reading ``BATON_*`` settings from the environment (``env``),
logging (``logs``), the Redis client (``redis``), the metrics port (``metrics``) and the
development secrets kept in the data directory (``dev_secrets``). It imports only the
kernel and the base install's packages, so a worker installed alone
(``pip install 'baton[worker]'``) starts with it.
"""
