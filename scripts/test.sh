#!/usr/bin/env bash
# Installs the dependencies, builds, and runs every test with ctest: the
# README's test command and what CI runs. Works on a fresh Debian bookworm
# machine as root.
#   bash scripts/test.sh                          # RelWithDebInfo, build/
#   LINSERVE_SANITIZE=address bash scripts/test.sh  # build-address/
#   TEST_FILTER='^server core:' TARGETS=server_core_test LINSERVE_SANITIZE=thread \
#     bash scripts/test.sh                        # a subset (ctest -R)
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh

if [[ -n "${LINSERVE_SANITIZE:-}" ]]; then
  export BUILD_DIR="${BUILD_DIR:-build-${LINSERVE_SANITIZE}}"
fi
export BUILD_DIR="${BUILD_DIR:-build}"
bash scripts/build.sh

cd "$BUILD_DIR"
# Every test binary must be able to list its tests: one that crashes while
# listing (catch_discover_tests) registers no tests at all, and ctest would
# not notice. (A TSan build once crashed at load, in an IFUNC resolver.)
# (Catch2 exits with the number of tests it listed, so the exit status says
# nothing; an empty list does.)
for binary in tests/*_test; do
  [ -x "$binary" ] || continue
  status=0
  names=$("$binary" --list-test-names-only 2>/dev/null) || status=$?
  if [ -z "$names" ]; then
    echo "test.sh: $binary cannot list its tests (exit status $status)" >&2
    exit 1
  fi
done
# --no-tests=error: a filter that matches nothing (or a test binary that
# cannot even list its tests, so that none are registered) fails the run.
ctest --output-on-failure --no-tests=error --timeout 900 \
  -j "${JOBS:-$(nproc)}" \
  ${TEST_FILTER:+-R "$TEST_FILTER"}
