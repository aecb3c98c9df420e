"""The import contract: imports run only downward through Baton's layers, with no circles.

``python scripts/check_layers.py`` (part of ``make lint``; ``tests/test_layers.py`` runs it
too) reads every module of the layered packages with :mod:`ast` - imports inside functions
and under ``TYPE_CHECKING`` count - and fails, naming the module and the import, when:

1. a module imports from a layer above its own (``LAYERS``, bottom first);
2. two processes import each other (``PROCESSES``: API, engine, scheduler, worker);
3. packages import each other in a circle (a package is ``kernel.dag``, ``backend.jobs``,
   ``worker.executors``, ...; modules inside one package may import each other freely);
4. a module belongs to no layer (a new package must be placed in the contract).

The layers are drawn in docs/architecture.md; change both together.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Bottom first. A module may import its own layer and the layers below it. A prefix names
# a package (every module under it) or a module.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    # No I/O of its own: the DAG model, cron arithmetic, the wire protocol and Redis key
    # names, the secrets envelope, metric definitions, the outage guard; and kernel.runtime,
    # what every process (a worker installed alone too) starts with: settings from the
    # environment, logging, the Redis client, the metrics port, development keys.
    ("kernel", ("kernel",)),
    # Settings, database sessions, errors, security primitives, hooks.
    ("core", ("backend.core",)),
    # One package per domain; cross-domain side effects go through backend.core.hooks.
    (
        "domains",
        (
            "backend.audit",
            "backend.plans",
            "backend.users",
            "backend.accounts",
            "backend.tokens",
            "backend.tenants",
            "backend.auth",
            "backend.secrets",
            "backend.jobs",
            "backend.dispatch",
            "backend.runs",
            "backend.notify",
            "backend.triggers",
            "backend.live",
            "backend.schedules",
            "backend.templates",
            "backend.workers",
            "backend.metrics",
            "backend.health",
            "backend.retention",
            "backend.billing",
            "backend.admin",
            "backend.models",
            "backend.wiring",
        ),
    ),
    # The long-running processes.
    (
        "processes",
        ("backend.app", "backend.web", "backend.engine", "backend.scheduler", "worker"),
    ),
    # What starts them: all-in-one assembly, the command line, migrations.
    ("cli", ("backend.processes", "backend.cli", "baton_client", "migrations")),
]

# Processes never import each other (what they share lives below them).
PROCESSES: dict[str, tuple[str, ...]] = {
    "api": ("backend.app", "backend.web"),
    "engine": ("backend.engine",),
    "scheduler": ("backend.scheduler",),
    "worker": ("worker",),
}

PACKAGES = ("kernel", "backend", "worker", "baton_client", "migrations")


@dataclass(frozen=True)
class Violation:
    module: str
    imported: str
    rule: str

    def __str__(self) -> str:
        return f"{self.module} imports {self.imported}: {self.rule}"


def _owner(module: str, table: Iterable[tuple[str, tuple[str, ...]]]) -> str | None:
    """The entry of ``table`` whose longest prefix holds ``module``."""
    best: tuple[int, str] | None = None
    for name, prefixes in table:
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (
                best is None or len(prefix) > best[0]
            ):
                best = (len(prefix), name)
    return best[1] if best else None


def package_of(module: str) -> str:
    """The unit of the no-circles rule: the first two parts of the dotted name."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] in ("kernel", "backend", "worker") else parts[0]


def discover(root: Path) -> dict[str, Path]:
    """Every module of the layered packages, by dotted name."""
    modules: dict[str, Path] = {}
    for top in PACKAGES:
        for path in sorted((root / top).rglob("*.py")):
            if "__pycache__" in path.parts or "node_modules" in path.parts:
                continue
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def imports_of(module: str, path: Path, known: set[str]) -> Iterator[str]:
    """The modules of ``known`` that ``module`` imports (the deepest that exists)."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".")
                keep = len(parts) - node.level + (1 if is_package else 0)
                base = ".".join([*parts[:keep], *([node.module] if node.module else [])])
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target not in PACKAGES:  # a bare top-level package holds nothing
                yield target
                break


def _circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one package (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def check(root: Path = ROOT) -> list[Violation]:
    """Every breach of the contract in the tree at ``root``."""
    modules = discover(root)
    known = set(modules)
    rank = {name: i for i, (name, _) in enumerate(LAYERS)}
    violations: list[Violation] = []
    package_edges: dict[str, set[str]] = defaultdict(set)
    witness: dict[tuple[str, str], tuple[str, str]] = {}
    for module, path in modules.items():
        if module in PACKAGES:
            continue
        layer = _owner(module, LAYERS)
        if layer is None:
            violations.append(Violation(module, "-", "belongs to no layer: add it to LAYERS"))
            continue
        process = _owner(module, PROCESSES.items())
        for target in imports_of(module, path, known):
            target_layer = _owner(target, LAYERS)
            if target_layer is not None and rank[target_layer] > rank[layer]:
                violations.append(
                    Violation(module, target, f"{layer} may not import {target_layer}")
                )
            target_process = _owner(target, PROCESSES.items())
            if process and target_process and process != target_process:
                violations.append(
                    Violation(module, target, f"process {process} imports {target_process}")
                )
            source, dest = package_of(module), package_of(target)
            if source != dest:
                package_edges[source].add(dest)
                witness.setdefault((source, dest), (module, target))
    for circle in _circles(package_edges):
        members = set(circle)
        for source in circle:
            for dest in sorted(package_edges[source] & members):
                module, target = witness[(source, dest)]
                violations.append(
                    Violation(module, target, f"circle of packages: {' -> '.join(circle)}")
                )
    return violations


def main() -> int:
    violations = check()
    for violation in violations:
        print(violation, file=sys.stderr)  # noqa: T201 - a command-line check's report
    if violations:
        print(f"{len(violations)} import(s) break the layer contract", file=sys.stderr)  # noqa: T201
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
