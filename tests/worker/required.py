"""Skips that CI turns into failures: ``BATON_REQUIRE_SANDBOX=1`` (set by ``.ci/run``) says
the sandbox and what its tests need (root, iproute2) are installed on this machine, so a
sandbox test that cannot run is a broken install, not a machine without the feature."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

REQUIRE_SANDBOX = "BATON_REQUIRE_SANDBOX"


def sandbox_required() -> bool:
    return os.environ.get(REQUIRE_SANDBOX, "").strip() == "1"


def skip_unless_required(reason: str) -> NoReturn:
    """Skip this test for ``reason``; fail it instead when the sandbox is required."""
    if sandbox_required():
        pytest.fail(f"{reason} ({REQUIRE_SANDBOX}=1: the sandbox's tests must run here)")
    pytest.skip(reason)
