#!/usr/bin/env bash
# Installs dependencies, builds, and runs the whole test suite (unit and
# integration tests, through ctest). Exit code is non-zero if anything fails.
# Not yet here: the ThreadSanitizer job (see docs/development.md).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
bash scripts/build.sh build
(cd build && ctest --output-on-failure -j2 --timeout 300)

echo "test.sh: all tests passed in $(( $(date +%s) - start ))s"
