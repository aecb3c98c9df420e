# Baton: `make run` starts everything, `make test` runs every test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench

NODE_MODULES := frontend/node_modules/.package-lock.json

.PHONY: run test test-random test-embedded lint install bench clean promtool browser docker-engine screenshots sandbox onprem-tools test-install bundle

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The dashboard's front-end packages (htmx and its SSE extension) from the npm registry.
$(NODE_MODULES): frontend/package.json frontend/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
	  npm ci --prefix frontend --no-audit --no-fund --loglevel=error; \
	else \
	  echo "npm is not installed: the dashboard works without live updates until it is" >&2; \
	fi

install: $(STAMP) $(NODE_MODULES) sandbox

run: install
	$(BIN)/baton dev

test: install browser docker-engine
	$(BIN)/pytest

# The same suite in a random order (pytest-randomly; `make test` keeps file order). The seed
# is printed at the top; `make test-random SEED=<n>` replays that order.
test-random: install browser
	$(BIN)/pytest -p randomly $(if $(SEED),--randomly-seed=$(SEED))

# promtool (Debian package `prometheus`) checks infra/prometheus and a scraped /metrics in
# tests/metrics; without it those tests skip. Installs it quietly when missing (root,
# apt-get); the package's own Prometheus server is not left running.
promtool:
	@command -v promtool >/dev/null 2>&1 || { \
	  export DEBIAN_FRONTEND=noninteractive; \
	  { apt-get install -y -qq --no-install-recommends prometheus \
	    || { apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus; }; \
	  } >/dev/null 2>&1 \
	  && { systemctl disable --now prometheus >/dev/null 2>&1 || true; } \
	  || echo "promtool is not installed (needs root and apt-get): its tests will skip" >&2; }

# Debian's Chromium for the dashboard's browser tests (tests/web/browser), installed quietly
# when missing (root, apt-get); without it those tests skip and say why.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  export DEBIAN_FRONTEND=noninteractive; \
	  { apt-get install -y -qq --no-install-recommends chromium \
	    || { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium; }; \
	  } >/dev/null 2>&1 \
	  || echo "chromium is not installed (needs root and apt-get): browser tests will skip" >&2; }

# The shell-task sandbox (docs/security.md): bubblewrap, slirp4netns and iptables from Debian,
# and iproute2 (`ip`: the sandbox tests build a network namespace for the egress test),
# installed quietly when missing (root, apt-get). Without them a worker whose sandbox is on
# (the default) refuses shell tasks and says why; the sandbox's tests skip, or fail with
# BATON_REQUIRE_SANDBOX=1 (as .ci/run sets it).
SANDBOX_PACKAGES := bubblewrap slirp4netns iptables iproute2
sandbox:
	@{ command -v bwrap && command -v slirp4netns && PATH="$$PATH:/usr/sbin:/sbin" command -v iptables-restore && PATH="$$PATH:/usr/sbin:/sbin" command -v ip; } >/dev/null 2>&1 || { \
	  export DEBIAN_FRONTEND=noninteractive; \
	  { apt-get install -y -qq --no-install-recommends $(SANDBOX_PACKAGES) \
	    || { apt-get update -qq && apt-get install -y -qq --no-install-recommends $(SANDBOX_PACKAGES); }; \
	  } >/dev/null 2>&1 \
	  || echo "$(SANDBOX_PACKAGES) are not installed (needs root and apt-get): shell tasks are refused by sandboxed workers, sandbox tests skip" >&2; }

# Debian's Docker engine (docker.io) and a static BusyBox (busybox-static) for the docker task
# tests against a real engine (tests/worker/test_docker.py, tests/templates/test_docker_template.py;
# the docker_engine fixture of tests/fixtures/docker_engine.py), installed quietly when missing
# (root, apt-get). The tests start a dockerd of their own (own socket and temp dir) and
# import a BusyBox image, no registry needed; the package's own Docker service is not left
# running. Without them those tests skip and say why.
docker-engine:
	@{ command -v dockerd >/dev/null 2>&1 && dpkg -s busybox-static >/dev/null 2>&1; } || { \
	  export DEBIAN_FRONTEND=noninteractive; \
	  { apt-get install -y -qq --no-install-recommends docker.io busybox-static \
	    || { apt-get update -qq && apt-get install -y -qq --no-install-recommends docker.io busybox-static; }; \
	  } >/dev/null 2>&1 \
	  && { systemctl disable --now docker.service docker.socket >/dev/null 2>&1 || true; } \
	  || echo "docker.io is not installed (needs root and apt-get): docker task tests will skip" >&2; }

# The on-prem stack's tools (docs/onprem.md): Debian's docker.io, docker-compose (1.29) and
# debootstrap, installed quietly when missing (root, apt-get); the package's own Docker
# service is not left running.
onprem-tools: docker-engine
	@{ command -v docker-compose && command -v debootstrap; } >/dev/null 2>&1 || { \
	  export DEBIAN_FRONTEND=noninteractive; \
	  { apt-get install -y -qq --no-install-recommends docker-compose debootstrap \
	    || { apt-get update -qq && apt-get install -y -qq --no-install-recommends docker-compose debootstrap; }; \
	  } >/dev/null 2>&1 \
	  && { systemctl disable --now docker.service docker.socket >/dev/null 2>&1 || true; } \
	  || echo "docker-compose/debootstrap are not installed (needs root and apt-get): the on-prem test will skip" >&2; }

# The on-prem installer end to end (tests/onprem): installs the whole stack under a dockerd
# of its own, runs jobs through the TLS proxy, kills a scheduler, restarts, backs up,
# restores and upgrades, then removes everything. About 7 minutes with the images cached
# (~/.cache/baton-onprem); a source change adds about 3 (Baton's image), the first build 8.
test-install: install onprem-tools
	BATON_TEST_ONPREM=1 $(BIN)/pytest -q tests/onprem

# The offline bundle for air-gapped sites: dist/baton-onprem-<version>.tar.gz holds the
# images (`docker save`), the compose file, its configuration and the installer. Needs a
# Docker engine (DOCKER_HOST) to build the images in.
bundle: $(STAMP)
	BATON_PYTHON=$(BIN)/python scripts/onprem/baton-onprem bundle

# The suite against the embedded PostgreSQL and Redis a machine without them gets, less the
# parts whose outcome cannot depend on the servers' versions: pure code (kernel, the
# import contract), HTML rendering over the same services, the CLI client over the same
# API, input fuzzing refused before any query, and promtool. `make test-embedded FULL=1`
# runs everything (what `make test` does on a machine with neither server).
EMBEDDED_SKIP := tests/web tests/test_openapi_fuzz.py tests/test_routes.py \
	tests/test_routes_422.py tests/client tests/kernel tests/metrics tests/test_layers.py
test-embedded: install browser docker-engine
	env -u BATON_TEST_DATABASE_URL -u BATON_TEST_REDIS_URL $(BIN)/pytest -q \
	  $(if $(FULL),,$(addprefix --ignore=,$(EMBEDDED_SKIP)))

lint: $(STAMP)
	$(BIN)/ruff check kernel backend worker migrations tests bench scripts baton_client
	$(BIN)/mypy kernel backend worker baton_client
	$(BIN)/python scripts/check_layers.py  # the import contract (docs/architecture.md)
	$(BIN)/python scripts/check_tests.py  # the test suite's rules (docs/architecture.md)

$(BENCH_STAMP): $(STAMP) pyproject.toml
	@$(BIN)/pip install --quiet -e '.[dev,bench]' >&2
	@touch $(BENCH_STAMP)

# Baton vs Celery and Dramatiq on this machine (~40 min at full size; BATON_BENCH_SCALE=0.1
# for a quick run, ~11 min). stdout: one JSON line per scenario and system; refreshes docs/benchmarks.md.
bench: $(BENCH_STAMP)
	@$(BIN)/python -m bench.run

# docs/screenshots/*.png: the dashboard's main pages on a seeded demo tenant, in Chromium.
screenshots: install browser
	$(BIN)/python scripts/screenshots.py

clean:
	rm -rf $(VENV) .baton-data frontend/node_modules
