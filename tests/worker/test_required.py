"""``BATON_REQUIRE_SANDBOX=1`` turns the sandbox tests' skips into failures."""

from __future__ import annotations

import pytest

from tests.worker.required import REQUIRE_SANDBOX, skip_unless_required


def test_a_missing_sandbox_skips_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(REQUIRE_SANDBOX, raising=False)
    with pytest.raises(pytest.skip.Exception, match="no bwrap"):
        skip_unless_required("no bwrap")


def test_a_missing_sandbox_fails_when_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(REQUIRE_SANDBOX, "1")
    with pytest.raises(pytest.fail.Exception, match=r"no bwrap.*BATON_REQUIRE_SANDBOX=1"):
        skip_unless_required("no bwrap")
