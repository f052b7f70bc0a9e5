#!/usr/bin/env bash
# Fails if any C++ file differs from clang-format's output (.clang-format,
# Google style). Run by ctest as the "format" test; fix with
#   clang-format -i $(git ls-files '*.h' '*.cc')
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t files < <(find common kernels engine server client tests bench tools \
  -name '*.h' -o -name '*.cc' 2>/dev/null | sort)
if ((${#files[@]} == 0)); then
  echo "check-format: no C++ files found" >&2
  exit 1
fi
clang-format --dry-run --Werror "${files[@]}"
echo "check-format: ${#files[@]} files formatted correctly"
