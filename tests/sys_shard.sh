#!/bin/bash
# sys_shard.sh — `loom infer` on a real cluster: a registered MLP over a
# 100,000-row dataset (.npy) in shards; the outputs are complete and match a
# float64 forward pass done with NumPy; the second run takes every shard from
# the cache, byte for byte, and is many times faster; a third run into the same
# directory takes them from its earlier output; CSV, JSON Lines and a
# directory of .npy files give the same results (and hit the cache where
# their shards hold the same rows); a node daemon killed midway still leaves
# complete and correct outputs; bad input gets clear errors.
set -euo pipefail
. "$(dirname "$0")/lib.sh" "$@"

need_cmd curl
if ! "$PY" -c 'import numpy' 2>/dev/null; then
    skip "python3-numpy is not installed (scripts/deps.sh installs it)"
    finish
    exit 0
fi
DATA="$PY $SRC/tests/shard_data.py"
WIDTHS=${LOOM_SHARD_WIDTHS:-64,3072,3072,10}

D=$T/state
use_state_dir "$D"
capture "$LOOM" start --head --port 0 --state-dir "$D" --num-cpus 2 --http-port 0 --http-auth=none --heartbeat-timeout-ms 3000
if [ "$RC" -ne 0 ]; then bad "start a cluster with a gateway"; show_capture; finish; fi
H=http://$(cat "$D/http_address")

$DATA model "$T/wide.safetensors" --widths "$WIDTHS"
$DATA data "$T/data.npy" --rows 100000
check "register a $WIDTHS MLP" test "$(curl -s -o /dev/null -w '%{http_code}' --data-binary @"$T/wide.safetensors" \
    "$H/v1/models/wide?framework=loom-mlp")" = 201

infer() { capture "$LOOM" infer --model wide --state-dir "$D" --quiet "$@"; }
secs() { json_eval "$1/manifest.json" 'd["totals"]["seconds"]'; }
tot() { json_eval "$1/manifest.json" 'd["totals"]["'"$2"'"]'; }

# ---- the first run: every shard computed ------------------------------------
wall() { date +%s.%N; }
W0=$(wall)
infer --input "$T/data.npy" --shard-size 2000 --output "$T/out1"
W1=$(wall)
if [ "$RC" -eq 0 ]; then ok "loom infer: 100,000 rows in 50 shards"; else bad "loom infer"; show_capture; fi
check "  ... all 50 computed, none from the cache" test "$(tot "$T/out1" computed):$(tot "$T/out1" cache_hits)" = "50:0"
$DATA check "$T/wide.safetensors" "$T/data.npy" "$T/out1" >"$T/check1.json"
echo "  $(cat "$T/check1.json")"
check "  ... complete: 100,000 rows of results" test "$(json_eval "$T/check1.json" 'd["complete"] and d["rows_out"]')" = 100000
check "  ... they match a float64 forward pass (max |diff| < 1e-4, no label off)" \
    test "$(json_eval "$T/check1.json" 'd["max_abs_diff"] < 1e-4 and d["label_mismatches"] == 0')" = True
check "  ... the manifest names the model version and sha256" \
    test "$(json_eval "$T/out1/manifest.json" 'd["model"]["version"], d["model"]["sha256"]')" = "(1, '$(sha256sum "$T/wide.safetensors" | cut -c1-64)')"
check "  ... and each shard's digests" test "$(json_eval "$T/out1/manifest.json" \
    'all(len(s["input_sha256"]) == 64 and len(s["output_sha256"]) == 64 for s in d["shards"])')" = True

# ---- the second run: all from the cache -------------------------------------
W2=$(wall)
infer --input "$T/data.npy" --shard-size 2000 --output "$T/out2"
W3=$(wall)
check "a second run into a new directory" test "$RC" -eq 0
check "  ... takes all 50 shards from the cache (hit rate 1)" test "$(tot "$T/out2" cache_hits):$(tot "$T/out2" hit_rate)" = "50:1.0"
check "  ... with the same bytes" eval 'for f in "$T"/out1/shard-*.npy; do cmp -s "$f" "$T/out2/$(basename "$f")" || exit 1; done'
RATIO=$("$PY" -c "print(round(($W1 - $W0) / ($W3 - $W2), 1))")
echo "  the command's wall time: first run $("$PY" -c "print(round($W1 - $W0, 2))") s, second $("$PY" -c "print(round($W3 - $W2, 3))") s (in loom_infer: $(secs "$T/out1") s and $(secs "$T/out2") s)"
# the 50x of the issue is measured by bench/shard_bench.sh on a quiet machine
# (66.7x with this model); here, with other tests running (and under ASan),
# only a bound that a working cache always clears
check "  ... many times faster (${RATIO}x; at least 10x asked here)" test "$("$PY" -c "print($RATIO >= 10)")" = True
infer --input "$T/data.npy" --shard-size 2000 --output "$T/out1"
check "a third run into the first directory takes its earlier output" test "$RC:$(tot "$T/out1" from_output)" = "0:50"

# ---- other formats: the same rows, the same results --------------------------
$DATA formats "$T/data.npy" "$T/fmt" --rows 3000
for input in "$T/fmt/part.csv" "$T/fmt/part.jsonl" "$T/fmt/parts"; do
    name=$(basename "$input")
    infer --input "$input" --shard-size 2000 --output "$T/out-$name"
    check "$name: 3,000 rows in 2 shards" test "$RC:$(json_eval "$T/out-$name/manifest.json" 'd["input"]["rows"], len(d["shards"])')" = "0:(3000, 2)"
    check "  ... its first shard (rows 0..1999, as in the .npy) is a cache hit" \
        test "$(json_eval "$T/out-$name/manifest.json" 'd["shards"][0]["from"]')" = cache
    check "  ... and equals the .npy run's" cmp -s "$T/out1/shard-00000.npy" "$T/out-$name/shard-00000.npy"
done

# ---- a node daemon killed midway -------------------------------------------------
node_pids() { ls "$D/pids" | while read -r p; do tr '\0' ' ' </proc/$p/cmdline 2>/dev/null | grep -q -- "_node" && echo "$p"; done; }
FIRST_NODES=" $(node_pids | tr '\n' ' ')"
capture "$LOOM" start --address "$(cat "$D/address")" --state-dir "$D" --num-cpus 2
check "a second node joins" test "$RC" -eq 0
check "  ... 2 nodes alive" wait_until 10 nodes_alive_eq 2 "$D"
SECOND=$(node_pids | while read -r p; do case "$FIRST_NODES" in *" $p "*) ;; *) echo "$p" ;; esac; done)

# a straggler: the second node's executors frozen (SIGSTOP) midway
$DATA data "$T/strag.npy" --rows 20000 --seed 7
"$LOOM" infer --model wide --state-dir "$D" --quiet --input "$T/strag.npy" --shard-size 500 --max-in-flight 4 \
    --output "$T/out-strag" >"$T/strag.out" 2>&1 &
RUNNER=$!
wait_until 60 eval '[ "$(tot "$T/out-strag" done 2>/dev/null || echo 0)" -ge 6 ]' || true
FROZEN=$(pgrep -P "$SECOND" || true)
check "freeze the executors of one node midway ($(echo $FROZEN | wc -w) processes)" test -n "$FROZEN"
kill -STOP $FROZEN 2>/dev/null || true
SRC_RC=0
timeout 300 tail --pid=$RUNNER -f /dev/null || true
wait "$RUNNER" || SRC_RC=$?
kill -CONT $FROZEN 2>/dev/null || true
check "  ... the run finishes" test "$SRC_RC" -eq 0
check "  ... with second copies of the stuck shards ($(tot "$T/out-strag" speculative 2>/dev/null))" \
    test "$(tot "$T/out-strag" speculative 2>/dev/null || echo 0)" -ge 1
$DATA check "$T/wide.safetensors" "$T/strag.npy" "$T/out-strag" >"$T/check3.json"
check "  ... and complete, correct outputs" \
    test "$(json_eval "$T/check3.json" 'd["complete"] and d["rows_out"] == 20000 and d["max_abs_diff"] < 1e-4 and d["label_mismatches"] == 0')" = True

$DATA data "$T/kill.npy" --rows 30000 --seed 5
"$LOOM" infer --model wide --state-dir "$D" --quiet --input "$T/kill.npy" --shard-size 500 --max-in-flight 4 \
    --output "$T/out-kill" >"$T/kill.out" 2>&1 &
RUNNER=$!
wait_until 30 eval '[ -f "$T/out-kill/manifest.json" ] && [ "$(tot "$T/out-kill" done 2>/dev/null || echo 0)" -ge 5 ]' || true
DONE_AT_KILL=$(tot "$T/out-kill" done 2>/dev/null || echo "?")
check "kill -9 a node daemon midway (pid $SECOND, $DONE_AT_KILL of 60 shards done)" kill -9 "$SECOND"
KRC=0
timeout 300 tail --pid=$RUNNER -f /dev/null || true
wait "$RUNNER" || KRC=$?
sed 's/^/  /' "$T/kill.out" | tail -3
check "  ... the run still finishes" test "$KRC" -eq 0
$DATA check "$T/wide.safetensors" "$T/kill.npy" "$T/out-kill" >"$T/check2.json"
check "  ... with complete and correct outputs" \
    test "$(json_eval "$T/check2.json" 'd["complete"] and d["rows_out"] == 30000 and d["max_abs_diff"] < 1e-4 and d["label_mismatches"] == 0')" = True

# ---- refusals ---------------------------------------------------------------------
printf 'a,b\n1,2\n3\n' >"$T/ragged.csv"
infer --input "$T/ragged.csv" --output "$T/bad"
check "a ragged CSV is refused with its line" eval '[ "$RC" -eq 2 ] && printf "%s" "$ERR" | grep -q "line 3"'
capture "$LOOM" infer --model nosuch --input "$T/fmt/part.csv" --output "$T/bad" --state-dir "$D"
check "an unknown model: a clear error" eval '[ "$RC" -eq 2 ] && printf "%s" "$ERR" | grep -q "no model nosuch"'
capture "$LOOM" infer --model wide:7 --input "$T/fmt/part.csv" --output "$T/bad" --state-dir "$D"
check "an unknown version: a clear error" eval '[ "$RC" -eq 2 ] && printf "%s" "$ERR" | grep -q "version 7"'
$DATA data "$T/cols.npy" --rows 10 --cols 5
infer --input "$T/cols.npy" --output "$T/bad"
check "a dataset of the wrong width: the task says why" eval '[ "$RC" -ne 0 ] && printf "%s" "$ERR" | grep -q "takes 64 columns"'
infer --input "$T/data.npy" --output "$T/bad" --shard-size 0
check "--shard-size 0 is refused" test "$RC" -eq 2
finish
