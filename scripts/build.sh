#!/usr/bin/env bash
# Configures and builds linserve (RelWithDebInfo) into a build directory.
# The one build recipe: .ci/run, the README's commands and the Dockerfile all
# use it.
#   scripts/build.sh                         # -> build/
#   BUILD_DIR=build-asan LINSERVE_SANITIZE=address scripts/build.sh
#   TARGETS="server_test" scripts/build.sh   # only these targets
# Extra arguments go to cmake's configure step.
set -euo pipefail
cd "$(dirname "$0")/.."

build_dir="${BUILD_DIR:-build}"
build_type="${BUILD_TYPE:-RelWithDebInfo}"
jobs="${JOBS:-$(nproc)}"

cmake -S . -B "$build_dir" \
  -DCMAKE_BUILD_TYPE="$build_type" \
  -DLINSERVE_SANITIZE="${LINSERVE_SANITIZE:-}" \
  "$@"
if [[ -n "${TARGETS:-}" ]]; then
  # shellcheck disable=SC2086  # a space-separated list of targets
  cmake --build "$build_dir" -j "$jobs" --target ${TARGETS}
else
  cmake --build "$build_dir" -j "$jobs"
fi
