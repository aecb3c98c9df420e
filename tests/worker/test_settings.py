"""A worker's own settings (worker/settings.py): the API's variables, names and defaults,
read without pydantic; clear refusals; the production rules; ``plan`` for the options."""

from __future__ import annotations

import base64
import uuid
from pathlib import Path
from typing import Any

import pytest

from backend.core.settings import Environment, Settings
from backend.processes import worker_config
from kernel.credential import CredentialError, WorkerCredential
from kernel.runtime.env import SettingError
from worker.settings import VARIABLES, WorkerSettings, plan

KEY = base64.b64encode(b"k" * 32).decode()
OTHER_KEY = base64.b64encode(b"o" * 32).decode()
# WorkerSettings field -> the API's Settings field of the same variable.
API_FIELD = {
    "heartbeat_seconds": "heartbeat_seconds",
    "visibility_timeout_seconds": "visibility_timeout_seconds",
    "allow_shell": "worker_allow_shell",
    "allow_docker": "worker_allow_docker",
    "sandbox": "worker_sandbox",
    "sandbox_memory_mb": "worker_sandbox_memory_mb",
    "sandbox_processes": "worker_sandbox_processes",
    "sandbox_cpu_seconds": "worker_sandbox_cpu_seconds",
    "sandbox_file_mb": "worker_sandbox_file_mb",
    "python_modules": "worker_python_modules",
    "http_allowlist": "worker_http_allowlist",
    "transit_key_id": "worker_transit_key_id",
    "metrics_host": "metrics_host",
    "metrics_port": "worker_metrics_port",
    "metrics_tenant_labels": "metrics_tenant_labels",
    "data_dir": "data_dir",
    "redis_url": "redis_url",
    "credential": "worker_credential",
}


def read(**variables: str) -> WorkerSettings:
    return WorkerSettings.from_env({f"BATON_{k.upper()}": v for k, v in variables.items()}, None)


def test_every_variable_is_one_the_api_reads_too() -> None:
    for variable in VARIABLES:
        if variable != "BATON_WORKER_NAME":  # the worker's own
            assert variable.removeprefix("BATON_").lower() in Settings.model_fields, variable


def test_the_defaults_are_the_apis() -> None:
    ours = read()
    assert ours.environment == Settings.model_fields["environment"].default.value == "dev"
    # (test: nothing is written to a data directory)
    theirs = Settings(_env_file=None, environment=Environment.test)  # type: ignore[call-arg]
    for field, api_field in API_FIELD.items():
        value = getattr(theirs, api_field)
        assert getattr(ours, field) == (tuple(value) if isinstance(value, list) else value), field


def test_values_are_read_as_the_api_reads_them() -> None:
    settings = read(
        environment="PRODUCTION",
        redis_url="redis://baton-worker:pw@redis:6379/0",
        worker_allow_shell="yes",
        worker_sandbox="0",
        worker_sandbox_memory_mb="64",
        heartbeat_seconds="0.5",
        worker_python_modules='["worker.builtins", "acme.tasks"]',
        worker_http_allowlist='["10.0.0.0/8"]',
        worker_metrics_port="9102",
        metrics_tenant_labels="acme, globex",
        worker_name="box-1.acme",
        worker_transit_key=KEY,
    )
    assert settings.is_production and settings.allow_shell and not settings.sandbox
    assert (settings.sandbox_memory_mb, settings.heartbeat_seconds) == (64, 0.5)
    assert settings.python_modules == ("worker.builtins", "acme.tasks")
    assert settings.http_allowlist == ("10.0.0.0/8",)
    assert (settings.metrics_port, settings.metrics_tenant_labels) == (9102, ("acme", "globex"))
    config = settings.config(queues=["q"], concurrency=3)
    assert config.name == "box-1.acme" and config.queues == ("q",) and config.concurrency == 3
    assert config.policy.allow_shell and not config.policy.sandbox
    assert not config.policy.docker_confined  # the sandbox setting confines docker too
    assert config.policy.sandbox_limits.memory_mb == 64
    assert config.transit_keys.keys == {"dev": b"k" * 32}


def test_the_same_variables_give_baton_dev_and_a_worker_alone_the_same_config(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    variables = {
        "BATON_ENVIRONMENT": "test",
        "BATON_WORKER_ALLOW_SHELL": "true",
        "BATON_WORKER_SANDBOX_PROCESSES": "64",
        "BATON_WORKER_HTTP_ALLOWLIST": '["127.0.0.1"]',
        "BATON_HEARTBEAT_SECONDS": "2",
        "BATON_WORKER_TRANSIT_KEY": KEY,
        "BATON_WORKER_TRANSIT_PREVIOUS_KEYS": f'{{"old": "{OTHER_KEY}"}}',
    }
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    alone = WorkerSettings.from_env(env_file=None).config(queues=["q"], concurrency=2)
    in_dev = worker_config(Settings(_env_file=None), queues=["q"], concurrency=2)  # type: ignore[call-arg]
    assert alone.policy == in_dev.policy
    assert alone.transit_keys == in_dev.transit_keys
    assert (alone.heartbeat_seconds, alone.visibility_timeout_seconds) == (2.0, 30.0)
    assert (in_dev.heartbeat_seconds, in_dev.visibility_timeout_seconds) == (2.0, 30.0)


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"environment": "staging"}, "BATON_ENVIRONMENT must be one of dev, test, production"),
        ({"worker_sandbox": "maybe"}, "BATON_WORKER_SANDBOX must be true or false"),
        ({"worker_sandbox_memory_mb": "lots"}, "BATON_WORKER_SANDBOX_MEMORY_MB must be a whole"),
        ({"worker_sandbox_memory_mb": "8"}, "BATON_WORKER_SANDBOX_MEMORY_MB must be at least 16"),
        ({"heartbeat_seconds": "0"}, "BATON_HEARTBEAT_SECONDS must be greater than 0"),
        ({"heartbeat_seconds": "nan"}, "BATON_HEARTBEAT_SECONDS must be a finite number"),
        ({"worker_metrics_port": "70000"}, "BATON_WORKER_METRICS_PORT must be at most 65535"),
        ({"worker_python_modules": "acme.tasks"}, "BATON_WORKER_PYTHON_MODULES must be a JSON"),
        ({"worker_http_allowlist": "[1, 2]"}, "BATON_WORKER_HTTP_ALLOWLIST must be a JSON"),
        ({"worker_name": "two words"}, "a worker name (BATON_WORKER_NAME, --name)"),
        ({"worker_transit_key": "c2hvcnQ="}, "BATON_WORKER_TRANSIT_KEY key 'dev' must"),
        (
            {"worker_transit_key": KEY, "worker_transit_previous_keys": "[]"},
            "the previous keys of BATON_WORKER_TRANSIT_KEY are not a JSON object",
        ),
    ],
)
def test_an_unusable_value_is_refused_by_name(variables: dict[str, str], message: str) -> None:
    with pytest.raises(SettingError) as refused:
        read(**variables)
    assert str(refused.value).startswith(message), refused.value
    assert "c2hvcnQ" not in str(refused.value)  # a key's value is never repeated


def test_production_needs_an_authenticated_redis_and_the_transit_key() -> None:
    bare = read(environment="production", redis_url="redis://redis:6379/0")
    with pytest.raises(SettingError) as refused:
        bare.refuse_unsafe()
    assert "BATON_REDIS_URL must name a Redis user and password" in str(refused.value)
    assert "BATON_WORKER_TRANSIT_KEY must be set" in str(refused.value)
    assert "JWT" not in str(refused.value) and "DATABASE" not in str(refused.value)
    read(
        environment="production",
        redis_url="redis://baton-worker:pw@redis:6379/0",
        worker_transit_key=KEY,
    ).refuse_unsafe()
    # A tenant-hosted worker needs only its credential.
    read(environment="production", worker_credential="bwc_x").refuse_unsafe()


def test_the_api_secrets_are_never_needed_nor_read() -> None:
    settings = read(
        environment="production",
        redis_url="redis://baton-worker:pw@redis:6379/0",
        worker_transit_key=KEY,
        jwt_secret="short",  # the API would refuse this; the worker does not read it
        database_url="not a url",
    )
    assert plan(settings).redis_url == "redis://baton-worker:pw@redis:6379/0"


def test_outside_production_the_transit_key_is_the_installations(tmp_path: Path) -> None:
    """A worker beside ``baton dev`` (same data directory) opens what its engine seals."""
    worker = read(environment="dev", data_dir=str(tmp_path)).pool_transit_keys()
    api = Settings(_env_file=None, environment=Environment.dev, data_dir=tmp_path)  # type: ignore[call-arg]
    assert worker.keys == api.worker_transit_keys
    assert (tmp_path / "worker-transit-key").stat().st_mode & 0o777 == 0o600


def test_a_tenant_hosted_worker_writes_no_development_key(tmp_path: Path) -> None:
    credential = _credential("builds")
    started = plan(read(data_dir=str(tmp_path / "data")), credential=credential.encode())
    assert started.config.transit_keys.per_queue
    assert not (tmp_path / "data").exists()


def test_an_env_file_is_read_and_the_environment_wins(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        "# the worker's box\n"
        "export BATON_WORKER_ALLOW_SHELL=true\n"
        "BATON_WORKER_SANDBOX_FILE_MB = 7  # MiB\n"
        "BATON_REDIS_URL='redis://from-file:6379/0'\n"
        "OTHER=ignored\n"
    )
    settings = WorkerSettings.from_env({"baton_redis_url": "redis://from-env:6379/0"}, env_file)
    assert settings.allow_shell and settings.sandbox_file_mb == 7
    assert settings.redis_url == "redis://from-env:6379/0"


def _credential(queue: str) -> WorkerCredential:
    return WorkerCredential(
        str(uuid.uuid4()),
        queue,
        "bw-1",
        "pw",
        "redis://redis.example:6379/0",
        {"t1": base64.urlsafe_b64encode(b"q" * 32).decode().rstrip("=")},
    )


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"queues": ["other"]}, CredentialError, "this credential serves queue 'builds' only"),
        ({"concurrency": 0}, SettingError, "the concurrency must be between 1 and 10000"),
        ({"name": "a/b"}, SettingError, "a worker name"),
    ],
)
def test_plan_refuses_options_that_cannot_work(
    options: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        plan(read(), credential=_credential("builds").encode(), **options)


def test_plan_of_a_tenant_hosted_worker_uses_its_credential() -> None:
    credential = _credential("builds")
    started = plan(
        read(environment="production", redis_url="redis://other:1/0"),
        credential=credential.encode(),
        name="box-7",
    )
    assert started.redis_url == "redis://bw-1:pw@other:1/0"
    assert started.config.queues == ("builds",) and started.config.name == "box-7"
    assert started.config.tenant_id == credential.tenant_id
    assert started.config.transit_keys.keys == {"t1": b"q" * 32}


def test_plan_of_a_shared_worker_needs_a_redis_url() -> None:
    with pytest.raises(SettingError, match="BATON_REDIS_URL is not set"):
        plan(read())


def test_a_credential_without_keys_never_gets_the_pools(tmp_path: Path) -> None:
    bare = WorkerCredential(str(uuid.uuid4()), "builds", "bw-2", "pw", "redis://r:6379/0")
    started = plan(read(worker_transit_key=KEY, data_dir=str(tmp_path)), credential=bare.encode())
    assert started.config.transit_keys.keys == {} and started.config.transit_keys.per_queue
