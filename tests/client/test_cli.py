"""The ``baton`` client, run as a subprocess against a running Baton: login, jobs
apply/diff/list/get/export/delete, runs trigger --wait --follow and friends, --output."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from httpx import AsyncClient

from tests.client.helpers import ROOT, Cli
from tests.fixtures.factories import Account, create_api_token
from tests.fixtures.waiting import eventually


def shell_job(name: str, command: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "description": "from git",
        "tasks": [{"name": "step", "type": "shell", "command": command}],
        **extra,
    }


def write(directory: Path, spec: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def suffix() -> str:
    return uuid.uuid4().hex[:8]


async def test_login_saves_a_private_profile(cli: Cli) -> None:
    refused = await cli("login", "--url", cli.url, "--token", "bat_not-a-token")
    assert refused.code == 1
    assert "401" in refused.err
    assert not (cli.config_dir / "config.json").exists()

    not_yet = await cli("jobs", "list")
    assert not_yet.code == 1 and "baton login" in not_yet.err

    await cli.login()
    path = cli.config_dir / "config.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    saved = json.loads(path.read_text())
    assert saved["profiles"]["default"] == {"url": cli.url, "token": cli.token}
    listed = await cli("jobs", "list", "-o", "json")
    assert listed.code == 0, listed
    assert json.loads(listed.out) == []

    # A named profile, and the environment overriding the file.
    named = await cli("login", "--url", cli.url, "--token", cli.token, "--profile", "ci")
    assert named.code == 0, named
    assert (await cli("--profile", "ci", "jobs", "list")).code == 0
    unknown = await cli("--profile", "nope", "jobs", "list")
    assert unknown.code == 1 and "No profile 'nope'" in unknown.err, unknown
    overridden = await cli("jobs", "list", env={"BATON_TOKEN": "bat_wrong"})
    assert overridden.code == 1, overridden
    assert overridden.err.strip() == "Error: Malformed token (HTTP 401)", overridden


async def test_apply_a_directory(cli: Cli, tmp_path: Path) -> None:
    await cli.login()
    repo = tmp_path / "jobs"
    first, second = f"etl-{suffix()}", f"report-{suffix()}"
    write(repo, shell_job(first, "echo one"))
    write(repo / "nested", shell_job(second, "echo two"))
    source = ["--managed-by", f"git:acme/{suffix()}"]

    applied = await cli("jobs", "apply", "-f", str(repo), *source)
    assert applied.code == 0, applied
    assert "created" in applied.out and "Applied: 2 created" in applied.out

    again = await cli("jobs", "apply", "-f", str(repo), *source, "-o", "json")
    assert again.code == 0, again
    assert {c["action"] for c in json.loads(again.out)["changes"]} == {"unchanged"}

    write(repo, shell_job(first, "echo one, changed"))
    updated = await cli("jobs", "apply", "-f", str(repo), *source, "-o", "json")
    result = json.loads(updated.out)
    assert result["summary"] == {"updated": 1, "unchanged": 1}
    [change] = [c for c in result["changes"] if c["action"] == "updated"]
    assert change["name"] == first and (change["from_version"], change["to_version"]) == (1, 2)

    # Dry-run diff of a removal with prune: shown, not done.
    (repo / "nested" / f"{second}.yaml").unlink()
    diff = await cli("jobs", "diff", "-f", str(repo), *source, "--prune", "--exit-code")
    assert diff.code == 2, diff
    assert "deleted" in diff.out and "-name: " + second in diff.out
    assert "Plan: 1 deleted, 1 unchanged" in diff.out
    still = await cli("jobs", "get", second, "-o", "json")
    assert still.code == 0 and json.loads(still.out)["managed_by"] == source[1]

    no_prune = await cli("jobs", "apply", "-f", str(repo), *source)
    assert no_prune.code == 0 and "Up to date: 1 unchanged" in no_prune.out
    pruned = await cli("jobs", "apply", "-f", str(repo), *source, "--prune")
    assert pruned.code == 0 and "Applied: 1 deleted" in pruned.out
    gone = await cli("jobs", "get", second)
    assert gone.code == 1 and "No job named" in gone.err

    clean = await cli("jobs", "diff", "-f", str(repo), *source, "--prune", "--exit-code")
    assert clean.code == 0, clean


async def test_apply_refuses_bad_files_and_specs(cli: Cli, tmp_path: Path) -> None:
    await cli.login()
    repo = tmp_path / "bad"
    write(repo, {"name": f"broken-{suffix()}", "tasks": []})
    refused = await cli("jobs", "apply", "-f", str(repo))
    assert refused.code == 1
    assert "jobs.0.tasks" in refused.err
    (repo / "garbage.yaml").write_text("name: [unclosed")
    assert (await cli("jobs", "apply", "-f", str(repo))).code == 1
    assert (await cli("jobs", "apply", "-f", str(tmp_path / "missing"))).code == 1


async def test_trigger_wait_follow_and_exit_codes(
    cli: Cli, tmp_path: Path, running_worker: object
) -> None:
    await cli.login()
    ok, bad = f"ok-{suffix()}", f"bad-{suffix()}"
    repo = tmp_path / "jobs"
    write(repo, shell_job(ok, 'echo "hello $GREETING"; echo second line'))
    write(repo, shell_job(bad, "echo about to fail; exit 3"))
    assert (await cli("jobs", "apply", "-f", str(repo))).code == 0

    passed = await cli("runs", "trigger", ok, "--wait", "--follow", "-p", "greeting=world")
    assert passed.code == 0, passed
    assert "[step] hello" in passed.out and "[step] second line" in passed.out
    assert "succeeded" in passed.err

    failed = await cli("runs", "trigger", bad, "--wait", "--follow")
    assert failed.code == 1, failed
    assert "[step] about to fail" in failed.out
    assert "failed" in failed.err

    waited = await cli("runs", "trigger", ok, "--wait", "-o", "json")
    assert waited.code == 0, waited
    run = json.loads(waited.out)
    assert run["status"] == "succeeded"

    logs = await cli("runs", "logs", run["id"])
    assert logs.code == 0 and "[step] second line" in logs.out
    detail = await cli("runs", "get", run["id"], "-o", "yaml")
    assert yaml.safe_load(detail.out)["tasks"][0]["name"] == "step"
    listed = await cli("runs", "list", "--job", ok, "-o", "json")
    assert json.loads(listed.out)[0]["id"] == run["id"]

    failed_runs = await cli("runs", "list", "--job", bad, "-o", "json")
    failed_id = json.loads(failed_runs.out)[0]["id"]
    rerun = await cli("runs", "rerun", failed_id, "--from-failed", "--wait")
    assert rerun.code == 1, rerun

    queued = await cli("runs", "trigger", ok, "-o", "json", env={"BATON_OUTPUT": "json"})
    cancelled = await cli("runs", "cancel", json.loads(queued.out)["id"], "-o", "json")
    assert cancelled.code in (0, 1)  # it may have finished already: then a clear 409
    if cancelled.code == 1:
        assert "409" in cancelled.err


@pytest.mark.parametrize("output", ["table", "json", "yaml"])
async def test_every_output_format(cli: Cli, tmp_path: Path, output: str) -> None:
    await cli.login()
    name = f"fmt-{suffix()}"
    write(tmp_path / "jobs", shell_job(name, "echo hi"))
    assert (await cli("jobs", "apply", "-f", str(tmp_path / "jobs"))).code == 0

    listed = await cli("jobs", "list", "-o", output)
    got = await cli("jobs", "get", name, "-o", output)
    runs = await cli("runs", "list", "--job", name, "-o", output)
    for result in (listed, got, runs):
        assert result.code == 0, result
    if output == "json":
        assert json.loads(listed.out)[0]["name"] == name
        assert json.loads(got.out)["spec"]["tasks"][0]["command"] == "echo hi"
        assert json.loads(runs.out) == []
    elif output == "yaml":
        assert yaml.safe_load(listed.out)[0]["name"] == name
        assert yaml.safe_load(got.out)["spec"]["name"] == name
        assert yaml.safe_load(runs.out) == []
    else:
        assert name in listed.out and "current_version" in listed.out
        assert name in got.out and "step" in got.out
        assert "status" in runs.out


async def test_export_then_delete(cli: Cli, tmp_path: Path) -> None:
    await cli.login()
    name = f"exp-{suffix()}"
    write(tmp_path / "jobs", shell_job(name, "echo exported"))
    assert (await cli("jobs", "apply", "-f", str(tmp_path / "jobs"))).code == 0
    exported = await cli("jobs", "export", name)
    assert yaml.safe_load(exported.out)["tasks"][0]["command"] == "echo exported"

    out = tmp_path / "exported"
    assert (await cli("jobs", "export", "-d", str(out))).code == 0
    assert yaml.safe_load((out / f"{name}.yaml").read_text())["name"] == name

    assert (await cli("jobs", "delete", name)).code == 1, "asks first; no answer is no"
    deleted = await cli("jobs", "delete", name, "--yes")
    assert deleted.code == 0, deleted
    assert (await cli("jobs", "get", name)).code == 1


async def test_a_refusal_is_a_clear_error(cli: Cli) -> None:
    await cli.login()
    refused = await cli("tokens", "list")
    assert refused.code == 1
    assert "may not tokens:read (HTTP 403)" in refused.err


async def test_templates(cli: Cli, tmp_path: Path, running_worker: object) -> None:
    await cli.login()
    listed = await cli("templates", "list", "-o", "json")
    assert {"cleanup-old-files", "http-health-check"} <= {t["name"] for t in json.loads(listed.out)}
    shown = await cli("templates", "show", "cleanup-old-files")
    assert shown.code == 0 and "days" in shown.out and "30" in shown.out

    name = f"tpl-{suffix()}"
    (tmp_path / "data").mkdir()
    dry = await cli(
        "templates",
        "use",
        "cleanup-old-files",
        name,
        "-p",
        f"directory={tmp_path / 'data'}",
        "--dry-run",
    )
    assert dry.code == 0, dry
    assert yaml.safe_load(dry.out)["params"]["days"] == 30
    made = await cli(
        "templates",
        "use",
        "cleanup-old-files",
        name,
        "-p",
        f"directory={tmp_path / 'data'}",
        "-p",
        "days=7",
    )
    assert made.code == 0 and f"created job {name}" in made.out
    ran = await cli("runs", "trigger", name, "--wait", "--follow")
    assert ran.code == 0 and "cleanup done" in ran.out

    saved = await cli("templates", "save", name, f"mine-{suffix()}", "-o", "json")
    assert saved.code == 0, saved
    assert json.loads(saved.out)["parameters"]["properties"]["days"]["default"] == 7
    bad = await cli("templates", "use", "cleanup-old-files", f"x-{suffix()}", "-p", "days=1")
    assert bad.code == 1 and "params.directory" in bad.err


async def test_schedules_next_and_ticks(cli: Cli, tmp_path: Path) -> None:
    await cli.login()
    name = f"cron-{suffix()}"
    spec = shell_job(name, "echo tick", schedule={"cron": "0 3 * * *", "timezone": "UTC"})
    write(tmp_path / "jobs", spec)
    assert (await cli("jobs", "apply", "-f", str(tmp_path / "jobs"))).code == 0
    upcoming = await cli("schedules", "next", name, "--count", "3", "-o", "json")
    assert upcoming.code == 0, upcoming
    fires = json.loads(upcoming.out)
    assert len(fires["items"]) == 3 and "03:00:00" in json.dumps(fires["items"][0])
    ticks = await cli("schedules", "ticks", name, "-o", "yaml")
    assert ticks.code == 0 and yaml.safe_load(ticks.out) == []
    manual = f"manual-{suffix()}"
    write(tmp_path / "more", shell_job(manual, "echo hi"))
    assert (await cli("jobs", "apply", "-f", str(tmp_path / "more"))).code == 0
    table = await cli("schedules", "next", name)
    assert table.code == 0 and "next fires (UTC)" in table.out
    assert (await cli("schedules", "next", manual)).code == 1


async def test_tokens_with_an_admin_token(cli: Cli, client: AsyncClient, owner: Account) -> None:
    admin = await create_api_token(client, owner, "admin")
    env = {"BATON_URL": cli.url, "BATON_TOKEN": str(admin["token"])}  # no profile at all
    created = await cli("tokens", "create", "deploy", "--role", "viewer", "-o", "json", env=env)
    assert created.code == 0, created
    token = json.loads(created.out)
    assert token["token"] and token["role"] == "viewer"
    listed = await cli("tokens", "list", "-o", "json", env=env)
    assert token["id"] in {t["id"] for t in json.loads(listed.out)}
    assert "token" not in json.loads(listed.out)[0], "secrets are never listed"
    assert (await cli("tokens", "delete", token["id"], env=env)).code == 0
    listed = await cli("tokens", "list", "-o", "json", env=env)
    [revoked] = [t for t in json.loads(listed.out) if t["id"] == token["id"]]
    assert revoked["revoked_at"] is not None
    refused = await cli("jobs", "list", env={**env, "BATON_TOKEN": token["token"]})
    assert refused.code == 1 and "401" in refused.err


def test_the_client_never_imports_the_server() -> None:
    """The client must run where only its own dependencies are installed."""
    probe = (
        "import sys; sys.modules['backend'] = None\n"  # any `import backend...` now fails
        "from baton_client.main import app\n"
        "server = ('backend', 'fastapi', 'sqlalchemy', 'sqlmodel', 'asyncpg', 'redis')\n"
        "heavy = [m for m, module in sys.modules.items()\n"
        "         if module is not None and m.split('.')[0] in server]\n"
        "assert heavy == [], heavy\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


async def test_server_commands_still_answer(cli: Cli) -> None:
    helped = await cli("db", "--help")
    assert helped.code == 0 and "upgrade" in helped.out
    top = await cli("--help")
    assert "jobs" in top.out and "dev, api, scheduler, worker, db, redis," in top.out


async def test_progress_is_shown_only_on_a_terminal(
    cli: Cli, tmp_path: Path, running_worker: object
) -> None:
    """A spinner on stderr while `runs trigger --wait`, `runs rerun --wait` and `jobs apply`
    wait, when stderr is a terminal (FORCE_COLOR makes rich take the pipe for one); piped
    stderr stays clean."""
    await cli.login()
    terminal = {"FORCE_COLOR": "1", "TERM": "xterm"}
    name = f"spin-{suffix()}"
    write(tmp_path / "jobs", shell_job(name, "echo spun"))

    applied = await cli("jobs", "apply", "-f", str(tmp_path / "jobs"), env=terminal)
    assert applied.code == 0, applied
    assert "applying 1 changes" in applied.err and "\x1b[?25l" in applied.err

    waited = await cli("runs", "trigger", name, "--wait", "-o", "json", env=terminal)
    assert waited.code == 0, waited
    run_id = json.loads(waited.out)["id"]
    assert f"run {run_id}: " in waited.err and "\x1b[?25l" in waited.err

    rerun = await cli("runs", "rerun", run_id, "--wait", "-o", "json", env=terminal)
    assert rerun.code == 0, rerun
    assert f"run {json.loads(rerun.out)['id']}: " in rerun.err

    # Not a terminal: nothing but the documents on stdout, nothing at all on stderr.
    write(tmp_path / "jobs", shell_job(name, "echo spun again"))
    plain_apply = await cli("jobs", "apply", "-f", str(tmp_path / "jobs"), "-o", "json")
    assert plain_apply.code == 0 and plain_apply.err == "", plain_apply
    plain = await cli("runs", "trigger", name, "--wait", "-o", "json")
    assert plain.code == 0 and plain.err == "", plain
    assert json.loads(plain.out)["status"] == "succeeded"
    plain_rerun = await cli("runs", "rerun", run_id, "--wait", "-o", "json")
    assert plain_rerun.code == 0 and plain_rerun.err == "", plain_rerun


def _parsed(result: Any, output: str) -> Any:
    assert result.code == 0, result
    return json.loads(result.out) if output == "json" else yaml.safe_load(result.out)


@pytest.mark.parametrize("output", ["table", "json", "yaml"])
async def test_small_results_in_every_format(
    cli: Cli, client: AsyncClient, owner: Account, tmp_path: Path, output: str
) -> None:
    """login, profiles and the delete commands take --output too."""
    logged = await cli("login", "--url", cli.url, "--token", cli.token, "-o", output)
    profiles = await cli("profiles", "-o", output)
    name = f"small-{suffix()}"
    write(tmp_path / "jobs", shell_job(name, "echo hi"))
    assert (await cli("jobs", "apply", "-f", str(tmp_path / "jobs"))).code == 0
    template = f"mine-{suffix()}"
    assert (await cli("templates", "save", name, template)).code == 0
    deleted_template = await cli("templates", "delete", template, "-o", output)
    job_id = json.loads((await cli("jobs", "get", name, "-o", "json")).out)["id"]
    deleted_job = await cli("jobs", "delete", name, "--yes", "-o", output)
    admin = {"BATON_TOKEN": str((await create_api_token(client, owner, "admin"))["token"])}
    made = await cli("tokens", "create", "short", "--role", "viewer", "-o", "json", env=admin)
    token_id = json.loads(made.out)["id"]
    revoked = await cli("tokens", "delete", token_id, "-o", output, env=admin)

    if output == "table":
        for result in (logged, profiles, deleted_template, deleted_job, revoked):
            assert result.code == 0, result
        assert "Logged in to" in logged.out
        assert "default" in profiles.out and cli.url in profiles.out
        assert cli.token not in profiles.out
        assert f"deleted template {template}" in deleted_template.out
        assert f"deleted {name}" in deleted_job.out
        assert f"revoked {token_id}" in revoked.out
        return
    assert _parsed(logged, output) == {
        "profile": "default",
        "url": cli.url,
        "config": str(cli.config_dir / "config.json"),
    }
    assert _parsed(profiles, output) == [{"name": "default", "url": cli.url, "default": True}]
    assert _parsed(deleted_template, output) == {"deleted": "template", "name": template}
    assert _parsed(deleted_job, output) == {"deleted": "job", "name": name, "id": job_id}
    assert _parsed(revoked, output) == {"revoked": "token", "id": token_id}


def waiting_job(name: str, marker: Path) -> dict[str, Any]:
    """A job that prints a line, waits for ``marker`` to exist, then prints another."""
    return shell_job(
        name, f"echo first; while [ ! -e '{marker}' ]; do sleep 0.1; done; echo second"
    )


async def read_until(process: asyncio.subprocess.Process, text: str) -> list[str]:
    """The lines of ``process``'s stdout up to the first one holding ``text``."""
    assert process.stdout is not None
    lines: list[str] = []
    while not lines or text not in lines[-1]:
        line = await asyncio.wait_for(process.stdout.readline(), timeout=60)
        assert line, f"stdout ended before {text!r}: {lines}"
        lines.append(line.decode())
    return lines


async def run_status(client: AsyncClient, owner: Account, run_id: str) -> str:
    response = await client.get(f"/api/v1/runs/{run_id}", headers=owner.headers)
    assert response.status_code == 200, response.text
    return str(response.json()["status"])


async def test_logs_are_streamed_while_the_run_runs(
    cli: Cli, client: AsyncClient, owner: Account, tmp_path: Path, running_worker: object
) -> None:
    """`runs trigger --follow` prints a line while the run is still running, not at its end."""
    await cli.login()
    name, marker = f"stream-{suffix()}", tmp_path / "go-on"
    write(tmp_path / "jobs", waiting_job(name, marker))
    assert (await cli("jobs", "apply", "-f", str(tmp_path / "jobs"))).code == 0

    process = await cli.spawn("runs", "trigger", name, "--wait", "--follow")
    try:
        assert (await read_until(process, "[step] first"))[-1] == "[step] first\n"
        runs = await client.get("/api/v1/runs", headers=owner.headers)
        [run] = [r for r in runs.json()["items"] if r["status"] not in ("succeeded", "failed")]
        assert await run_status(client, owner, run["id"]) == "running"
    finally:
        marker.touch()
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode == 0, (out, err)
    assert out.decode() == "[step] second\n"
    assert f"run {run['id']} succeeded" in err.decode()


async def test_logs_follow_until_the_run_ends(
    cli: Cli, client: AsyncClient, owner: Account, tmp_path: Path, running_worker: object
) -> None:
    await cli.login()
    name, marker = f"follow-{suffix()}", tmp_path / "go-on"
    write(tmp_path / "jobs", waiting_job(name, marker))
    assert (await cli("jobs", "apply", "-f", str(tmp_path / "jobs"))).code == 0
    triggered = await cli("runs", "trigger", name, "-o", "json")
    run_id = json.loads(triggered.out)["id"]

    process = await cli.spawn("runs", "logs", run_id, "--follow")
    try:
        await read_until(process, "[step] first")
        assert await run_status(client, owner, run_id) == "running"
    finally:
        marker.touch()
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode == 0, (out, err)
    assert out.decode() == "[step] second\n"
    assert f"run {run_id} succeeded" in err.decode()
    # Once the run is over, --follow prints everything and ends.
    again = await cli("runs", "logs", run_id, "--follow")
    assert again.code == 0 and again.out == "[step] first\n[step] second\n", again


async def test_cancel_a_running_run(
    cli: Cli, client: AsyncClient, owner: Account, tmp_path: Path, running_worker: object
) -> None:
    await cli.login()
    name, marker = f"cancel-{suffix()}", tmp_path / "never"
    write(tmp_path / "jobs", waiting_job(name, marker))
    assert (await cli("jobs", "apply", "-f", str(tmp_path / "jobs"))).code == 0
    run_id = json.loads((await cli("runs", "trigger", name, "-o", "json")).out)["id"]
    try:
        await eventually(
            lambda: run_status(client, owner, run_id),
            lambda status: status == "running",
            timeout=60,
            what="the run to start",
        )
        cancelled = await cli("runs", "cancel", run_id, "-o", "json")
        assert cancelled.code == 0, cancelled
        assert json.loads(cancelled.out)["id"] == run_id
        await eventually(
            lambda: run_status(client, owner, run_id),
            lambda status: status == "cancelled",
            timeout=60,
            what="the run to end cancelled",
        )
    finally:
        marker.touch()  # never leave the loop behind, whatever happened
    shown = await cli("runs", "get", run_id, "-o", "json")
    assert json.loads(shown.out)["status"] == "cancelled"
    assert (await cli("runs", "cancel", run_id)).code == 1, "a finished run: a clear 409"


async def test_more_jobs_than_one_apply_takes_are_refused(cli: Cli, tmp_path: Path) -> None:
    """501 specs: refused with a clear message, never split (with --prune a part would
    delete the others' jobs), and nothing is applied."""
    await cli.login()
    repo = tmp_path / "many"
    repo.mkdir()
    documents = [shell_job(f"many-{index:03d}", "echo hi") for index in range(501)]
    (repo / "all.yaml").write_text(yaml.safe_dump_all(documents))
    for command in ("apply", "diff"):
        for extra in ([], ["--prune"]):
            refused = await cli("jobs", command, "-f", str(repo), *extra)
            assert refused.code == 1, refused
            assert "holds 501 jobs; one apply takes at most 500" in refused.err, refused
    listed = await cli("jobs", "list", "-o", "json")
    assert json.loads(listed.out) == []
