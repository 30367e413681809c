#!/usr/bin/env bash
# scripts/test.sh — the whole test suite: install dependencies, build, run every
# unit, integration and system test under ctest (in parallel), then again in an
# AddressSanitizer + UndefinedBehaviorSanitizer build, then the tests of the
# threaded parts (ctest label "tsan") in a ThreadSanitizer build — any report
# from any process fails the run — then short libFuzzer runs of the parsers
# that take outside bytes.  LOOM_TEST_QUICK=1 skips the sanitizer builds and
# the fuzzers.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh test
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
echo "== build with ThreadSanitizer"
bash scripts/build.sh build-tsan -DLOOM_TSAN=ON
echo "== the threaded parts' tests under TSan"
bash scripts/tsan_run.sh build-tsan
echo "== fuzzing (libFuzzer, ${LOOM_FUZZ_SECONDS:-60} s per parser)"
CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLOOM_FUZZ=ON >/dev/null
targets=(fuzz_wire fuzz_graph_json fuzz_unpack fuzz_http fuzz_tensor fuzz_safetensors fuzz_tune_spec fuzz_shard_dataset fuzz_hostlist fuzz_jwt)
cmake --build build-fuzz -j"$jobs" --target "${targets[@]}"
fails=0
for t in "${targets[@]}"; do
  corpus=tests/fuzz/corpus/${t#fuzz_}
  scratch=$(mktemp -d)
  if build-fuzz/bin/$t -max_total_time="${LOOM_FUZZ_SECONDS:-60}" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
       -artifact_prefix="build-fuzz/$t-" "$scratch" "$corpus" > "build-fuzz/$t.log" 2>&1; then
    echo "$t: $(grep -o 'stat::number_of_executed_units: [0-9]*' "build-fuzz/$t.log" || tail -n 1 "build-fuzz/$t.log")"
  else
    echo "$t: FOUND A CRASH (see build-fuzz/$t.log)"; tail -n 30 "build-fuzz/$t.log"; fails=$((fails + 1))
  fi
  rm -rf "$scratch"
done
echo "fuzz: $(( ${#targets[@]} - fails )) passed, $fails failed"
[ "$fails" = 0 ]
