"""Task executors: one per task type (shell, http, python, docker).

The worker builds an :class:`ExecutorPolicy` from its settings and calls
``executor_for(task_type, policy).execute(message, log)``; see :mod:`worker.executors.base`
for the contract (never raise for task failures; clean up and re-raise on cancellation).
"""

from worker.executors.base import (
    Executor,
    ExecutorPolicy,
    LogSink,
    UnsupportedExecutor,
)
from worker.executors.docker import DockerExecutor
from worker.executors.http import HttpExecutor
from worker.executors.python import PythonExecutor
from worker.executors.registry import executor_for
from worker.executors.shell import ShellExecutor

__all__ = [
    "DockerExecutor",
    "Executor",
    "ExecutorPolicy",
    "HttpExecutor",
    "LogSink",
    "PythonExecutor",
    "ShellExecutor",
    "UnsupportedExecutor",
    "executor_for",
]
