#!/bin/bash
# sys_head_restart.sh — the head killed with SIGKILL in the middle of a graph
# and restarted with the same state dir: it reloads its tables (LMDB) and
# keeps its port; the daemons rejoin by themselves with their node ids; the
# key-value table is kept; a detached job submitted with `loom submit` and a C driver's graph that were
# running both finish with the right answers; nothing is left after stop.
set -euo pipefail
. "$(dirname "$0")/lib.sh" "$@"

D=$T/state
use_state_dir "$D"
capture "$LOOM" start --head --port 0 --state-dir "$D" --num-cpus 2 --heartbeat-timeout-ms 3000
if [ "$RC" -ne 0 ]; then bad "start the head"; show_capture; finish; fi
ADDR=$(cat "$D/address")
capture "$LOOM" start --address "$ADDR" --state-dir "$D" --num-cpus 2
check "a second node joins" test "$RC" -eq 0
check "2 nodes alive" wait_until 10 nodes_alive_eq 2 "$D"

# a detached job: 24 leaves of 400 ms and a tree of adds (sum 0..23 = 276)
"$PY" - "$EXLIB" >"$T/graph.json" <<'PYEOF'
import json, sys
tasks = [{"name": "s%d" % i, "function": "slow_value", "args": [400, i]} for i in range(24)]
level, k = ["s%d" % i for i in range(24)], 0
while len(level) > 1:
    nxt = []
    for i in range(0, len(level) - 1, 2):
        name = "a%d" % k
        k += 1
        tasks.append({"name": name, "function": "add", "args": [{"ref": level[i]}, {"ref": level[i + 1]}]})
        nxt.append(name)
    if len(level) % 2:
        nxt.append(level[-1])
    level = nxt
tasks[-1]["name"] = "root"
print(json.dumps({"name": "restart", "library": sys.argv[1], "tasks": tasks}))
PYEOF
capture "$LOOM" submit "$T/graph.json" --state-dir "$D"
check "submit a detached job" test "$RC" -eq 0
JOB=$OUT
# the key-value table: one key written, one written then deleted
capture "$LOOM" kv put model/best "digits v3" --state-dir "$D"
check "kv put" test "$RC" -eq 0
capture "$LOOM" kv put scratch 1 --state-dir "$D"
capture "$LOOM" kv del scratch --state-dir "$D"
check "kv del" test "$RC" -eq 0
# and a driver's graph of 5999 tasks, running while the head dies
LOOM_SECRET_FILE="$D/secret" timeout -k 5 150 "$BUILD/bin/tree_reduce" --address "$ADDR" --leaves 3000 \
    --lib "$EXLIB" >"$T/tree.out" 2>&1 &
DRIVER=$!
sleep 1
HEAD=$(pgrep -f -- "loom _head.*$D" || true)
check "the head's pid is known ($HEAD)" test -n "$HEAD"
kill -9 $HEAD
check "the head is gone" wait_until 5 eval '! kill -0 '"$HEAD"' 2>/dev/null'
sleep 1
capture "$LOOM" start --head --no-node --port 0 --state-dir "$D" --heartbeat-timeout-ms 3000
check "a new head starts with the same state dir" test "$RC" -eq 0
check "  ... on the same address" test "$(cat "$D/address")" = "$ADDR"
check "it reloaded the tables" grep -q "reloaded the tables" "$D/logs/head.log"
check "both nodes rejoin" wait_until 15 nodes_alive_eq 2 "$D"
check "they rejoined with their node ids" test "$(grep -c "rejoined after the head restarted" "$D/logs/head.log")" -eq 2

capture "$LOOM" get "$JOB" root --json --state-dir "$D" --timeout 90
check "the detached job finishes with the right sum ($OUT)" test "$RC:$OUT" = "0:276"
DRC=0
wait "$DRIVER" || DRC=$?
echo "  $(cat "$T/tree.out")"
check "the driver's graph finishes with the right sum" eval '[ "$DRC" -eq 0 ] && grep -q "(correct" "$T/tree.out"'

capture "$LOOM" kv get model/best --state-dir "$D"
check "a key written before the head died is there after ($OUT)" test "$RC:$OUT" = "0:digits v3"
capture "$LOOM" kv get scratch --state-dir "$D"
check "a key deleted before stays deleted (rc $RC: $ERR)" eval '[ "$RC" -ne 0 ] && printf "%s" "$ERR" | grep -q "no such key"'

# the restarted head serves new work
cat >"$T/small.json" <<JSON
{"library": "$EXLIB", "tasks": [{"name": "x", "function": "add", "args": [40, 2]}]}
JSON
capture "$LOOM" submit "$T/small.json" --state-dir "$D" --wait --timeout 60
check "new work runs after the restart" test "$RC" -eq 0
SMALL=$(printf '%s\n' "$OUT" | head -n 1)
capture "$LOOM" get "$SMALL" x --json --state-dir "$D"
check "with the right answer ($OUT)" test "$OUT" = 42
capture "$LOOM" stop --state-dir "$D"
check "loom stop" test "$RC" -eq 0
check "no process of the cluster is left" wait_until 10 no_procs_of "$D"
finish
