#!/usr/bin/env bash
# check_exports.sh BUILD SRC — libloom.so (and libloom_tune.so,
# libloom_shard.so) export only what a public header in include/loom/
# declares: every dynamic symbol they define must be a function declared
# with LOOM_API there (or a task or actor entry point that LOOM_TASK /
# LOOM_ACTOR_* of loom/task.h define: loom_task__*, loom_actor__*), and every
# such declaration must be exported.
set -uo pipefail
BUILD=$1
SRC=$2
fail=0
declared=$(mktemp)
trap 'rm -f "$declared"' EXIT
grep -hoE '^LOOM_API [^(]*\b(loom_[A-Za-z0-9_]+)\s*\(' "$SRC"/include/loom/*.h |
    sed -E 's/.*\b(loom_[A-Za-z0-9_]+)\s*\($/\1/' | sort -u >"$declared"
echo "# $(wc -l <"$declared") functions declared LOOM_API in include/loom/"
for lib in libloom.so libloom_tune.so libloom_shard.so; do
    so="$BUILD/lib/$lib"
    if [ ! -f "$so" ]; then echo "FAIL - $so was not built"; fail=1; continue; fi
    exported=$(nm -D --defined-only "$so" | awk '$2 ~ /^[TDBRVWiu]$/ {print $3}' | sort -u)
    extra=$(comm -23 <(printf '%s\n' "$exported") "$declared" | grep -vE '^loom_(task|actor)__')
    if [ -n "$extra" ]; then
        echo "FAIL - $lib exports names no public header declares:"; printf '    %s\n' $extra; fail=1
    else
        echo "ok   - $lib exports $(printf '%s\n' "$exported" | grep -c .) names, all declared in include/loom/"
    fi
done
# every LOOM_API function is exported by one of the libraries
all=$(for lib in libloom.so libloom_tune.so libloom_shard.so; do
          nm -D --defined-only "$BUILD/lib/$lib" 2>/dev/null | awk '{print $3}'; done | sort -u)
missing=$(comm -23 "$declared" <(printf '%s\n' "$all"))
if [ -n "$missing" ]; then
    echo "FAIL - declared LOOM_API but exported by no library:"; printf '    %s\n' $missing; fail=1
else
    echo "ok   - every LOOM_API declaration is exported"
fi
[ "$fail" = 0 ] && echo "1 passed, 0 failed" || echo "0 passed, 1 failed"
exit "$fail"
