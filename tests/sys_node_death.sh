#!/bin/bash
# sys_node_death.sh — a node daemon killed with SIGKILL while it runs a task:
# the head notices the missed heartbeats (a 2 s timeout here), marks the node
# dead, fails the task that ran there with LOOM_ENODE naming the node, fails
# its dependents, takes no more work there, and keeps serving; the killed
# daemon's executors die with it; a new daemon joins cleanly afterwards.
# (The tasks ask for no retries here; test_api_retries checks that a task on
# a dead node runs again elsewhere.)
set -euo pipefail
. "$(dirname "$0")/lib.sh" "$@"

D=$T/state
use_state_dir "$D"
capture "$LOOM" start --head --port 0 --state-dir "$D" --num-cpus 1 --heartbeat-timeout-ms 2000
if [ "$RC" -ne 0 ]; then bad "start the head"; show_capture; finish; fi
ADDR=$(cat "$D/address")
before=$(state_pids "$D" | sort)
capture "$LOOM" start --address "$ADDR" --state-dir "$D" --num-cpus 1
check "a second node joins" test "$RC" -eq 0
VICTIM=$(comm -13 <(echo "$before") <(state_pids "$D" | sort) | head -n 1)
check "the second daemon's pid is known ($VICTIM)" test -n "$VICTIM"
check "2 nodes alive" wait_until 10 nodes_alive_eq 2 "$D"

cat >"$T/graph.json" <<JSON
{"name": "doomed", "library": "$EXLIB",
 "tasks": [
   {"name": "a", "function": "sleep_ms", "args": [20000], "max_retries": 0},
   {"name": "b", "function": "sleep_ms", "args": [20000], "max_retries": 0},
   {"name": "sum", "function": "add", "args": [{"ref": "a"}, {"ref": "b"}]}
 ]}
JSON
capture "$LOOM" submit "$T/graph.json" --state-dir "$D"
check "submit" test "$RC" -eq 0
JOB=$OUT
job_json() { timeout -k 5 30 "$LOOM" job "$JOB" --state-dir "$D" >"$T/job.json" 2>/dev/null; }
both_running() { job_json && [ "$(json_eval "$T/job.json" 'sum(t["state"] == "running" for t in d["tasks"])')" = 2 ]; }
check "a and b run, one on each node" wait_until 15 both_running

# the node the victim daemon is: the one whose data port the victim listens on
status_json "$D" "$T/status.json"
VPORTS=$(ss -ltnpH 2>/dev/null | grep "pid=$VICTIM," | awk '{print $4}' | sed 's/.*://' | tr '\n' ' ')
VNODE=$(json_eval "$T/status.json" '[n["id"] for n in d["nodes"] if n["address"].rsplit(":",1)[1] in sys.argv[3].split()][0]' "$VPORTS")
VTASK=$(json_eval "$T/job.json" '[t["name"] for t in d["tasks"] if t["node"] == int(sys.argv[3]) and t["state"] == "running"][0]' "$VNODE")
check "the victim (node $VNODE) runs task $VTASK" test -n "$VTASK"
VEXEC=$(pgrep -f -- "-$VICTIM/" || true)
check "the victim has executors ($(echo $VEXEC | wc -w))" test -n "$VEXEC"

t0=$(date +%s)
kill -9 "$VICTIM"
task_failed() { job_json && [ "$(json_eval "$T/job.json" '[t["state"] for t in d["tasks"] if t["name"] == sys.argv[3]][0]' "$VTASK")" = failed ]; }
check "the task on the dead node fails" wait_until 15 task_failed
dt=$(( $(date +%s) - t0 ))
check "it failed within the heartbeat timeout and a tick (${dt}s)" test "$dt" -le 6
ERRMSG=$(json_eval "$T/job.json" '[t["error"] for t in d["tasks"] if t["name"] == sys.argv[3]][0]' "$VTASK")
check "its error names the dead node: $ERRMSG" eval '[[ "$ERRMSG" == *"node $VNODE"*died* ]]'
SUMERR=$(json_eval "$T/job.json" '[t["error"] for t in d["tasks"] if t["name"] == "sum"][0]')
check "its dependent fails too: $SUMERR" eval '[[ "$SUMERR" == *"'"$VTASK"'"* ]]'
capture "$LOOM" get "$JOB" sum --state-dir "$D" --timeout 5
check "loom get of the dependent reports the failure" eval '[ "$RC" -ne 0 ] && [[ "$ERR" == *"dependency"* ]]'
check "node $VNODE is dead, 1 alive" wait_until 5 nodes_alive_eq 1 "$D"
gone() { for p in $VEXEC; do kill -0 "$p" 2>/dev/null && return 1; done; return 0; }
check "the dead daemon's executors are gone" wait_until 10 gone
check "the head logged the death" grep -q "node $VNODE (.*) is dead: missed heartbeats" "$D/logs/head.log"

# the cluster keeps serving on the live node (once the other sleeper is gone)
capture "$LOOM" cancel "$JOB" --state-dir "$D"
check "cancel the rest of the doomed job" test "$RC" -eq 0
cat >"$T/small.json" <<JSON
{"library": "$EXLIB", "tasks": [{"name": "x", "function": "add", "args": [40, 2]}]}
JSON
capture "$LOOM" submit "$T/small.json" --state-dir "$D" --wait --timeout 60
check "new work runs on the surviving node" test "$RC" -eq 0
SMALL=$(printf '%s\n' "$OUT" | head -n 1)
capture "$LOOM" get "$SMALL" x --json --state-dir "$D"
check "with the right answer ($OUT)" test "$OUT" = 42

# a driver killed in the middle of a graph: the head notices the closed
# connection, cancels what the driver's graph still had to do and frees what
# it held
status_json "$D" "$T/before.json"
OBJS_BEFORE=$(json_eval "$T/before.json" 'd["objects"]')
LOOM_SECRET_FILE="$D/secret" "$BUILD/bin/tree_reduce" --address "$ADDR" --leaves 20000 --lib "$EXLIB" >"$T/tree.out" 2>&1 &
DRIVER=$!
busy() { status_json "$D" "$T/s.json" && [ "$(json_eval "$T/s.json" 'd["tasks"]["queued"] + d["tasks"]["waiting"]')" -gt 1000 ]; }
check "the driver's graph is under way" wait_until 30 busy
kill -9 "$DRIVER"
wait "$DRIVER" 2>/dev/null || true
idle() { status_json "$D" "$T/s.json" && [ "$(json_eval "$T/s.json" 'd["tasks"]["waiting"] + d["tasks"]["queued"] + d["tasks"]["running"]')" = 0 ]; }
check "its unfinished tasks are cancelled" wait_until 15 idle
freed() { status_json "$D" "$T/s.json" && [ "$(json_eval "$T/s.json" 'd["objects"]')" = "$OBJS_BEFORE" ]; }
check "its objects are freed ($OBJS_BEFORE objects as before)" wait_until 15 freed
check "the head logged it" grep -q "went away without saying goodbye" "$D/logs/head.log"

# a new daemon joins cleanly
capture "$LOOM" start --address "$ADDR" --state-dir "$D" --num-cpus 1
check "a new daemon joins" test "$RC" -eq 0
check "2 nodes alive again" wait_until 10 nodes_alive_eq 2 "$D"
finish
