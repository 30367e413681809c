#!/bin/bash
# sys_examples.sh — the example drivers give the right answers: tree_reduce's
# sum, and wordcount's totals and top words checked against a count made here
# with tr/sort/uniq (same word definition: runs of ASCII letters, lowercased).
# Each runs twice: on the embedded local cluster the driver starts itself
# (loom_connect("local")), and against a 3-node cluster started with
# `loom start` (--address).
set -euo pipefail
. "$(dirname "$0")/lib.sh" "$@"

TREE=$BUILD/bin/tree_reduce
WC=$BUILD/bin/wordcount
LIC=/usr/share/common-licenses
# the embedded cluster puts its state under $TMPDIR: keep it in ours
export TMPDIR=$T/tmp
mkdir -p "$TMPDIR"

# ---- the independent count -------------------------------------------------
cat "$LIC"/* | tr -c 'A-Za-z' '\n' | tr 'A-Z' 'a-z' | grep -v '^$' | sort | uniq -c |
    sort -k1,1nr -k2,2 >"$T/expect.txt"
WANT_TOTAL=$(awk '{s += $1} END {print s}' "$T/expect.txt")
WANT_DISTINCT=$(wc -l <"$T/expect.txt")
WANT_FILES=$(ls "$LIC" | wc -l)
head -10 "$T/expect.txt" | awk '{print $1, $2}' >"$T/expect_top.txt"
echo "# expected: $WANT_FILES files, $WANT_TOTAL words, $WANT_DISTINCT distinct"

# check_wordcount TAG OUTPUT_FILE
check_wordcount()
{
    local tag=$1 out=$2 line
    line=$(grep '^wordcount:' "$out" || true)
    check "$tag: summary line: $line" test -n "$line"
    local files total distinct
    files=$(sed -E 's/^wordcount: ([0-9]+) files.*/\1/' <<<"$line")
    total=$(sed -E 's/.* ([0-9]+) words.*/\1/' <<<"$line")
    distinct=$(sed -E 's/.* ([0-9]+) distinct.*/\1/' <<<"$line")
    check "$tag: $WANT_FILES files read" test "$files" = "$WANT_FILES"
    check "$tag: total $total = $WANT_TOTAL" test "$total" = "$WANT_TOTAL"
    check "$tag: distinct $distinct = $WANT_DISTINCT" test "$distinct" = "$WANT_DISTINCT"
    grep -A10 '^wordcount:' "$out" | tail -n +2 | awk '{print $1, $2}' >"$T/got_top.txt"
    if diff "$T/expect_top.txt" "$T/got_top.txt" >"$T/top.diff"; then
        ok "$tag: the top-10 words and counts match"
    else
        bad "$tag: the top-10 words and counts differ"
        sed 's/^/  /' "$T/top.diff"
    fi
}

# ---- embedded local clusters ---------------------------------------------------
capture timeout 240 "$TREE" --leaves 5000 --nodes 3 --lib "$EXLIB"
echo "  $OUT"
check "tree_reduce --leaves 5000 --nodes 3 (local) exits 0" test "$RC" -eq 0
[ "$RC" -eq 0 ] || show_capture
check "  ... prints 'correct'" grep -q "correct" <<<"$OUT"
check "  ... sum 12502500" grep -q "sum 12502500" <<<"$OUT"

capture timeout 240 "$WC" --nodes 2 --lib "$EXLIB"
printf '%s\n' "$OUT" >"$T/wc_local.txt"
check "wordcount --nodes 2 (local) exits 0" test "$RC" -eq 0
[ "$RC" -eq 0 ] || show_capture
check_wordcount "wordcount (local)" "$T/wc_local.txt"

check "the local clusters cleaned up their state" test -z "$(ls -A "$TMPDIR")"
check "  ... and left no process behind" wait_until 10 no_procs_of "$TMPDIR"

# ---- a cluster started with loom start -----------------------------------------
D=$T/st
start_three_nodes "$D"

capture timeout 240 "$TREE" --leaves 5000 --address "$ADDR" --lib "$EXLIB"
echo "  $OUT"
check "tree_reduce --leaves 5000 --address (3 nodes) exits 0" test "$RC" -eq 0
[ "$RC" -eq 0 ] || show_capture
check "  ... prints 'correct'" grep -q "correct" <<<"$OUT"

capture timeout 240 "$WC" --address "$ADDR" --lib "$EXLIB"
printf '%s\n' "$OUT" >"$T/wc_cluster.txt"
check "wordcount --address (3 nodes) exits 0" test "$RC" -eq 0
[ "$RC" -eq 0 ] || show_capture
check_wordcount "wordcount (3 nodes)" "$T/wc_cluster.txt"

status_json "$D" "$T/status.json"
check "the drivers' work ran: $(json_eval "$T/status.json" 'd["total"]') tasks in all" \
    test "$(json_eval "$T/status.json" 'd["total"]["finished"] >= 9999 + 25')" = True
check "no task failed" test "$(json_eval "$T/status.json" 'd["total"]["failed"]')" = 0
# what is left is the example task library: libraries are kept while the head runs
check "the drivers freed their objects (all but the task library)" wait_until 10 eval \
    'status_json "$D" "$T/status.json" && [ "$(json_eval "$T/status.json" "d[\"objects\"]")" = 1 ]'

finish
