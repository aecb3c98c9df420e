"""The ``baton`` command line client: a thin client of Baton's REST API.

It never imports ``backend``: it is installable on its own (``client/``) with only httpx,
typer, rich and PyYAML.
"""
