#!/usr/bin/env bash
# Installs the Guildhall test peer (reference PDS + PLC, on Node 22 from the
# npm registry) into tests/peer/node_modules. Idempotent: runs `npm ci` only
# when node_modules is missing or package-lock.json changed since the last
# successful install (its sha256 is kept in node_modules/.guildhall-lock-hash).
#
# Needs: npm (any Node >= 18 to run npm itself), python3, make, g++ (to
# compile better-sqlite3 against the Node 22 headers), and the npm registry.
# Nothing is downloaded from anywhere else (.npmrc, .prebuild-installrc).
set -euo pipefail

# .npmrc expands ${PWD}: npm must run from this folder.
cd "$(dirname "${BASH_SOURCE[0]}")"
start_ns=$(date +%s%N)

lock_hash=$(sha256sum package-lock.json | cut -d' ' -f1)
stamp=node_modules/.guildhall-lock-hash

if [[ -d node_modules && -f $stamp && "$(cat "$stamp")" == "$lock_hash" && -x node_modules/.bin/node ]]; then
  echo "tests/peer: node_modules up to date (lock ${lock_hash:0:12})"
else
  echo "tests/peer: npm ci (lock ${lock_hash:0:12}); compiling better-sqlite3 takes about a minute"
  rm -f "$stamp"
  # EBADENGINE warnings are expected: npm itself may run on Node 20 while the
  # packages target Node 22, which the scripts run on (node_modules/.bin/node).
  npm ci --no-audit --no-fund --loglevel=error
  echo "$lock_hash" > "$stamp"
fi

# Check that the Node 22 runtime and the native addon actually load.
node_bin=node_modules/.bin/node
version=$("$node_bin" -v)
"$node_bin" -e "require('better-sqlite3')(':memory:').close()" \
  || { echo "tests/peer: better-sqlite3 does not load on $version" >&2; exit 1; }

elapsed_ms=$(( ($(date +%s%N) - start_ns) / 1000000 ))
printf 'tests/peer: ready (node %s) in %d.%03d s\n' "$version" $((elapsed_ms / 1000)) $((elapsed_ms % 1000))
