"""The test suite's own rules, checked on its source.

``python scripts/check_tests.py`` (part of ``make lint``; ``tests/test_suite_rules.py`` runs
it too) reads every module under ``tests/`` with :mod:`ast` and fails, naming the file and
line, when:

1. a test module (``test_*.py``) calls ``asyncio.sleep``, ``time.sleep`` or
   ``wait_for_timeout`` without saying why on that line or the line before: ``# fault:``
   (the sleep *is* the fault injected, e.g. an outage's length), ``# payload:`` (what a
   task under test does) or ``# pacing:`` (the interval of a loop that polls a condition
   with a deadline). A fixed sleep followed by an assertion is none of these: wait for the
   condition instead (``tests.fixtures.waiting.eventually``). ``asyncio.sleep(0)`` is
   allowed: it yields to the event loop once, no time passes;
2. an ``assert`` uses ``elapsed`` or ``monotonic``: a test never asserts how long something
   took (speed belongs in ``make bench``);
3. a module other than ``tests/fixtures/errors.py`` defines ``assert_error`` (there is one,
   strict: status and code);
4. a module imports a test module (``tests....test_*``) or a conftest: shared code lives in
   ``tests/fixtures/`` or a package's ``helpers.py``.

Every file is checked, tests/notify and tests/triggers included.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REASONS = ("# fault:", "# payload:", "# pacing:")
SLEEPS = {("asyncio", "sleep"), ("time", "sleep")}
ERRORS_MODULE = Path("tests/fixtures/errors.py")


@dataclass(frozen=True)
class Violation:
    path: Path
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


def check(root: Path = ROOT) -> list[Violation]:
    """Every violation under ``root/tests``, in file and line order."""
    found: list[Violation] = []
    for path in sorted((root / "tests").rglob("*.py")):
        relative = path.relative_to(root)
        source = path.read_text()
        found.extend(check_source(relative, source))
    return found


def check_source(path: Path, source: str) -> list[Violation]:
    """The violations of one module, ``path`` relative to the repository root, by line."""
    return sorted(_violations(path, source), key=lambda violation: violation.line)


def _violations(path: Path, source: str) -> Iterator[Violation]:
    tree = ast.parse(source, str(path))
    lines = source.splitlines()
    is_test = path.name.startswith("test_")
    for node in ast.walk(tree):
        if is_test and isinstance(node, ast.Call) and _is_sleep(node):
            if not _explained(lines, node):
                yield Violation(
                    path,
                    node.lineno,
                    f"{ast.unparse(node.func)}() without a # fault: / # payload: / # pacing: "
                    "reason on its line or the line before (wait for a condition instead)",
                )
        elif isinstance(node, ast.Assert):
            timed = _timing_name(node)
            if timed:
                yield Violation(path, node.lineno, f"an assert on time taken ({timed})")
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            if node.name == "assert_error" and path != ERRORS_MODULE:
                yield Violation(
                    path, node.lineno, "assert_error defined again: use tests.fixtures.errors"
                )
        elif isinstance(node, ast.Import | ast.ImportFrom):
            for module in _imported(node):
                if _forbidden_import(module):
                    yield Violation(
                        path,
                        node.lineno,
                        f"imports {module}: move what it shares to tests/fixtures/ or helpers.py",
                    )
                    break  # one report per import statement


def _is_sleep(call: ast.Call) -> bool:
    func = call.func
    if _yields_once(call):
        return False
    if isinstance(func, ast.Attribute):
        if func.attr == "wait_for_timeout":
            return True
        return isinstance(func.value, ast.Name) and (func.value.id, func.attr) in SLEEPS
    return False


def _yields_once(call: ast.Call) -> bool:
    """``asyncio.sleep(0)``: one pass of the event loop, not a wait."""
    return (
        isinstance(call.func, ast.Attribute)
        and isinstance(call.func.value, ast.Name)
        and call.func.value.id == "asyncio"
        and len(call.args) == 1
        and isinstance(call.args[0], ast.Constant)
        and call.args[0].value == 0
    )


def _explained(lines: list[str], node: ast.Call) -> bool:
    first = node.lineno - 1
    last = (node.end_lineno or node.lineno) - 1
    nearby = lines[max(first - 1, 0) : last + 1]
    return any(reason in line for line in nearby for reason in REASONS)


def _timing_name(node: ast.Assert) -> str | None:
    for child in ast.walk(node):
        if isinstance(child, ast.Name) and ("elapsed" in child.id or child.id == "monotonic"):
            return child.id
        if isinstance(child, ast.Attribute) and (
            "elapsed" in child.attr or child.attr == "monotonic"
        ):
            return child.attr
    return None


def _imported(node: ast.Import | ast.ImportFrom) -> Iterator[str]:
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield alias.name
    elif node.module and node.level == 0:
        yield node.module
        for alias in node.names:  # from tests.web import test_runs
            yield f"{node.module}.{alias.name}"


def _forbidden_import(module: str) -> bool:
    parts = module.split(".")
    if parts[0] != "tests":
        return False
    return any(part.startswith("test_") or part == "conftest" for part in parts[1:])


def main() -> int:
    violations = check()
    for violation in violations:
        print(violation, file=sys.stderr)  # noqa: T201 - a command-line check's report
    if violations:
        print(f"{len(violations)} break(s) of the test suite's rules", file=sys.stderr)  # noqa: T201
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
