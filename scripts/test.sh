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
mkdir -p .tmp
status=0
npx jest --ci --json --outputFile=.tmp/jest-results.json "$@" || status=$?
# One plain closing line: "tests: N passed, N failed, N skipped".
node -e '
  const r = require("./.tmp/jest-results.json");
  console.log(`tests: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${r.numPendingTests + r.numTodoTests} skipped`);
' 2>/dev/null || true
exit "$status"
