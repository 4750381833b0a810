#!/usr/bin/env bash
# Refreshes vendor/: the npm tarballs of dockerfilelint and its dependencies, exactly as pinned by
# package-lock.json, so that scripts/install-node-tools.sh installs offline (`npm ci --offline`).
# Why vendored: a fresh CI system may reach the npm registry only through a TLS-intercepting proxy
# whose CA it does not trust; these 47 tarballs (~0.8 MB) make the linter independent of that.
# npm still checks every tarball against the lock's sha512 integrity.
#
#   bash tools/dockerfilelint/vendor.sh     (needs the registry; after changing package.json)
set -euo pipefail
cd "$(dirname "$0")"
# Resolve package.json into a fresh lock with registry addresses, then pack every locked package.
rm -rf vendor node_modules package-lock.json
npm install --package-lock-only --no-audit --no-fund --ignore-scripts --loglevel=error
mkdir vendor
/usr/bin/python3 - <<'PY'
import json, subprocess
lock = json.load(open("package-lock.json"))
for path, meta in lock["packages"].items():
    if not path:
        continue
    name = path.split("node_modules/")[-1]
    tgz = subprocess.run(["npm", "pack", "--silent", "--pack-destination", "vendor", f"{name}@{meta['version']}"],
                         check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
    meta["resolved"] = f"file:vendor/{tgz}"
json.dump(lock, open("package-lock.json", "w"), indent=2)
open("package-lock.json", "a").write("\n")
PY
echo "vendor/: $(ls vendor | wc -l) tarballs; commit vendor/ and package-lock.json"
