"""The client as users get it: shell completion, the CI recipes of docs/gitops/, and the
slim package built from ``client/`` running without the server's dependencies."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from baton_client.main import app
from tests.client.helpers import ROOT

RECIPES = sorted((ROOT / "docs" / "gitops").glob("*.yml"))
SERVER_PACKAGES = ("backend", "kernel", "worker", "fastapi", "sqlalchemy", "sqlmodel")
SERVER_PACKAGES += ("asyncpg", "redis", "uvicorn", "alembic", "starlette")


def complete(words: str, env: dict[str, str] | None = None) -> list[str]:
    """What bash completion offers for the command line ``words`` (cursor at its end)."""
    cword = len(words.split()) - (0 if words.endswith(" ") else 1)
    result = subprocess.run(
        [sys.executable, "-m", "baton_client"],
        env={
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "_BATON_COMPLETE": "complete_bash",
            "COMP_WORDS": words,
            "COMP_CWORD": str(cword),
            **(env or {}),
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_shell_completion_offers_commands_and_output_values() -> None:
    assert {"login", "profiles", "jobs", "runs", "schedules", "templates", "tokens"} <= set(
        complete("baton ")
    )
    assert complete("baton ru") == ["runs"]
    assert {"trigger", "logs", "cancel", "rerun"} <= set(complete("baton runs "))
    assert complete("baton jobs list -o ") == ["table", "json", "yaml"]
    assert complete("baton tokens delete abc --output ") == ["table", "json", "yaml"]
    assert complete("baton jobs list -o y") == ["yaml"]
    assert "--prune" in complete("baton jobs apply --p")


def _baton_lines(value: Any) -> Iterator[str]:
    """Every shell line calling ``baton`` in a parsed pipeline file."""
    if isinstance(value, dict):
        for item in value.values():
            yield from _baton_lines(item)
    elif isinstance(value, list):
        for item in value:
            yield from _baton_lines(item)
    elif isinstance(value, str):
        for line in value.splitlines():
            if line.strip().startswith("baton "):
                yield line.strip()


def _check_command(line: str) -> None:
    """``line``'s subcommands exist and it uses only their options."""
    command: Any = typer.main.get_command(app)
    words = shlex.split(line)[1:]
    while hasattr(command, "get_command") and words and not words[0].startswith("-"):
        context = command.context_class(command, info_name=command.name)
        found = command.get_command(context, words.pop(0))
        assert found is not None, f"{line!r}: no such baton command"
        command = found
    assert not hasattr(command, "get_command"), f"{line!r}: incomplete command"
    options = {name for param in command.params for name in param.opts + param.secondary_opts}
    for word in words:
        if word.startswith("-"):
            assert word.split("=")[0] in options, f"{line!r}: {command.name} has no {word}"


@pytest.mark.parametrize("recipe", RECIPES, ids=[path.name for path in RECIPES])
def test_ci_recipe_parses_and_calls_existing_commands(recipe: Path) -> None:
    pipeline = yaml.safe_load(recipe.read_text(encoding="utf-8"))
    assert isinstance(pipeline, dict)
    lines = list(_baton_lines(pipeline))
    assert any(" diff " in line for line in lines) and any(" apply " in line for line in lines)
    for line in lines:
        _check_command(line)


def test_the_recipes_are_both_there() -> None:
    names = [path.name for path in RECIPES]
    assert names == ["baton-apply.github.yml", "baton-apply.gitlab-ci.yml"]


def _build_wheel(source: Path, dist: Path) -> Path:
    """``pip wheel --no-deps`` of ``source``: without build isolation when this Python can
    build wheels itself (setuptools >= 70.1, or the wheel package), else in pip's isolated
    build environment (from the configured package index)."""
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(dist), str(source)]
    probe = "import setuptools.command.bdist_wheel"
    offline = subprocess.run([sys.executable, "-c", probe], capture_output=True, check=False)
    if offline.returncode == 0:
        command.insert(4, "--no-build-isolation")
    built = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert built.returncode == 0, built.stdout + built.stderr
    [wheel] = dist.glob("baton_client-*.whl")
    return wheel


def test_the_slim_package_builds_and_runs_without_the_server(tmp_path: Path) -> None:
    source = tmp_path / "client"
    shutil.copytree(ROOT / "client", source, symlinks=False)  # baton_client is a link
    wheel = _build_wheel(source, tmp_path / "dist")

    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA")))
        entry_points = archive.read(
            next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        )
    packages = {name.split("/")[0] for name in names if not name.endswith("/")}
    assert {p for p in packages if not p.endswith(".dist-info")} == {"baton_client"}
    assert "baton_client/__main__.py" in names and "baton_client/main.py" in names
    requires = sorted(
        line.split(":", 1)[1].strip().split(">")[0].split("=")[0].strip()
        for line in metadata.decode().splitlines()
        if line.startswith("Requires-Dist:")
    )
    assert requires == ["httpx", "pyyaml", "rich", "typer"]
    assert "baton = baton_client.main:main" in entry_points.decode()

    # From the wheel alone (not this checkout), with every server package unimportable.
    blocked = ", ".join(repr(name) for name in SERVER_PACKAGES)
    probe = (
        "import runpy, sys\n"
        f"sys.path.insert(0, {str(wheel)!r})\n"
        f"sys.modules.update(dict.fromkeys(({blocked}), None))\n"
        "import baton_client\n"
        f"assert baton_client.__file__.startswith({str(wheel)!r}), baton_client.__file__\n"
        "runpy.run_module('baton_client', run_name='__main__')\n"
    )
    environment = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    for args in (["--help"], ["jobs", "apply", "--help"]):
        ran = subprocess.run(
            [sys.executable, "-c", probe, *args],
            cwd=tmp_path,
            env={**environment, "COLUMNS": "200", "NO_COLOR": "1"},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert ran.returncode == 0, ran.stderr
        assert "Usage: baton" in ran.stdout
    server = subprocess.run(
        [sys.executable, "-c", probe, "db", "--help"],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert server.returncode == 1 and "is a server command" in server.stderr


def _leaves(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    if not hasattr(command, "get_command"):
        yield path, command
        return
    context = command.context_class(command, info_name=command.name)
    for name in command.list_commands(context):
        yield from _leaves(command.get_command(context, name), (*path, name))


def test_every_client_command_takes_output() -> None:
    """The README says so: every client command takes --output table|json|yaml."""
    lacking = [
        " ".join(path)
        for path, command in _leaves(typer.main.get_command(app))
        if not any("--output" in param.opts for param in command.params)
    ]
    assert lacking == []
