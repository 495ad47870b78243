#!/usr/bin/env bash
# Installs dependencies (idempotent) and builds Shutter with CMake + Ninja.
# Usage: scripts/build.sh [build-dir]   (default: build; Release unless
# CMAKE_BUILD_TYPE is set)
set -euo pipefail
cd "$(dirname "$0")/.."
# ccache (used when installed): paths inside the tree hash relative to it,
# so another clone of the same sources (CI's) reuses the objects.
export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$PWD}"
export CCACHE_NOHASHDIR="${CCACHE_NOHASHDIR:-1}"
BUILD_DIR=${1:-build}
bash scripts/install-deps.sh
cmake -S . -B "$BUILD_DIR" -G Ninja \
  -DCMAKE_BUILD_TYPE="${CMAKE_BUILD_TYPE:-Release}" >/dev/null
ninja -C "$BUILD_DIR" -j"${JOBS:-2}"
