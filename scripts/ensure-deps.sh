#!/usr/bin/env bash
# Installs what codeQ needs on a fresh machine with Node 20, npm and apt:
# the npm dependencies (npm ci, only when the lockfile changed since the last
# install) and redis-server (the KVRocks stand-in for tests and the local
# cluster; Debian's package, only when it is missing).
set -euo pipefail
cd "$(dirname "$0")/.."

stamp=node_modules/.codeq-lockfile.sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
  echo "deps: npm ci"
  npm ci --no-audit --no-fund
  echo "$want" > "$stamp"
fi

if ! command -v redis-server >/dev/null 2>&1 && [[ -z "${CODEQ_REDIS_SERVER_BIN:-}" ]]; then
  echo "deps: installing redis-server (Debian package)"
  sudo=""
  if [[ "$(id -u)" != 0 ]]; then
    command -v sudo >/dev/null 2>&1 || { echo "deps: redis-server is missing and this user cannot install it; install Debian's redis-server package" >&2; exit 1; }
    sudo="sudo"
  fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -q
  $sudo apt-get install -y -q redis-server
fi
