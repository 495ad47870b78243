#!/usr/bin/env bash
# Installs the Debian 12 packages Shutter needs to build, test and run.
# Idempotent and non-interactive; safe to run on every CI run.
set -euo pipefail

PKGS=(
  build-essential cmake ninja-build ccache pkg-config clang clang-format
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev libspdlog-dev libfmt-dev librocksdb-dev libssl-dev
  libcurl4-openssl-dev prometheus-cpp-dev prometheus
  libgtest-dev libgmock-dev libclang-rt-14-dev
  libcli11-dev libsystemd-dev libtbb-dev systemd
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#PKGS[@]} packages present"
  exit 0
fi

SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
