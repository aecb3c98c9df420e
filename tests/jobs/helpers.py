"""Job spec examples shared by the spec tests."""

EXAMPLE_YAML = b"""
name: nightly-etl            # unique per tenant
description: optional text
queue: default
params: {date: "2026-01-01"}
timeout_seconds: 3600
concurrency_policy: allow
schedule: {cron: "30 2 * * *", timezone: "Europe/Berlin"}
tasks:
  - name: extract
    type: shell
    command: "echo hello"
    env: {KEY: value}
    timeout_seconds: 60
    retry: {max_attempts: 3, initial_delay: 1, factor: 2, max_delay: 60, jitter: true}
    depends_on: []
    queue: io-bound
  - {name: notify, type: http, depends_on: [extract], method: POST,
     url: "https://example.org/hook", headers: {}, body: null, expect_status: [200, 204]}
  - {name: crunch, type: python, function: "mypkg.tasks:crunch", kwargs: {}, depends_on: [extract]}
  - {name: box, type: docker, image: "alpine:3", command: ["echo", "hi"], env: {}}
"""
