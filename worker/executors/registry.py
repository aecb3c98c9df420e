"""Which executor runs which task type. Kept apart from :mod:`worker.executors.base`, which
every executor imports, so imports run one way: executors -> base, registry -> executors."""

from __future__ import annotations

from worker.executors.base import Executor, ExecutorPolicy, UnsupportedExecutor
from worker.executors.docker import DockerExecutor
from worker.executors.http import HttpExecutor
from worker.executors.python import PythonExecutor
from worker.executors.shell import ShellExecutor


def executor_for(task_type: str, policy: ExecutorPolicy) -> Executor:
    """The executor for ``task_type`` (shell, http, python, docker) under ``policy``.

    Unknown types get an executor that fails every task with reason ``unsupported``, so the
    caller never has to special-case them.
    """
    if task_type == "shell":
        return ShellExecutor(policy)
    if task_type == "http":
        return HttpExecutor(policy)
    if task_type == "python":
        return PythonExecutor(policy)
    if task_type == "docker":
        return DockerExecutor(policy)
    return UnsupportedExecutor(f"Unsupported task type {task_type!r}")
