#!/usr/bin/env bash
# The README's test command: installs what it needs, builds, and runs every test
# (unit and integration, against real redis-server and gRPC servers).
#   bash scripts/test.sh [jest args]
# Set CODEQ_TEST_REDIS_URL=redis://host:port to run the store tests against an
# external server such as a real KVRocks.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-deps.sh
echo "test: build (tests start the services from dist/)"
npm run build --silent
echo "test: jest"
exec npx jest --ci "$@"
