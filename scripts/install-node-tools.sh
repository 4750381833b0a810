#!/usr/bin/env bash
# Installs the Node.js tools the tests use, exactly as pinned by the committed lock files and from
# the npm tarballs committed beside them (no network):
# dockerfilelint (tools/dockerfilelint), which tests/deploy runs on every docker/*Dockerfile.
# Idempotent and fast: when node_modules already matches package-lock.json (a stamp holds the lock
# file's checksum), nothing is downloaded. Works as root. Needs npm (scripts/install-deps.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v npm >/dev/null 2>&1; then
  echo "install-node-tools.sh: npm not found; install Node.js and npm first (as root: bash scripts/install-deps.sh," >&2
  echo "  or apt-get install nodejs npm)" >&2
  exit 1
fi

for dir in tools/dockerfilelint; do
  stamp=$dir/node_modules/.loopwatch-lock.sha256
  want=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -d "$dir/node_modules/.bin" ]; then
    echo "==> $dir: up to date"
    continue
  fi
  echo "==> npm ci in $dir"
  # ci: install exactly the lock file (fails if package.json and the lock disagree) into a fresh
  # node_modules; --offline: from the committed tarballs in $dir/vendor (the lock's `resolved`),
  # each checked against the lock's sha512 (see $dir/vendor.sh); --ignore-scripts: nothing pinned
  # here needs an install script.
  (cd "$dir" && npm ci --offline --no-audit --no-fund --ignore-scripts --loglevel=error)
  echo "$want" >"$stamp"
done

tools/dockerfilelint/node_modules/.bin/dockerfilelint --version >/dev/null
