"""The built-in template gallery: useful jobs with a parameter schema (JSON Schema).

A template's ``spec`` is a job spec in which ``{{ name }}`` stands for a parameter (see
``backend.templates.render``); ``${{ ... }}`` is left alone for the secrets syntax. The
parameter values also become the job's ``params``, so tasks read them from
``BATON_PARAMS`` (shell) or ``params`` (python) as well.
"""

from __future__ import annotations

from typing import Any

CRON = {"type": "string", "description": "Cron expression (5 fields, minute first)"}
URL = {"type": "string", "format": "uri", "pattern": "^https?://", "maxLength": 2000}


def _schema(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


BUILTIN: list[dict[str, Any]] = [
    {
        "name": "http-health-check",
        "title": "HTTP health check with alert",
        "description": "Calls a URL on a schedule; when it does not answer as expected, "
        "posts an alert to a webhook (Slack, Teams, PagerDuty Events...).",
        "parameters": _schema(
            {
                "url": {**URL, "title": "URL to check"},
                "expect_status": {
                    "type": "integer",
                    "minimum": 100,
                    "maximum": 599,
                    "default": 200,
                },
                "alert_webhook": {**URL, "title": "Alert webhook URL"},
                "cron": {**CRON, "default": "*/5 * * * *"},
            },
            ["url", "alert_webhook"],
        ),
        "spec": {
            "description": "Health check of {{ url }}",
            "schedule": {"cron": "{{ cron }}"},
            "tasks": [
                {
                    "name": "check",
                    "type": "http",
                    "method": "GET",
                    "url": "{{ url }}",
                    "expect_status": ["{{ expect_status }}"],
                    "timeout_seconds": 30,
                    "retry": {"max_attempts": 2},
                },
                {
                    "name": "alert",
                    "type": "http",
                    "method": "POST",
                    "url": "{{ alert_webhook }}",
                    "depends_on": ["check"],
                    "trigger_rule": "all_failed",
                    "body": {"text": "Health check failed: {{ url }}"},
                },
            ],
        },
    },
    {
        "name": "postgres-backup-s3",
        "title": "PostgreSQL backup to S3-compatible storage",
        "description": "pg_dump, compressed, uploaded with the AWS CLI to any S3-compatible "
        "endpoint (AWS, MinIO, R2...). Needs pg_dump and aws on the worker; give "
        "credentials through the worker's environment or secrets.",
        "parameters": _schema(
            {
                "database_url": {
                    "type": "string",
                    "title": "PostgreSQL URL",
                    "default": "${{ secrets.DATABASE_URL }}",
                },
                "bucket": {"type": "string", "pattern": "^[a-z0-9][a-z0-9.-]{1,62}$"},
                "prefix": {"type": "string", "default": "backups/"},
                "endpoint_url": {
                    "type": "string",
                    "default": "",
                    "description": "Empty for AWS S3",
                },
                "cron": {**CRON, "default": "0 2 * * *"},
            },
            ["bucket"],
        ),
        "spec": {
            "description": "Nightly pg_dump to s3://{{ bucket }}/{{ prefix }}",
            "schedule": {"cron": "{{ cron }}"},
            "concurrency_policy": "forbid",
            "tasks": [
                {
                    "name": "dump-and-upload",
                    "type": "shell",
                    "timeout_seconds": 7200,
                    "env": {
                        "DATABASE_URL": "{{ database_url }}",
                        "ENDPOINT": "{{ endpoint_url }}",
                        "PREFIX": "{{ prefix }}",
                    },
                    "command": 'set -eu; name="$(date -u +%Y%m%dT%H%M%SZ).sql.gz"; '
                    'pg_dump --no-owner "$DATABASE_URL" | gzip | aws s3 cp - '
                    '"s3://{{ bucket }}/$PREFIX$name" '
                    '${ENDPOINT:+--endpoint-url "$ENDPOINT"}; '
                    'echo "uploaded $name"',
                },
            ],
        },
    },
    {
        "name": "file-sync",
        "title": "S3 or rsync sync",
        "description": "Mirrors a source to a destination with `aws s3 sync` (S3-compatible) "
        "or `rsync -a`.",
        "parameters": _schema(
            {
                "tool": {"type": "string", "enum": ["rsync", "s3"], "default": "rsync"},
                "source": {"type": "string", "minLength": 1},
                "destination": {"type": "string", "minLength": 1},
                "cron": {**CRON, "default": "0 * * * *"},
            },
            ["source", "destination"],
        ),
        "spec": {
            "description": "Sync {{ source }} to {{ destination }} ({{ tool }})",
            "schedule": {"cron": "{{ cron }}"},
            "concurrency_policy": "forbid",
            "tasks": [
                {
                    "name": "sync",
                    "type": "shell",
                    "timeout_seconds": 3600,
                    "env": {"SOURCE": "{{ source }}", "DESTINATION": "{{ destination }}"},
                    "command": 'set -eu; if [ "{{ tool }}" = s3 ]; then aws s3 sync "$SOURCE" '
                    '"$DESTINATION"; else rsync -a "$SOURCE" "$DESTINATION"; fi; echo synced',
                },
            ],
        },
    },
    {
        "name": "webhook-relay",
        "title": "Webhook relay",
        "description": "Forwards each run's params as a JSON POST to a target URL: trigger "
        "it from any system with `POST /api/v1/jobs/{id}/runs`; retries with back-off.",
        "parameters": _schema(
            {
                "target_url": {**URL, "title": "Where to relay"},
                "max_attempts": {"type": "integer", "minimum": 1, "maximum": 10, "default": 5},
            },
            ["target_url"],
        ),
        "spec": {
            "description": "Relay to {{ target_url }}",
            "tasks": [
                {
                    "name": "relay",
                    "type": "shell",
                    "timeout_seconds": 60,
                    "retry": {"max_attempts": "{{ max_attempts }}"},
                    "env": {"TARGET_URL": "{{ target_url }}"},
                    "command": "printf '%s' \"$BATON_PARAMS\" | curl -fsS -X POST "
                    "-H 'Content-Type: application/json' --data-binary @- \"$TARGET_URL\"",
                },
            ],
        },
    },
    {
        "name": "fan-out-etl",
        "title": "Fan-out ETL over a file list",
        "description": "Lists the files matching a pattern, processes each in its own task "
        "(for_each, in parallel on the workers), then runs a final load step.",
        "parameters": _schema(
            {
                "directory": {"type": "string", "minLength": 1},
                "pattern": {"type": "string", "default": "*.csv"},
                "process_command": {
                    "type": "string",
                    "default": 'wc -l "$BATON_ITEM"',
                    "description": "Runs once per file, in $BATON_ITEM",
                },
                "load_command": {"type": "string", "default": "echo loaded"},
            },
            ["directory"],
        ),
        "spec": {
            "description": "ETL over {{ directory }}/{{ pattern }}",
            "tasks": [
                {
                    "name": "list",
                    "type": "shell",
                    "env": {"DIR": "{{ directory }}", "PATTERN": "{{ pattern }}"},
                    "command": "python3 -c 'import glob, json, os, sys; "
                    'files = sorted(glob.glob(os.path.join(os.environ["DIR"], '
                    'os.environ["PATTERN"]))); '
                    'json.dump({"files": files}, open(os.environ["BATON_OUTPUT"], "w")); '
                    'print(len(files), "files")\'',
                },
                {
                    "name": "process",
                    "type": "shell",
                    "depends_on": ["list"],
                    "for_each": "tasks.list.output.files",
                    "command": "{{ process_command }}",
                },
                {
                    "name": "load",
                    "type": "shell",
                    "depends_on": ["process"],
                    "command": "{{ load_command }}",
                },
            ],
        },
    },
    {
        "name": "data-quality-check",
        "title": "Data-quality check",
        "description": "Runs a SQL query returning one number and fails (alerting) when it "
        "is below a minimum - row counts, freshness, nulls. Needs psql on the worker.",
        "parameters": _schema(
            {
                "database_url": {"type": "string", "default": "${{ secrets.DATABASE_URL }}"},
                "query": {
                    "type": "string",
                    "minLength": 1,
                    "default": "SELECT count(*) FROM orders "
                    "WHERE created_at > now() - interval '1 day'",
                },
                "minimum": {"type": "integer", "default": 1},
                "alert_webhook": {**URL},
                "cron": {**CRON, "default": "30 7 * * *"},
            },
            ["alert_webhook"],
        ),
        "spec": {
            "description": "Data-quality check: ({{ query }}) >= {{ minimum }}",
            "schedule": {"cron": "{{ cron }}"},
            "tasks": [
                {
                    "name": "check",
                    "type": "shell",
                    "env": {"DATABASE_URL": "{{ database_url }}", "QUERY": "{{ query }}"},
                    "command": 'set -eu; value="$(psql "$DATABASE_URL" -tAc "$QUERY")"; '
                    'echo "value: $value"; [ "$value" -ge {{ minimum }} ]',
                },
                {
                    "name": "alert",
                    "type": "http",
                    "method": "POST",
                    "url": "{{ alert_webhook }}",
                    "depends_on": ["check"],
                    "trigger_rule": "all_failed",
                    "body": {"text": "Data-quality check failed: {{ query }}"},
                },
            ],
        },
    },
    {
        "name": "cleanup-old-files",
        "title": "Cleanup of old files",
        "description": "Deletes files older than N days under a directory (temp files, "
        "old exports, rotated logs) and prints what it removed.",
        "parameters": _schema(
            {
                "directory": {"type": "string", "minLength": 1},
                "days": {"type": "integer", "minimum": 0, "maximum": 3650, "default": 30},
                "cron": {**CRON, "default": "15 3 * * *"},
            },
            ["directory"],
        ),
        "spec": {
            "description": "Delete files older than {{ days }} days in {{ directory }}",
            "schedule": {"cron": "{{ cron }}"},
            "tasks": [
                {
                    "name": "cleanup",
                    "type": "shell",
                    "env": {"DIR": "{{ directory }}"},
                    "command": 'set -eu; find "$DIR" -type f -mtime +{{ days }} -print -delete; '
                    "echo cleanup done",
                },
            ],
        },
    },
    {
        "name": "nightly-report",
        "title": "Nightly report",
        "description": "Builds a report with a command of yours every night and posts it "
        "(its standard output) to a webhook.",
        "parameters": _schema(
            {
                "report_command": {"type": "string", "default": "date -u"},
                "webhook": {**URL},
                "cron": {**CRON, "default": "0 6 * * *"},
                "timezone": {"type": "string", "default": "UTC"},
            },
            ["webhook"],
        ),
        "spec": {
            "description": "Nightly report posted to a webhook",
            "schedule": {"cron": "{{ cron }}", "timezone": "{{ timezone }}"},
            "tasks": [
                {
                    # One task: the report is the command's standard output, posted as
                    # the body. The webhook URL reaches the command through the
                    # environment, never pasted into the command text.
                    "name": "report",
                    "type": "shell",
                    "env": {"WEBHOOK": "{{ webhook }}"},
                    "command": "set -e\n"
                    "report=$(mktemp)\n"
                    "trap 'rm -f \"$report\"' EXIT\n"
                    '(\n{{ report_command }}\n) > "$report"\n'
                    'cat "$report"\n'
                    "python3 -c 'import json, os, sys, urllib.request; "
                    "report = sys.stdin.read(); "
                    'req = urllib.request.Request(os.environ["WEBHOOK"], '
                    'data=json.dumps({"text": report}).encode(), '
                    'headers={"Content-Type": "application/json"}, method="POST"); '
                    "urllib.request.urlopen(req, timeout=30).close(); "
                    'print("report sent:", len(report), "characters")\' < "$report"',
                },
            ],
        },
    },
    {
        "name": "python-function",
        "title": "Python function",
        "description": "Calls a function of a Python module installed on the workers (and "
        "allowed by their BATON_WORKER_PYTHON_MODULES) with the run's params.",
        "parameters": _schema(
            {
                "function": {
                    "type": "string",
                    "pattern": r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$",
                    "default": "worker.builtins:echo",
                },
                "queue": {"type": "string", "default": "default"},
            },
            [],
        ),
        "spec": {
            "description": "Calls {{ function }}",
            "queue": "{{ queue }}",
            "tasks": [{"name": "call", "type": "python", "function": "{{ function }}"}],
        },
    },
    {
        "name": "docker-container",
        "title": "Container task",
        "description": "Runs a container image with arguments on a worker that has a Docker "
        "engine.",
        "parameters": _schema(
            {
                "image": {"type": "string", "minLength": 1, "default": "debian:stable-slim"},
                "args": {
                    "type": "array",
                    "items": {"type": "string"},
                    "default": ["echo", "hello from a container"],
                },
                "queue": {"type": "string", "default": "default"},
            },
            [],
        ),
        "spec": {
            "description": "Runs {{ image }}",
            "queue": "{{ queue }}",
            "tasks": [
                {
                    "name": "container",
                    "type": "docker",
                    "image": "{{ image }}",
                    "command": "{{ args }}",
                }
            ],
        },
    },
]
