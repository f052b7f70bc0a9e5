#!/usr/bin/env bash
# The README's "build and start" command: installs the dependencies, builds,
# and starts linserve on the bundled default model.
#
# The server and the default model are not built yet (issues 3 and 4): for
# now this builds everything and runs the kernel benchmark, which prints this
# machine's GEMM peak and memory bandwidth and the kernels against them.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
bash scripts/build.sh
exec "${BUILD_DIR:-build}/bench/kernels_bench" "$@"
