"""Python tasks: call an allowed function, ``spec.function = "pkg.module:attr"``.

Spec: ``function`` (``"pkg.module:attr"``, the attribute may be dotted, e.g.
``"pkg.mod:Class.method"``), ``kwargs`` (dict). Only modules under
``policy.python_modules`` may be imported (an entry allows that exact module and its
submodules), and the resolved callable must itself be defined there - so
``"os:system"`` is refused, and so is ``"worker.builtins:system"`` should that module ever
import ``os.system``. Attribute names starting with ``_`` are refused too.

The function gets the spec's ``kwargs``, plus ``params=`` (the run's parameters) and
``item=`` (the for_each item) when its signature names those parameters (``**kwargs``
alone does not count) and the spec did not set them. Coroutine functions are awaited on
the worker's loop; plain functions run in a thread (``asyncio.to_thread``), except those
marked :func:`inline`: functions that take microseconds and never block (the builtins
``noop``, ``echo``, ``fail``, ``count_rows``), called on the loop itself - the thread hop
would cost more than the call. Marking is the function author's promise: an inline
function that blocked would stall every task of the worker, so only functions that do
no I/O, take no lock and do bounded work may be marked. A thread cannot
be killed: on cancellation the executor re-raises at once, and a sync function still
running finishes in the background with its result discarded - long-running work belongs in
async functions.

The return value is the task's output; it must be JSON-serialisable and within
``policy.max_output_bytes``. An exception fails the task with ``"ExcType: message"``, its
traceback going to the log (``stderr``).
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
import re
import sys
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

from kernel.wire.protocol import ExecutionResult, TaskMessage
from worker.executors.base import (
    ExecutorPolicy,
    LogSink,
    LogWriter,
    SpecError,
    check_output_size,
    require_str,
)

logger = logging.getLogger(__name__)

_INLINE = "__baton_inline__"

F = TypeVar("F", bound=Callable[..., Any])


def inline(func: F) -> F:
    """Mark a sync function that takes microseconds and never blocks: the worker calls it
    on its event loop instead of in a thread (see the module docstring)."""
    setattr(func, _INLINE, True)
    return func


_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_INJECTED = ("params", "item")


def module_allowed(module: str, prefixes: tuple[str, ...]) -> bool:
    """Whether ``module`` is one of ``prefixes`` or a submodule of one."""
    return any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes)


def parse_function_ref(ref: str) -> tuple[str, str]:
    """Split ``"pkg.module:attr"`` into module and attribute path, or :class:`SpecError`."""
    module, sep, attr = ref.partition(":")
    if not sep:
        raise SpecError(f"spec.function must look like 'pkg.module:function', got {ref!r}")
    if not _DOTTED.fullmatch(module):
        raise SpecError(f"spec.function has an invalid module name: {module!r}")
    if not _DOTTED.fullmatch(attr):
        raise SpecError(f"spec.function has an invalid attribute name: {attr!r}")
    if any(part.startswith("_") for part in attr.split(".")):
        raise SpecError(f"spec.function may not name a private attribute: {attr!r}")
    return module, attr


class PythonExecutor:
    """Runs ``python`` tasks; see the module docstring."""

    def __init__(self, policy: ExecutorPolicy) -> None:
        self.policy = policy

    async def execute(self, message: TaskMessage, log: LogSink) -> ExecutionResult:
        """Import, call and return the function's JSON result."""
        writer = LogWriter(log, self.policy.max_log_bytes)
        try:
            ref = require_str(message.spec, "function")
            module_name, attr_path = parse_function_ref(ref)
            kwargs = _spec_kwargs(message.spec)
        except SpecError as exc:
            return ExecutionResult.failed(str(exc))

        if not module_allowed(module_name, self.policy.python_modules):
            return ExecutionResult.failed(
                f"Python module {module_name!r} is not allowed on this worker "
                f"(allowed: {', '.join(self.policy.python_modules) or 'none'})",
                reason="unsupported",
            )

        try:
            if module_name in sys.modules:  # imported already: resolving cannot block
                func = _resolve(module_name, attr_path)
            else:
                func = await asyncio.to_thread(_resolve, module_name, attr_path)
        except SpecError as exc:
            return ExecutionResult.failed(str(exc))
        except Exception as exc:  # noqa: BLE001 - the module's import-time code failed
            await writer.write_text("stderr", "".join(traceback.format_exception(exc)))
            return ExecutionResult.failed(
                f"cannot import {module_name!r}: {type(exc).__name__}: {exc}"
            )

        defined_in = getattr(func, "__module__", None)
        if not isinstance(defined_in, str) or not module_allowed(
            defined_in, self.policy.python_modules
        ):
            return ExecutionResult.failed(
                f"{ref!r} resolves to a callable defined in {defined_in!r}, "
                "which is not allowed on this worker",
                reason="unsupported",
            )

        try:
            call_kwargs = _bind(func, ref, kwargs, message)
        except SpecError as exc:
            return ExecutionResult.failed(str(exc))

        logger.debug(
            "worker.python.calling",
            extra={"task_run_id": message.task_run_id, "function": ref},
        )
        try:
            result = await _call(func, call_kwargs)
        except asyncio.CancelledError:
            if not inspect.iscoroutinefunction(func) and not getattr(func, _INLINE, False):
                logger.warning(
                    "worker.python.thread_abandoned",
                    extra={"task_run_id": message.task_run_id, "function": ref},
                )
            raise
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - a task failure, reported
            await writer.write_text("stderr", "".join(traceback.format_exception(exc)))
            return ExecutionResult.failed(f"{type(exc).__name__}: {exc}")

        problem = check_output_size(result, self.policy)
        if problem is not None:
            return ExecutionResult.failed(f"{ref} returned a bad value: {problem}")
        return ExecutionResult.ok(result)


def _spec_kwargs(spec: dict[str, Any]) -> dict[str, Any]:
    raw = spec.get("kwargs") or {}
    if not isinstance(raw, dict) or not all(isinstance(key, str) for key in raw):
        raise SpecError("spec.kwargs must be an object")
    return dict(raw)


def _resolve(module_name: str, attr_path: str) -> Callable[..., Any]:
    """Import the module and walk the attribute path (runs in a thread: imports block)."""
    try:
        target: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise SpecError(f"no module named {module_name!r} ({exc})") from exc
    for part in attr_path.split("."):
        try:
            target = getattr(target, part)
        except AttributeError as exc:
            raise SpecError(f"{module_name!r} has no attribute {attr_path!r}") from exc
    if not callable(target):
        raise SpecError(f"{module_name}:{attr_path} is not callable")
    return target


def _bind(
    func: Callable[..., Any], ref: str, kwargs: dict[str, Any], message: TaskMessage
) -> dict[str, Any]:
    """Add ``params``/``item`` when the signature names them, and check the arguments fit."""
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):
        return kwargs  # no introspectable signature: call with the spec's kwargs as they are
    injected = {"params": message.params, "item": message.item}
    call_kwargs = dict(kwargs)
    for name in _INJECTED:
        parameter = signature.parameters.get(name)
        if (
            parameter is not None
            and parameter.kind
            in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
            and name not in call_kwargs
        ):
            call_kwargs[name] = injected[name]
    try:
        signature.bind(**call_kwargs)
    except TypeError as exc:
        raise SpecError(f"spec.kwargs do not fit {ref}: {exc}") from exc
    return call_kwargs


async def _call(func: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    if inspect.iscoroutinefunction(func):
        return await func(**kwargs)
    if getattr(func, _INLINE, False):
        result = func(**kwargs)  # microseconds, no I/O: no thread hop
    else:
        result = await asyncio.to_thread(func, **kwargs)
    if inspect.isawaitable(result):
        result = await result
    return result
