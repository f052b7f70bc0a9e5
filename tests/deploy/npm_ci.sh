#!/usr/bin/env bash
# Installs the deploy tests' npm tooling (tests/deploy/package.json, pinned
# by package-lock.json) into DIR with `npm ci`, once per lock file: ctest's
# fixture for validate_manifests.js. Keeps node_modules out of the source
# tree.
#   npm_ci.sh DIR
set -euo pipefail
src="$(cd "$(dirname "$0")" && pwd)"
dest="${1:?usage: npm_ci.sh DIR}"
mkdir -p "$dest"
stamp="$dest/node_modules/.linserve-package-lock.json"
if [[ -f "$stamp" ]] && cmp -s "$src/package-lock.json" "$stamp"; then
  echo "npm_ci: $dest is up to date with tests/deploy/package-lock.json"
  exit 0
fi
cp "$src/package.json" "$src/package-lock.json" "$dest/"
npm ci --prefix "$dest" --no-audit --no-fund
cp "$src/package-lock.json" "$stamp"
echo "npm_ci: installed tests/deploy/package-lock.json into $dest"
