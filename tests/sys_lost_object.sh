#!/bin/bash
# sys_lost_object.sh — a content-addressed object (a task library) lost with
# the nodes that held it comes back when it is put again, as a new user would
# meet it: `loom submit` a job, kill its node daemons, start new ones, submit
# the same library again (it must run, not fail with "the object was lost …
# cannot be rebuilt" for good); the same after `loom stop` and a new
# `loom start` on the same state dir (the head's LMDB kept it as lost).
set -euo pipefail
. "$(dirname "$0")/lib.sh" "$@"

D=$T/st
use_state_dir "$D"
cat >"$T/job.json" <<JSON
{"library": "$EXLIB", "tasks": [{"name": "x", "function": "add", "args": [40, 2]}]}
JSON
node_pids() { pgrep -f -- "_node .*--state-dir $D( |\$)" || true; }
submit_42() {
    capture "$LOOM" submit "$T/job.json" --state-dir "$D" --wait --timeout 60
    [ "$RC" -eq 0 ] || { show_capture; return 1; }
    local job
    job=$(printf '%s\n' "$OUT" | head -n 1)
    capture "$LOOM" get "$job" x --json --state-dir "$D"
    [ "$RC" -eq 0 ] && [ "$OUT" = 42 ]
}

capture "$LOOM" start --head --port 0 --state-dir "$D" --num-cpus 1 --heartbeat-timeout-ms 2000
[ "$RC" -eq 0 ] || { show_capture; bad "loom start --head"; finish; exit 1; }
ADDR=$(cat "$D/address")
check "a job with the example library runs (40 + 2)" submit_42

# ---- its only node dies; a new one joins ------------------------------------------------
OLD=$(node_pids)
check "one node daemon ($OLD)" test "$(wc -w <<<"$OLD")" = 1
kill -9 $OLD
check "its node is dead" wait_until 15 nodes_alive_eq 0 "$D"
capture "$LOOM" start --address "$ADDR" --state-dir "$D" --num-cpus 1
check "a new node joins" wait_until 15 nodes_alive_eq 1 "$D"
check "the same library submitted again runs (it was lost with the node)" submit_42
check "the head says the lost library is live again" grep -q "was lost and is put again: live again" "$D/logs/head.log"
check "and again (no second revival needed)" submit_42

# ---- the whole cluster stopped and started again on the same state dir -------------------
kill -9 $(node_pids)
check "the node is dead again" wait_until 15 nodes_alive_eq 0 "$D"
capture "$LOOM" stop --state-dir "$D"
check "loom stop" test "$RC" -eq 0
capture "$LOOM" start --head --port 0 --state-dir "$D" --num-cpus 1
check "loom start on the same state dir" test "$RC" -eq 0
check "a node is alive" wait_until 15 nodes_alive_eq 1 "$D"
check "the library (lost in the head's tables) runs again" submit_42
finish
