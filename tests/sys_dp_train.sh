#!/bin/bash
# sys_dp_train.sh — the data-parallel training example (examples/dp_train.c):
# Trainer actors on shards of scikit-learn's digits all-reduce gradients each
# step; the loss must fall every round, every worker must end with the same
# weights bit for bit, and they must match the driver's single-worker run
# within the stated tolerance (dp_train checks all this and exits non-zero
# otherwise; the test reads its report too).  2 workers on the embedded local
# cluster (2 nodes), 3 workers on a 3-node cluster started with `loom start`,
# and 7 workers, more than that cluster's CPUs, refused at once.
# The dataset comes from scripts/get_digits.sh (apt-get download of Debian's
# python3-sklearn, cached); without a reachable Debian mirror the test is
# skipped.
set -euo pipefail
. "$(dirname "$0")/lib.sh" "$@"

DP=$BUILD/bin/dp_train
DPLIB=$BUILD/lib/libloom_dp_examples.so
STEPS=60
export TMPDIR=$T/tmp
mkdir -p "$TMPDIR"

# ---- the dataset ----------------------------------------------------------------
GRC=0
DATA=$(timeout -k 5 120 "$SRC/scripts/get_digits.sh" 2>"$T/get.err") || GRC=$?
if [ "$GRC" -eq 2 ]; then
    sed 's/^/# /' "$T/get.err"
    skip "dp_train: no digits.csv and apt cannot download python3-sklearn (no Debian mirror reachable)"
    finish
fi
check "scripts/get_digits.sh prints the path of digits.csv: $DATA" test "$GRC" -eq 0 -a -s "$DATA"
[ "$GRC" -eq 0 ] || { sed 's/^/  /' "$T/get.err"; finish; }
check "  ... 1797 rows" test "$(wc -l <"$DATA")" -eq 1797
check "  ... and again, from its cache, the same path" \
    test "$("$SRC/scripts/get_digits.sh" 2>/dev/null)" = "$DATA"

# check_run TAG WORKERS NODES: the report of a distributed run in $OUT
check_run()
{
    local tag=$1 n=$2 nodes=$3 diff acc
    check "$tag: exits 0" test "$RC" -eq 0
    [ "$RC" -eq 0 ] || show_capture
    check "$tag: the Trainers spread over $nodes nodes" grep -q "($nodes distinct)" <<<"$OUT"
    check "$tag: $STEPS steps in 10 rounds" test "$(grep -c '^  round .* s$' <<<"$OUT")" -eq 10
    check "$tag: the loss falls every round" grep -q 'falls every round' <<<"$OUT"
    check "$tag: the $n workers' weights are bitwise identical" \
        grep -q "the $n workers' weights are bitwise identical" <<<"$OUT"
    diff=$(sed -nE 's/.*max \|w_dist - w_single\| = ([^ ]+) .*/\1/p' <<<"$OUT")
    check "$tag: max |w_dist - w_single| = $diff <= 1e-9" \
        awk -v d="${diff:-x}" 'BEGIN { exit !(d != "x" && d + 0 <= 1e-9) }'
    acc=$(sed -nE 's/.*test accuracy: distributed ([0-9.]+),.*/\1/p' <<<"$OUT")
    check "$tag: test accuracy $acc >= 0.85" \
        awk -v a="${acc:-0}" 'BEGIN { exit !(a + 0 >= 0.85) }'
    check "$tag: prints OK" grep -q '^dp_train: OK$' <<<"$OUT"
}

# ---- single-worker, no cluster ----------------------------------------------------
capture timeout 120 "$DP" --single-only --steps "$STEPS" --data "$DATA"
check "dp_train --single-only exits 0" test "$RC" -eq 0
[ "$RC" -eq 0 ] || show_capture
check "  ... the loss falls every round" grep -q 'falls every round' <<<"$OUT"
capture timeout 120 "$DP" --single-only --steps "$STEPS" --lr 4 --data "$DATA"
check "dp_train --single-only --lr 4 (unstable) fails: the loss does not fall" \
    grep -q 'did NOT fall' <<<"$OUT"
check "  ... exit status 1" test "$RC" -eq 1
capture timeout 120 "$DP" --single-only --data "$T/nonexistent.csv"
check "dp_train with a missing dataset exits 2" test "$RC" -eq 2

# ---- 2 workers, embedded local cluster of 2 nodes ------------------------------------
capture timeout 240 "$DP" --workers 2 --nodes 2 --steps "$STEPS" --data "$DATA" --lib "$DPLIB"
printf '%s\n' "$OUT" | sed 's/^/  /'
check_run "dp_train --workers 2 (local)" 2 2
check "the local cluster cleaned up its state" test -z "$(ls -A "$TMPDIR")"
check "  ... and left no process behind" wait_until 10 no_procs_of "$TMPDIR"

# ---- 3 workers, a 3-node cluster started with loom start --------------------------------
D=$T/st
start_three_nodes "$D"

capture timeout 240 "$DP" --workers 3 --steps "$STEPS" --address "$ADDR" --data "$DATA" --lib "$DPLIB"
printf '%s\n' "$OUT" | sed 's/^/  /'
check_run "dp_train --workers 3 (3 nodes)" 3 3

# 7 Trainers of a CPU each cannot all run on 3 nodes of 2 CPUs: the driver
# reserves the gang first, so it fails at once with the reason instead of
# six Trainers waiting for a seventh that never starts
capture timeout 60 "$DP" --workers 7 --steps 10 --address "$ADDR" --data "$DATA" --lib "$DPLIB"
check "dp_train --workers 7 on 6 CPUs exits 1" test "$RC" -eq 1
check "  ... saying the placement group is infeasible" grep -q 'infeasible' <<<"$ERR"
[ "$RC" -eq 1 ] || show_capture

finish
