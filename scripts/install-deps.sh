#!/usr/bin/env bash
# Installs every Debian bookworm package that linserve's build, tests,
# benchmarks and tools need. This is the only place packages are listed:
# README, Dockerfile and .ci/run all call it. Idempotent; run as root (or with
# sudo available). Set LINSERVE_DEPS=runtime to install only what the built
# binaries need at run time (used by the Dockerfile's runtime stage).
set -euo pipefail

build_packages=(
  # Toolchain.
  cmake g++ make pkg-config git ca-certificates
  # gRPC and protobuf (protobuf-compiler-grpc provides grpc_cpp_plugin, which
  # find_package(gRPC CONFIG) requires).
  libgrpc++-dev libgrpc-dev protobuf-compiler protobuf-compiler-grpc libprotobuf-dev
  libabsl-dev
  # oneDNN; its CMake config needs OpenCL headers even for the CPU runtime.
  libdnnl-dev ocl-icd-opencl-dev
  prometheus-cpp-dev
  libsentencepiece-dev
  # config.json and safetensors headers.
  nlohmann-json3-dev
  # Tests and benchmarks.
  catch2 libbenchmark-dev
  # Format check.
  clang-format
  # PyTorch reference implementation (tools/reference), for /usr/bin/python3.
  python3 python3-numpy python3-torch
  # Default model's corpus and tokenizer trainer (tools/train); matplotlib
  # draws its loss curve.
  bible-kjv bible-kjv-text sentencepiece python3-matplotlib
  # Operations tests (tests/deploy): promtool and a Prometheus server, YAML
  # for the Python checks, node and npm for the Kubernetes schema validators.
  prometheus python3-yaml nodejs npm
)

runtime_packages=(
  libgrpc++1.51 libprotobuf32 libdnnl2 libprometheus-cpp-core1.0
  libprometheus-cpp-pull1.0 libsentencepiece0 libabsl20220623 libgomp1
  ca-certificates
)

if [[ "${LINSERVE_DEPS:-build}" == "runtime" ]]; then
  packages=("${runtime_packages[@]}")
else
  packages=("${build_packages[@]}")
fi

sudo_cmd=()
if [[ "$(id -u)" != 0 ]]; then
  sudo_cmd=(sudo)
fi

missing=()
for p in "${packages[@]}"; do
  # A node from elsewhere (NodeSource's nodejs bundles npm and conflicts with
  # Debian's npm package) already provides npm.
  if [[ "$p" == npm ]] && command -v npm >/dev/null; then
    continue
  fi
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]} packages already installed"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -q
"${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
