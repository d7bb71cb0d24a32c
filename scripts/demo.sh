#!/usr/bin/env bash
# The README's first command: installs what it needs, builds, and brings up a
# local codeQ cluster with a demo. Ctrl-C stops every process by its PID.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-deps.sh
npm run build --silent
exec node --enable-source-maps packages/local-cluster/dist/demo.js "$@"
