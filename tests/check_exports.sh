#!/usr/bin/env bash
# check_exports.sh BUILD SRC — libloom.so (and libloom_tune.so,
# libloom_shard.so) export only what a public header in include/loom/
# declares: every dynamic symbol they define must be a function declared
# with LOOM_API there (or a task or actor entry point that LOOM_TASK /
# LOOM_ACTOR_* of loom/task.h define: loom_task__*, loom_actor__*), and every
# such declaration must be exported.  And the internal names carry the
# internal prefix: every global symbol defined in the static libraries
# libloom_internal.a and libloom_base.a is either a LOOM_API function or
# starts with loom__ (as uv__ in libuv), so an internal function can never
# be taken for a public one, nor clash with a user's loom_* name.
set -uo pipefail
BUILD=$1
SRC=$2
pass=0
fail=0
ok()  { echo "ok   - $*"; pass=$((pass + 1)); }
bad() { echo "FAIL - $*"; fail=$((fail + 1)); }
declared=$(mktemp)
trap 'rm -f "$declared"' EXIT
grep -hoE '^LOOM_API [^(]*\b(loom_[A-Za-z0-9_]+)\s*\(' "$SRC"/include/loom/*.h |
    sed -E 's/.*\b(loom_[A-Za-z0-9_]+)\s*\($/\1/' | sort -u >"$declared"
echo "# $(wc -l <"$declared") functions declared LOOM_API in include/loom/"
for lib in libloom.so libloom_tune.so libloom_shard.so; do
    so="$BUILD/lib/$lib"
    if [ ! -f "$so" ]; then bad "$so was not built"; continue; fi
    exported=$(nm -D --defined-only "$so" | awk '$2 ~ /^[TDBRVWiu]$/ {print $3}' | sort -u)
    extra=$(comm -23 <(printf '%s\n' "$exported") "$declared" | grep -vE '^loom_(task|actor)__')
    if [ -n "$extra" ]; then
        bad "$lib exports names no public header declares:"; printf '    %s\n' $extra
    else
        ok "$lib exports $(printf '%s\n' "$exported" | grep -c .) names, all declared in include/loom/"
    fi
done
# every LOOM_API function is exported by one of the libraries
all=$(for lib in libloom.so libloom_tune.so libloom_shard.so; do
          nm -D --defined-only "$BUILD/lib/$lib" 2>/dev/null | awk '{print $3}'; done | sort -u)
missing=$(comm -23 "$declared" <(printf '%s\n' "$all"))
if [ -n "$missing" ]; then
    bad "declared LOOM_API but exported by no library:"; printf '    %s\n' $missing
else
    ok "every LOOM_API declaration is exported"
fi
# every global of the static libraries is public (LOOM_API) or internal (loom__*)
for lib in libloom_internal.a libloom_base.a; do
    a="$BUILD/lib/$lib"
    if [ ! -f "$a" ]; then bad "$a was not built"; continue; fi
    globals=$(nm --defined-only -g "$a" 2>/dev/null | awk 'NF == 3 && $2 ~ /^[TDBR]$/ {print $3}' | sort -u)
    unprefixed=$(comm -23 <(printf '%s\n' "$globals") "$declared" | grep -vE '^loom__|^$')
    if [ -n "$unprefixed" ]; then
        bad "$lib defines globals that are neither LOOM_API nor loom__*:"; printf '    %s\n' $unprefixed
    else
        ok "$lib defines $(printf '%s\n' "$globals" | grep -c .) globals: $(printf '%s\n' "$globals" |
            grep -c '^loom__') loom__*, the rest LOOM_API"
    fi
done
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
