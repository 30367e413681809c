#!/usr/bin/env bash
# scripts/test.sh — the whole test suite: install dependencies, build, run every
# unit, integration and system test under ctest (in parallel), then again in an
# AddressSanitizer + UndefinedBehaviorSanitizer build, then short libFuzzer runs
# of the parsers that take outside bytes.  LOOM_TEST_QUICK=1 skips the sanitizer
# build and the fuzzers.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
jobs=$(nproc)
echo "== build (RelWithDebInfo)"
bash scripts/build.sh build
echo "== tests"
(cd build && ctest -j"$jobs" --output-on-failure --timeout 600)
if [ "${LOOM_TEST_QUICK:-0}" = 1 ]; then exit 0; fi
echo "== build with AddressSanitizer + UndefinedBehaviorSanitizer"
bash scripts/build.sh build-asan -DLOOM_SANITIZE=ON
echo "== tests under ASan + UBSan"
(cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
   ctest -j"$jobs" --output-on-failure --timeout 900 -LE fuzz)
echo "== fuzzing (libFuzzer, short runs)"
CC=clang bash scripts/build.sh build-fuzz -DLOOM_FUZZ=ON -DLOOM_TESTS=ON
(cd build-fuzz && ctest --output-on-failure -L fuzz)
