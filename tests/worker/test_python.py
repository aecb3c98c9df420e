"""Python executor: module allowlist, argument injection, results and failures."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kernel.wire.protocol import ExecutionResult
from tests.worker.helpers import LogCollector, MessageFactory
from worker import builtins
from worker.executors import ExecutorPolicy, PythonExecutor

POLICY = ExecutorPolicy(python_modules=("worker.builtins", "tests.worker.sample_tasks"))


async def run(
    make_message: MessageFactory,
    logs: LogCollector,
    function: str,
    kwargs: dict[str, Any] | None = None,
    policy: ExecutorPolicy = POLICY,
    **overrides: Any,
) -> ExecutionResult:
    spec: dict[str, Any] = {"type": "python", "function": function}
    if kwargs is not None:
        spec["kwargs"] = kwargs
    return await PythonExecutor(policy).execute(make_message(spec, **overrides), logs)


@pytest.mark.parametrize(
    ("function", "kwargs", "output"),
    [
        ("worker.builtins:noop", None, None),
        ("worker.builtins:echo", {"value": [1, "two"]}, [1, "two"]),
        ("worker.builtins:echo", None, {"day": "2024-01-01"}),  # params injected
        ("worker.builtins:count_rows", {"rows": 7}, {"rows": 7}),
        ("worker.builtins:sleep", {"seconds": 0}, None),
        ("tests.worker.sample_tasks:add", {"a": 2, "b": 3}, 5),
        ("tests.worker.sample_tasks:async_double", {"value": 21}, 42),
        ("tests.worker.sample_tasks:Helpers.triple", {"value": 2}, 6),
    ],
)
async def test_success(
    logs: LogCollector,
    make_message: MessageFactory,
    function: str,
    kwargs: dict[str, Any] | None,
    output: Any,
) -> None:
    result = await run(make_message, logs, function, kwargs)
    assert result.status == "succeeded", result
    assert result.output == output


async def test_params_and_item_injected(logs: LogCollector, make_message: MessageFactory) -> None:
    result = await run(
        make_message, logs, "tests.worker.sample_tasks:with_context", {"scale": 2}, item="f.csv"
    )
    assert result.output == {"params": {"day": "2024-01-01"}, "item": "f.csv", "scale": 2}


async def test_var_kwargs_get_no_injection(
    logs: LogCollector, make_message: MessageFactory
) -> None:
    result = await run(make_message, logs, "tests.worker.sample_tasks:takes_var_kwargs", {"x": 1})
    assert result.output == {"keys": ["x"]}


async def test_spec_kwargs_win_over_injection(
    logs: LogCollector, make_message: MessageFactory
) -> None:
    result = await run(make_message, logs, "worker.builtins:echo", {"params": {"own": True}})
    assert result.output == {"own": True}


async def test_exception_fails_with_traceback(
    logs: LogCollector, make_message: MessageFactory
) -> None:
    result = await run(make_message, logs, "tests.worker.sample_tasks:boom", {"message": "no"})
    assert result.status == "failed"
    assert result.reason == "error"
    assert result.error == "ValueError: no"
    stderr = logs.text("stderr")
    assert stderr[0] == "Traceback (most recent call last):"
    assert stderr[-1] == "ValueError: no"
    assert any("sample_tasks.py" in line for line in stderr)


async def test_builtin_fail(logs: LogCollector, make_message: MessageFactory) -> None:
    result = await run(make_message, logs, "worker.builtins:fail", {"message": "on purpose"})
    assert result.error == "RuntimeError: on purpose"


async def test_system_exit_is_contained(logs: LogCollector, make_message: MessageFactory) -> None:
    result = await run(make_message, logs, "tests.worker.sample_tasks:exits")
    assert (result.status, result.error) == ("failed", "SystemExit: 3")


@pytest.mark.parametrize(
    ("function", "kwargs", "fragment"),
    [
        ("tests.worker.sample_tasks:not_json", None, "not JSON-serialisable"),
        ("tests.worker.sample_tasks:nan", None, "not JSON-serialisable"),
        ("tests.worker.sample_tasks:big", {"size": 2000}, "exceeds the limit"),
    ],
)
async def test_bad_return_values(
    logs: LogCollector,
    make_message: MessageFactory,
    function: str,
    kwargs: dict[str, Any] | None,
    fragment: str,
) -> None:
    policy = ExecutorPolicy(python_modules=POLICY.python_modules, max_output_bytes=1000)
    result = await run(make_message, logs, function, kwargs, policy=policy)
    assert result.status == "failed"
    assert result.error is not None and fragment in result.error


@pytest.mark.parametrize(
    "function",
    [
        "os:system",
        "subprocess:run",
        "builtins:eval",
        "worker:builtins",
        "worker.builtinsx:noop",  # a prefix only matches whole dotted components
        "tests.worker.sample_tasks:getcwd",  # allowed module, but os.getcwd lives in posix
    ],
)
async def test_refused_modules(
    logs: LogCollector, make_message: MessageFactory, function: str
) -> None:
    result = await run(make_message, logs, function, {"command": "touch /tmp/pwned"})
    assert (result.status, result.reason) == ("failed", "unsupported")
    assert result.error is not None and "not allowed" in result.error


@pytest.mark.parametrize(
    ("function", "kwargs", "fragment"),
    [
        ("worker.builtins.noop", None, "must look like 'pkg.module:function'"),
        ("worker.builtins:", None, "invalid attribute"),
        (":noop", None, "invalid module"),
        ("worker.builtins:_private", None, "private attribute"),
        ("worker.builtins:missing", None, "has no attribute 'missing'"),
        ("tests.worker.sample_tasks_missing:f", None, "no module named"),
        ("tests.worker.sample_tasks:NOT_CALLABLE", None, "is not callable"),
        ("tests.worker.sample_tasks:add", {"c": 1}, "do not fit"),
        ("tests.worker.sample_tasks:add", None, "do not fit"),
        ("worker.builtins:noop", [1], "spec.kwargs must be an object"),
    ],
)
async def test_bad_function_specs(
    logs: LogCollector,
    make_message: MessageFactory,
    function: str,
    kwargs: Any,
    fragment: str,
) -> None:
    policy = ExecutorPolicy(
        python_modules=(*POLICY.python_modules, "tests.worker.sample_tasks_missing")
    )
    result = await run(make_message, logs, function, kwargs, policy=policy)
    assert (result.status, result.reason) == ("failed", "error"), result
    assert result.error is not None and fragment in result.error


async def test_timeout_cancels_async_function(
    logs: LogCollector, make_message: MessageFactory
) -> None:
    executor = PythonExecutor(POLICY)
    message = make_message({"function": "worker.builtins:sleep", "kwargs": {"seconds": 60}})
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(executor.execute(message, logs), timeout=0.2)


async def test_builtins_directly() -> None:
    builtins.noop()
    assert builtins.echo("v", params={"p": 1}) == "v"
    assert builtins.echo(params={"p": 1}) == {"p": 1}
    assert builtins.count_rows() == {"rows": 0}
    await builtins.sleep(0)
    with pytest.raises(ValueError, match="between"):
        await builtins.sleep(-1)
    with pytest.raises(RuntimeError, match="failed"):
        builtins.fail()
