#!/usr/bin/env bash
# Regenerates the TypeScript stubs and the descriptor set from proto/.
#   scripts/proto.sh          regenerate (npm run proto)
#   scripts/proto.sh --check  regenerate, then fail if anything checked in changed
set -euo pipefail
cd "$(dirname "$0")/.."

buf=node_modules/.bin/buf
out=packages/proto/src/gen
descriptor=packages/proto/descriptor/codeq.binpb

echo "proto: lint"
"$buf" lint
echo "proto: generate TypeScript into $out"
rm -rf "$out"
"$buf" generate
echo "proto: descriptor set into $descriptor"
mkdir -p "$(dirname "$descriptor")"
"$buf" build --as-file-descriptor-set -o "$descriptor"
node_modules/.bin/prettier --log-level warn --write "$out"

if [[ "${1:-}" == "--check" ]]; then
  if ! git diff --exit-code --stat -- "$out" "$descriptor" || [[ -n "$(git status --porcelain -- "$out" "$descriptor")" ]]; then
    echo "proto: generated code differs from what is checked in; run 'npm run proto' and commit" >&2
    exit 1
  fi
  echo "proto: generated code is up to date"
fi
