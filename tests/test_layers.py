"""The import contract (scripts/check_layers.py) and the worker installed without the backend.

The contract: imports run only downward - kernel, core, domains, processes, CLI - with no
process importing another and no circle of packages (docs/architecture.md).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest

from tests.fixtures.worker_alone import API_ONLY, import_alone

ROOT = Path(__file__).resolve().parent.parent


def _checker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_layers", ROOT / "scripts/check_layers.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


check_layers = _checker()


def test_the_tree_keeps_the_layer_contract() -> None:
    assert [str(v) for v in check_layers.check(ROOT)] == []


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    for directory in [p for p in root.rglob("*") if p.is_dir()]:
        (directory / "__init__.py").touch()
    return root


_GOOD = {
    "kernel/dag/plan.py": "import json\n",
    "backend/core/db.py": "from kernel.dag import plan\n",
    "backend/jobs/service.py": "from backend.core import db\n",
    "backend/runs/service.py": "from backend.jobs import service\n",
    "backend/engine/loop.py": "from backend.runs import service\n",
    "worker/runner.py": "from kernel.dag.plan import json\n",
    "backend/cli.py": "from backend.engine import loop\nfrom worker import runner\n",
}


def _rules(root: Path) -> list[str]:
    return [v.rule for v in check_layers.check(root)]


def test_a_tree_that_imports_only_downward_passes(tmp_path: Path) -> None:
    assert _rules(_tree(tmp_path, _GOOD)) == []


@pytest.mark.parametrize(
    ("changed", "rule"),
    [
        # the kernel reaching up into a domain
        ({"kernel/dag/plan.py": "from backend.jobs import service\n"}, "kernel may not import"),
        # core importing a domain, even inside a function
        (
            {"backend/core/db.py": "def f():\n    from backend.jobs import service\n"},
            "core may not import domains",
        ),
        # a relative import is resolved too
        ({"backend/core/db.py": "from ..jobs import service\n"}, "core may not import domains"),
        # the worker importing the backend's engine
        ({"worker/runner.py": "import backend.engine.loop\n"}, "process worker imports engine"),
        # two domains importing each other
        (
            {"backend/jobs/service.py": "from backend.runs import service\n"},
            "circle of packages: backend.jobs -> backend.runs",
        ),
        # a package nobody placed in a layer
        ({"backend/newthing/x.py": "import json\n"}, "belongs to no layer"),
    ],
)
def test_the_contract_fails_on(tmp_path: Path, changed: dict[str, str], rule: str) -> None:
    rules = _rules(_tree(tmp_path, {**_GOOD, **changed}))
    assert any(r.startswith(rule) for r in rules), rules


_WORKER_ALONE = """
import importlib, pkgutil, sys

REFUSED = set(sys.argv[1].split(","))


class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in REFUSED:
            raise ModuleNotFoundError(f"{name} is not installed with the worker", name=name)
        return None


already = sorted(m for m in sys.modules if m.partition(".")[0] in REFUSED)
assert not already, already
sys.meta_path.insert(0, Refuse())
import kernel
import worker

names = [
    *(m.name for m in pkgutil.walk_packages(kernel.__path__, "kernel.")),
    *(m.name for m in pkgutil.walk_packages(worker.__path__, "worker.")),
]
for name in names:
    importlib.import_module(name)
from worker.runner import Worker, WorkerConfig
from worker.executors import executor_for, ExecutorPolicy

assert executor_for("http", ExecutorPolicy()) is not None
loaded = sorted(m for m in sys.modules if m.partition(".")[0] in REFUSED)
assert not loaded, loaded
print(len(names))
"""


def test_the_worker_and_the_kernel_import_without_the_backend_or_the_api_packages() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _WORKER_ALONE, ",".join(API_ONLY)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) > 30  # every module of the kernel and the worker was imported


def test_the_refused_packages_are_the_api_extras_and_the_blocker_bites() -> None:
    """The list is computed from pyproject.toml (tests/fixtures/worker_alone.py): it holds
    what the API needs and the worker does not, and importing the API behind it fails."""
    for module in ("backend", "fastapi", "starlette", "sqlalchemy", "sqlmodel", "asyncpg"):
        assert module in API_ONLY
    for module in ("pydantic", "pydantic_settings", "alembic", "jinja2", "typer", "uvicorn"):
        assert module in API_ONLY
    for module in ("redis", "httpx", "docker", "cryptography", "structlog", "prometheus_client"):
        assert module not in API_ONLY  # the worker's own
    done = subprocess.run(
        import_alone("backend.cli"), cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode != 0
    assert "is not installed with the worker" in done.stderr
