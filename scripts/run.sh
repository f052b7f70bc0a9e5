#!/usr/bin/env bash
# The README's "build and start" command: installs the dependencies, builds,
# and starts linserve on the bundled default model (models/default), gRPC on
# 0.0.0.0:50051 and Prometheus /metrics on 9464. Arguments go to linserve
# (`bash scripts/run.sh --help` lists its flags).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
TARGETS="${TARGETS:-linserve linserve-cli}" bash scripts/build.sh
exec "${BUILD_DIR:-build}/server/linserve" --metrics_port=9464 "$@"
