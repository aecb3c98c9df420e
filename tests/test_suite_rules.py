"""The test suite's own rules (scripts/check_tests.py): what the check rejects and allows."""

from __future__ import annotations

import importlib.util
import sys
import textwrap
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent


def _checker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_tests", ROOT / "scripts/check_tests.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


check_tests = _checker()


def found(source: str, path: str = "tests/things/test_x.py") -> list[tuple[int, str]]:
    """(line, message) of each violation of ``source`` as the module at ``path``."""
    violations = check_tests.check_source(Path(path), textwrap.dedent(source))
    return [(v.line, v.message) for v in violations]


def test_the_suite_keeps_its_rules_outside_the_notifications_change() -> None:
    """tests/notify and tests/triggers are being changed elsewhere: the check reports them
    (``make lint``), this test holds the rest of the suite to the rules."""
    pending = ("tests/notify/", "tests/triggers/")
    violations = [str(v) for v in check_tests.check(ROOT)]
    assert [v for v in violations if not v.startswith(pending)] == []


def test_a_sleep_needs_its_reason() -> None:
    source = """\
        import asyncio, time

        async def test_a(page):
            await asyncio.sleep(0.3)
            time.sleep(1)
            await page.wait_for_timeout(100)
    """
    assert [line for line, _ in found(source)] == [4, 5, 6]


def test_a_sleep_with_its_reason_or_a_single_yield_passes() -> None:
    source = """\
        import asyncio

        async def test_a():
            await asyncio.sleep(5)  # fault: the outage lasts five seconds
            # pacing: between polls, inside the deadline
            await asyncio.sleep(0.1)
            await asyncio.sleep(0)
    """
    assert found(source) == []


def test_sleeps_outside_test_modules_are_not_checked() -> None:
    assert found("import time\ntime.sleep(1)\n", "tests/runs/tasks.py") == []


def test_timing_asserts_are_rejected() -> None:
    source = """\
        import time

        def test_a():
            began = time.monotonic()
            elapsed = time.monotonic() - began
            assert elapsed < 1.5
            assert time.monotonic() - began < 2
    """
    assert [line for line, _ in found(source)] == [6, 7]


def test_one_assert_error_and_no_imports_of_test_modules_or_conftests() -> None:
    source = """\
        from tests.web.conftest import Browser
        from tests.notify import test_notifications
        import tests.client.test_cli
        from tests.fixtures.errors import assert_error
        from tests.web.helpers import Browser

        def assert_error(response, status):
            pass
    """
    assert [line for line, _ in found(source)] == [1, 2, 3, 7]
    assert found("def assert_error(r, s, c):\n    pass\n", "tests/fixtures/errors.py") == []
