#!/usr/bin/env bash
# scripts/tsan_run.sh [BUILD_DIR] — run the tests labelled "tsan" (the
# gateway, collectives, actors with max_concurrency) in a ThreadSanitizer
# build (-DLOOM_TSAN=ON) and fail on any report.  Every process the tests
# start (head, daemons, executors) writes its reports under one directory
# (TSAN_OPTIONS log_path), so a race in a daemon fails the run even when the
# test's own checks pass.  tests/tsan.supp says what is suppressed and why.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build-tsan}
reports=$(mktemp -d)
trap 'rm -rf "$reports"' EXIT
rc=0
supp=$(pwd)/tests/tsan.supp
(cd "$dir" && TSAN_OPTIONS="log_path=$reports/tsan suppressions=$supp halt_on_error=0 second_deadlock_stack=1" \
    ctest -j"$(nproc)" --output-on-failure --timeout 900 -L tsan) || rc=$?
n=$(find "$reports" -type f | wc -l)
if [ "$n" -gt 0 ]; then
    echo "ThreadSanitizer: $n process(es) reported:"
    grep -h "SUMMARY: ThreadSanitizer" "$reports"/* | sort | uniq -c | sort -rn
    for f in "$reports"/*; do echo "---- $f"; head -n 80 "$f"; done
    rc=1
else
    echo "ThreadSanitizer: no reports"
fi
exit "$rc"
