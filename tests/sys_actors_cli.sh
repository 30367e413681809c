#!/bin/bash
# sys_actors_cli.sh — node resources, placement and actors through the `loom`
# command: a head node started with GPUs, a custom resource and a label, a
# second node with other labels; `loom status` (table and JSON) shows them;
# graphs submitted with `loom submit` use num_gpus, resources, labels and node
# affinity and run where they must (and see their CUDA_VISIBLE_DEVICES); an
# infeasible task fails with a reason that `loom status` lists; `loom actors`
# and `loom kill-actor` (no actor can be created from the shell: the listing
# is empty and killing an unknown actor fails clearly); bad node options are
# refused; `loom stop` leaves no process behind.
set -euo pipefail
. "$(dirname "$0")/lib.sh" "$@"

D=$T/st
use_state_dir "$D"

# ---- a head node with GPUs, a resource and a label -----------------------
capture "$LOOM" start --head --port 0 --state-dir "$D" --num-cpus 2 --num-gpus 2 --resources nvlink=1 --labels zone=a
if [ "$RC" -eq 0 ]; then ok "loom start --head with --num-gpus/--resources/--labels"; else
    bad "loom start --head with node options"; show_capture; finish; fi
ADDR=$(cat "$D/address")

capture "$LOOM" status --state-dir "$D"
check "loom status succeeds" test "$RC" -eq 0
printf '%s\n' "$OUT" >"$T/status1.txt"
NODE1=$(grep -E '^1 ' "$T/status1.txt" || true)
check "status has a GPUS column" grep -q "GPUS" <<<"$OUT"
check "node 1's GPUs are shown as 0/2" grep -qE '(^| )0/2( |$)' <<<"$NODE1"
check "node 1 shows nvlink=0/1" grep -q "nvlink=0/1" <<<"$NODE1"
check "node 1 shows its label zone:a" grep -q "zone:a" <<<"$NODE1"
[ -n "$NODE1" ] && grep -q "zone:a" <<<"$NODE1" || show_capture

capture "$LOOM" status --json --state-dir "$D"
printf '%s\n' "$OUT" >"$T/status1.json"
check "loom status --json succeeds" test "$RC" -eq 0
check "status --json: node 1 has 2 GPUs, none used" \
    test "$(json_eval "$T/status1.json" '[(n["gpus"], n["gpus_used"]) for n in d["nodes"] if n["id"]==1] == [(2, 0)]')" = True
check "status --json: node 1 has nvlink 1 (0 used)" \
    test "$(json_eval "$T/status1.json" '[n["resources"] for n in d["nodes"] if n["id"]==1]')" = "[{'nvlink': [1.0, 0.0]}]"
check "status --json: node 1 is labelled zone=a" \
    test "$(json_eval "$T/status1.json" '[n["labels"] for n in d["nodes"] if n["id"]==1]')" = "[{'zone': 'a'}]"
check "status --json: an infeasible section, empty" \
    test "$(json_eval "$T/status1.json" 'd["infeasible"]["count"], d["infeasible"]["recent"]')" = "(0, [])"

# ---- a second node: no GPU, zone=b ---------------------------------------
capture "$LOOM" start --address "$ADDR" --state-dir "$D" --num-cpus 1 --num-gpus 0 --labels zone=b
check "loom start --address with --num-gpus 0 --labels zone=b" test "$RC" -eq 0
[ "$RC" -eq 0 ] || show_capture
check "status: 2 alive nodes" wait_until 10 nodes_alive_eq 2 "$D"
status_json "$D" "$T/status2.json" || true
check "status --json: node 2 has no GPU, no resource, zone=b" \
    test "$(json_eval "$T/status2.json" '[(n["gpus"], n["resources"], n["labels"]) for n in d["nodes"] if n["id"]==2]')" \
    = "[(0, {}, {'zone': 'b'})]"
capture "$LOOM" status --state-dir "$D"
check "node 2's row shows 0/0 GPUs and zone:b" eval 'grep -E "^2 " <<<"$OUT" | grep -E "(^| )0/0( |$)" | grep -q "zone:b"'

# ---- bad node options -----------------------------------------------------
# refused_start DESC PATTERN ARGS...: `loom start --address` fails with a
# message; the daemon's log (the message names it) says why, matching PATTERN
refused_start()
{
    local desc=$1 pat=$2
    shift 2
    capture "$LOOM" start --address "$ADDR" --state-dir "$D" "$@"
    check "start $desc fails" test "$RC" -ne 0
    check "  ... with a message: $(head -1 <<<"$ERR")" test -n "$ERR"
    # the command checks the options itself, before starting anything
    check "  ... which names the problem ('$pat')" grep -qi -- "$pat" <<<"$ERR"
}
refused_start "--resources bad" "resource" --resources bad
refused_start "--resources nvlink=-1" "resource" --resources nvlink=-1
refused_start "--labels novalue" "label" --labels novalue
capture "$LOOM" start --address "$ADDR" --state-dir "$D" --num-gpus -3
check "start --num-gpus -3 fails" test "$RC" -ne 0
check "  ... saying what --num-gpus wants" grep -q "num-gpus wants" <<<"$ERR"
capture "$LOOM" start --address "$ADDR" --state-dir "$D" --num-gpus two
check "start --num-gpus two fails" test "$RC" -ne 0
check "still 2 alive nodes after the refused starts" nodes_alive_eq 2 "$D"
check "no process was added by the refused starts (head + 2 nodes)" test "$(state_pids "$D" | wc -l)" -eq 3

# ---- placement through graph JSON ------------------------------------------
cat >"$T/place.json" <<EOF
{"name": "placement", "library": "$EXLIB", "tasks": [
  {"name": "gpu1", "function": "gpu_ids", "num_gpus": 1},
  {"name": "gpu2", "function": "gpu_ids", "num_gpus": 2},
  {"name": "half", "function": "gpu_ids", "num_gpus": 0.5},
  {"name": "nv", "function": "node_id", "resources": {"nvlink": 1}},
  {"name": "zb", "function": "node_id", "labels": {"zone": "b"}},
  {"name": "za", "function": "node_id", "labels": {"zone": "a"}},
  {"name": "pin2", "function": "node_id", "node": 2},
  {"name": "soft", "function": "node_id", "node": 9, "soft": true},
  {"name": "nogpu", "function": "gpu_ids", "node": 2}
]}
EOF
capture "$LOOM" submit "$T/place.json" --wait --timeout 60 --state-dir "$D"
check "loom submit of the placement graph succeeds" test "$RC" -eq 0
[ "$RC" -eq 0 ] || show_capture
PJOB=$(head -1 <<<"$OUT")
get_json() { timeout -k 5 30 "$LOOM" get "$PJOB" "$1" --json --state-dir "$D" 2>&1; }
check "num_gpus 1 ran on node 1 with one device ($(get_json gpu1))" grep -qxE '"1:[01]"' <<<"$(get_json gpu1)"
check "num_gpus 2 ran on node 1 with devices 0,1 ($(get_json gpu2))" test "$(get_json gpu2)" = '"1:0,1"'
check "num_gpus 0.5 ran on node 1 with one device ($(get_json half))" grep -qxE '"1:[01]"' <<<"$(get_json half)"
check "resources nvlink ran on node 1 ($(get_json nv))" test "$(get_json nv)" = 1
check "labels zone=b ran on node 2 ($(get_json zb))" test "$(get_json zb)" = 2
check "labels zone=a ran on node 1 ($(get_json za))" test "$(get_json za)" = 1
check "node 2 affinity ran on node 2 ($(get_json pin2))" test "$(get_json pin2)" = 2
check "soft affinity to a missing node still ran ($(get_json soft))" grep -qxE '[12]' <<<"$(get_json soft)"
check "a task without GPUs sees none ($(get_json nogpu))" grep -qxE '"2:(\(unset\))?"' <<<"$(get_json nogpu)"
capture "$LOOM" job "$PJOB" --state-dir "$D"
printf '%s\n' "$OUT" >"$T/pjob.json"
check "loom job: the tasks' nodes" \
    test "$(json_eval "$T/pjob.json" '[t["node"] for t in sorted(d["tasks"], key=lambda t: t["name"]) if t["name"] in ("gpu2","nv","pin2","zb")]')" = "[1, 1, 2, 2]"

# a command holding both GPUs: status shows them used while it runs
MARK="2.$$"
cat >"$T/hold.json" <<EOF
{"name": "hold", "tasks": [
  {"name": "hold", "command": ["sh", "-c", "echo \"\$CUDA_VISIBLE_DEVICES\" > cvd.txt; sleep $MARK"],
   "num_gpus": 2, "num_cpus": 1, "outputs": ["cvd.txt"]}
]}
EOF
capture "$LOOM" submit "$T/hold.json" --state-dir "$D"
check "submit of a GPU command" test "$RC" -eq 0
HJOB=$(head -1 <<<"$OUT")
gpus_used_is()
{
    status_json "$D" "$T/.st.json" || return 1
    [ "$(json_eval "$T/.st.json" '[n["gpus_used"] for n in d["nodes"] if n["id"]==1][0]')" = "$1" ]
}
check "while it runs node 1 has 2.0 GPUs used" wait_until 10 gpus_used_is 2.0
capture "$LOOM" status --state-dir "$D"
check "  ... and the table shows 2/2" eval 'grep -E "^1 " <<<"$OUT" | grep -qE "(^| )2/2( |$)"'
capture "$LOOM" get "$HJOB" hold:1 --timeout 30 --state-dir "$D"
check "the command saw CUDA_VISIBLE_DEVICES=0,1" test "$RC:$OUT" = "0:0,1"
check "after it, no GPU is used" wait_until 10 gpus_used_is 0.0

# ---- infeasible tasks -------------------------------------------------------
cat >"$T/inf.json" <<EOF
{"name": "infeasible", "library": "$EXLIB", "tasks": [
  {"name": "three-gpus", "function": "gpu_ids", "num_gpus": 3}
]}
EOF
SECONDS=0
capture "$LOOM" submit "$T/inf.json" --wait --timeout 30 --state-dir "$D"
check "a task wanting 3 GPUs fails the submit (${SECONDS}s)" eval '[ "$RC" -ne 0 ] && [ "$SECONDS" -le 10 ]'
check "  ... saying it is infeasible, naming GPUs: $(grep -m1 -i infeasible <<<"$ERR" || true)" \
    eval 'grep -qi "infeasible" <<<"$ERR" && grep -q "GPU" <<<"$ERR"'
capture "$LOOM" status --state-dir "$D"
check "loom status lists the infeasible request" eval 'grep -q "infeasible requests: 1" <<<"$OUT" && grep -q "three-gpus" <<<"$OUT"'
status_json "$D" "$T/status3.json" || true
check "status --json lists it under infeasible" \
    test "$(json_eval "$T/status3.json" 'd["infeasible"]["count"], any("three-gpus" in m for m in d["infeasible"]["recent"])')" = "(1, True)"
cat >"$T/inf2.json" <<EOF
{"library": "$EXLIB", "tasks": [{"name": "zc", "function": "node_id", "labels": {"zone": "c"}}]}
EOF
capture "$LOOM" submit "$T/inf2.json" --wait --timeout 30 --state-dir "$D"
check "a task wanting label zone=c fails, naming labels" eval '[ "$RC" -ne 0 ] && grep -q "labels" <<<"$ERR"'
cat >"$T/badgpu.json" <<EOF
{"library": "$EXLIB", "tasks": [{"name": "x", "function": "gpu_ids", "num_gpus": 1.5}]}
EOF
capture "$LOOM" submit "$T/badgpu.json" --state-dir "$D"
check "num_gpus 1.5 in graph JSON is refused, naming it" eval '[ "$RC" -ne 0 ] && grep -q "num_gpus" <<<"$ERR"'

# ---- actors -------------------------------------------------------------------
capture "$LOOM" actors --state-dir "$D"
check "loom actors succeeds" test "$RC" -eq 0
check "loom actors prints the header" eval 'head -1 <<<"$OUT" | grep -q "ACTOR" && head -1 <<<"$OUT" | grep -q "CLASS" && head -1 <<<"$OUT" | grep -q "STATE"'
capture "$LOOM" actors --json --state-dir "$D"
printf '%s\n' "$OUT" >"$T/actors.json"
check "loom actors --json is a JSON array" test "$(json_eval "$T/actors.json" 'type(d).__name__')" = list
capture "$LOOM" kill-actor nosuch --state-dir "$D"
check "loom kill-actor nosuch exits 1" test "$RC" -eq 1
check "  ... with a clear message: $(head -1 <<<"$ERR")" eval 'grep -q "nosuch" <<<"$ERR" && grep -qiE "no (live |such )?actor" <<<"$ERR"'
capture "$LOOM" kill-actor 0123456789abcdef0123456789abcdef --state-dir "$D"
check "loom kill-actor of an unknown id exits 1" test "$RC" -eq 1
check "  ... with a message: $(head -1 <<<"$ERR")" test -n "$ERR"
capture "$LOOM" kill-actor --state-dir "$D"
check "loom kill-actor without an argument: usage, exit 2" test "$RC" -eq 2

# ---- stop --------------------------------------------------------------------
check "status: still 2 alive nodes" nodes_alive_eq 2 "$D"
capture "$LOOM" stop --state-dir "$D"
check "loom stop succeeds" test "$RC" -eq 0
check "loom stop names what it stopped (head + 2 nodes)" test "$(grep -c "stopped" <<<"$OUT")" -eq 3
check "no loom process of this state dir is left" wait_until 10 no_procs_of "$D"
check "the address file is removed" test ! -e "$D/address"
capture "$LOOM" status --state-dir "$D"
check "status after stop fails clearly" eval '[ "$RC" -ne 0 ] && grep -q "no cluster is running" <<<"$ERR"'

finish
