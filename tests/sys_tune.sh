#!/bin/bash
# sys_tune.sh — `loom tune` on a real cluster (head + daemon, 4 CPUs, 2
# simulated GPUs): function, actor and command trials (stdout and socket
# protocols); ASHA and Hyperband (pause and resume from checkpoints); results
# on disk (CSV, JSON, MLflow file store, PROV-JSON); the wall-time, GPU-hour,
# CPU-hour and trial limits never overrun; `loom tune stop`; refused specs;
# and a sweep killed together with its head that resumes to the same best
# trial as the same sweep run without interruption.
set -euo pipefail
. "$(dirname "$0")/lib.sh" "$@"

TLIB=$BUILD/lib/libloom_tune_examples.so
D=$T/state
use_state_dir "$D"
capture "$LOOM" start --head --port 0 --state-dir "$D" --num-cpus 4 --num-gpus 2 --heartbeat-timeout-ms 3000
if [ "$RC" -ne 0 ]; then bad "start a cluster"; show_capture; finish; fi
ok "a cluster with 4 CPUs and 2 (simulated) GPUs"

# spec NAME JSON: write $T/NAME.json
spec() { printf '%s\n' "$2" >"$T/$1.json"; }
# run a sweep: OUT has its id line and summary, ERR the progress view
tune_run() { capture "$LOOM" tune run "$T/$1.json" --state-dir "$D" --output "$T/out-$1" "${@:2}"; }
sweep_id() { printf '%s\n' "$OUT" | sed -n 's/^sweep \([0-9a-f]\{32\}\)$/\1/p' | head -1; }
res() { json_eval "$T/out-$1/results.json" "$2"; }

# ---- function trials, random search, ASHA --------------------------------
spec asha '{"name": "curve-asha", "metric": "loss", "mode": "min",
  "space": {"a": {"type": "uniform", "lower": 0, "upper": 1},
            "b": {"type": "choice", "values": [1, 2]},
            "step_ms": 5, "max_t": 9},
  "search": {"algorithm": "random", "seed": 7},
  "scheduler": {"type": "asha", "max_t": 9, "grace_period": 1, "reduction_factor": 3},
  "trial": {"library": "'"$TLIB"'", "function": "curve"},
  "limits": {"trials": 12, "concurrent": 3}}'
tune_run asha
if [ "$RC" -eq 0 ]; then ok "an ASHA sweep of function trials runs"; else bad "ASHA sweep"; show_capture; fi
check "  ... it ends completed" test "$(res asha 'd["sweep"]["state"]')" = completed
check "  ... 12 trials" test "$(res asha 'len(d["trials"])')" = 12
check "  ... ASHA stopped some early" test "$(res asha 'sum(1 for t in d["trials"] if t["state"]=="stopped")')" -ge 4
check "  ... and let one reach max_t" test "$(res asha 'sum(1 for t in d["trials"] if t["results"][-1]["t"]==9)')" -ge 1
check "  ... the best is the lowest loss reported" test "$(res asha \
  'd["sweep"]["best_trial"] == min((t for t in d["trials"] if t["best"] is not None), key=lambda t: t["best"])["id"]')" = True
check "  ... the progress view showed the budget" grep -q "trials 12/12" "$T/.err"
check "  ... results.csv: a header and 12 rows" test "$(wc -l <"$T/out-asha/results.csv")" -eq 13
check "  ... best.json" test "$(json_eval "$T/out-asha/best.json" 'd["id"]')" = "$(res asha 'd["sweep"]["best_trial"]')"
check "  ... MLflow runs: 12 with params and metrics" test "$(ls -d "$T"/out-asha/mlruns/*/*/metrics/loss 2>/dev/null | wc -l)" -eq 12
check "  ... PROV-JSON per trial" test "$(ls "$T"/out-asha/prov/trial_*.json | wc -l)" -eq 12
check "  ... PROV names the trial library with its sha256" grep -q "$(sha256sum "$TLIB" | cut -c1-64)" "$T/out-asha/prov/trial_0000.json"
SID=$(sweep_id)
capture "$LOOM" tune status --state-dir "$D"
check "tune status lists the sweep" eval 'printf "%s" "$OUT" | grep -q "$SID.*completed"'
capture "$LOOM" tune status "$SID" --state-dir "$D"
check "tune status SWEEP shows its trials" eval '[ "$RC" -eq 0 ] && [ "$(printf "%s\n" "$OUT" | grep -c "stopped\|completed")" -ge 12 ]'
capture "$LOOM" tune resume "$SID" --state-dir "$D"
check "an ended sweep is not resumed" eval '[ "$RC" -ne 0 ] && printf "%s" "$ERR" | grep -q "has ended"'

# ---- actor trials, Hyperband: pauses and resumes from checkpoints ----------
spec hb '{"name": "curve-hb", "metric": "loss", "mode": "min",
  "space": {"a": {"type": "uniform", "lower": 0, "upper": 1}, "b": 1, "step_ms": 2, "max_t": 9},
  "search": {"algorithm": "random", "seed": 3},
  "scheduler": {"type": "hyperband", "max_t": 9, "reduction_factor": 3},
  "trial": {"library": "'"$TLIB"'", "actor": "Curve"},
  "limits": {"trials": 9, "concurrent": 3}}'
tune_run hb
if [ "$RC" -eq 0 ]; then ok "a Hyperband sweep of actor trials runs"; else bad "Hyperband sweep"; show_capture; fi
check "  ... it ends" test "$(res hb 'd["sweep"]["state"]')" = completed
check "  ... some trials were paused and resumed (attempts > 1)" test "$(res hb 'sum(1 for t in d["trials"] if t["attempts"]>1)')" -ge 1
check "  ... a resumed trial went on from its checkpoint (no t repeated)" test "$(res hb \
  'all(len(set(r["t"] for r in t["results"])) == len(t["results"]) for t in d["trials"])')" = True
check "  ... and its results are consecutive" test "$(res hb \
  'all([r["t"] for r in t["results"]] == list(range(1, len(t["results"])+1)) for t in d["trials"])')" = True

# ---- command trials: the socket protocol (Python) and the stdout protocol ---
spec branin '{"name": "branin-tpe", "metric": "value", "mode": "min",
  "space": {"x1": {"type": "uniform", "lower": -5, "upper": 10},
            "x2": {"type": "uniform", "lower": 0, "upper": 15}},
  "search": {"algorithm": "tpe", "seed": 1, "n_startup": 4},
  "trial": {"command": ["'"$PY"'", "'"$SRC"'/examples/tune/branin.py"]},
  "limits": {"trials": 8, "concurrent": 2}}'
tune_run branin
if [ "$RC" -eq 0 ]; then ok "a TPE sweep of Python command trials (socket protocol)"; else bad "branin sweep"; show_capture; fi
check "  ... 8 trials completed" test "$(res branin 'sum(1 for t in d["trials"] if t["state"]=="completed")')" = 8
check "  ... each reported its value at t = 3" test "$(res branin 'all(t["results"][-1]["t"]==3 for t in d["trials"])')" = True

cat >"$T/stdout_trial.sh" <<'EOF'
#!/bin/sh
# reports lr * t for t = 1..5 on stdout; writes a file it names as artifact
i=1
while [ $i -le 5 ]; do
  echo "working on step $i"
  echo "loom-tune {\"t\": $i, \"score\": $(awk "BEGIN { print $1 * $i }")}"
  i=$((i + 1))
done
echo "model of lr $1" > model.txt
echo "loom-tune {\"t\": 6, \"score\": $(awk "BEGIN { print $1 * 6 }"), \"artifact\": \"model.txt\"}"
EOF
chmod +x "$T/stdout_trial.sh"
spec stdout '{"name": "stdout-grid", "metric": "score", "mode": "max",
  "space": {"lr": {"type": "grid", "values": [0.5, 1.5, 1.0]}},
  "search": {"algorithm": "grid"},
  "trial": {"command": ["'"$T"'/stdout_trial.sh", "{lr}"]},
  "limits": {"concurrent": 2}}'
tune_run stdout
if [ "$RC" -eq 0 ]; then ok "a grid sweep of shell command trials (stdout protocol)"; else bad "stdout sweep"; show_capture; fi
check "  ... the grid: 3 trials, each with its 6 results" test "$(res stdout '[len(t["results"]) for t in d["trials"]]')" = "[6, 6, 6]"
check "  ... the best is lr 1.5 with score 9" test "$(res stdout 'd["trials"][d["sweep"]["best_trial"]]["config"]["lr"], d["trials"][d["sweep"]["best_trial"]]["best"]')" = "(1.5, 9.0)"
check "  ... its artifact is recorded with a sha256" test "$(res stdout \
    'd["trials"][1]["artifacts"][0]["sha256"]')" = "$(printf 'model of lr 1.5\n' | sha256sum | cut -c1-64)"
check "  ... and written beside the results" test "$(cat "$T/out-stdout/artifacts/trial_0001/model.txt" 2>&1)" = "model of lr 1.5"

# ---- limits: wall time, GPU hours, CPU hours never overrun ----------------
spec wall '{"name": "wall", "metric": "loss", "mode": "min",
  "space": {"a": {"type": "uniform", "lower": 0, "upper": 1}, "b": 1, "step_ms": 200, "max_t": 100},
  "trial": {"library": "'"$TLIB"'", "function": "curve"},
  "limits": {"concurrent": 2, "wall_seconds": 4}}'
tune_run wall
check "a sweep with a 4 s wall-time limit ends on it" test "$RC:$(res wall 'd["sweep"]["state"]')" = "0:budget"
check "  ... and never overran it ($(res wall 'd["sweep"]["usage"]["wall_s"]') s)" test "$(res wall 'd["sweep"]["usage"]["wall_s"] <= 4')" = True
check "  ... its running trials were stopped" test "$(res wall 'all(t["state"] in ("stopped","completed") for t in d["trials"])')" = True

spec gpu '{"name": "gpu", "metric": "loss", "mode": "min",
  "space": {"a": {"type": "uniform", "lower": 0, "upper": 1}, "b": 1, "step_ms": 100, "max_t": 15},
  "trial": {"library": "'"$TLIB"'", "function": "curve"},
  "resources": {"cpus": 1, "gpus": 1},
  "limits": {"concurrent": 2, "gpu_hours": 0.002}}'
tune_run gpu
check "a sweep with a 0.002 GPU-hour limit (7.2 GPU-s) ends on it" test "$RC:$(res gpu 'd["sweep"]["state"]')" = "0:budget"
check "  ... never overran it ($(res gpu 'd["sweep"]["usage"]["gpu_hours"]*3600') GPU-s)" test "$(res gpu 'd["sweep"]["usage"]["gpu_hours"] <= 0.002')" = True
check "  ... and used most of it" test "$(res gpu 'd["sweep"]["usage"]["gpu_hours"] >= 0.0015')" = True
check "  ... the trials' GPU seconds add up to it" test "$(res gpu 'abs(sum(t["gpu_seconds"] for t in d["trials"]) - d["sweep"]["usage"]["gpu_hours"]*3600) < 0.5')" = True

spec cpu '{"name": "cpu", "metric": "loss", "mode": "min",
  "space": {"a": {"type": "uniform", "lower": 0, "upper": 1}, "b": 1, "step_ms": 100, "max_t": 15},
  "trial": {"library": "'"$TLIB"'", "function": "curve"},
  "resources": {"bundles": [{"cpus": 1}, {"cpus": 1}], "strategy": "SPREAD"},
  "limits": {"concurrent": 2, "cpu_hours": 0.003}}'
tune_run cpu
check "a sweep of 2-bundle trials (placement groups) with a CPU-hour limit ends on it" test "$RC:$(res cpu 'd["sweep"]["state"]')" = "0:budget"
check "  ... never overran it ($(res cpu 'd["sweep"]["usage"]["cpu_hours"]*3600') CPU-s of 10.8)" test "$(res cpu 'd["sweep"]["usage"]["cpu_hours"] <= 0.003')" = True
cpus_used() { timeout 30 "$LOOM" status --json --state-dir "$D" | "$PY" -c 'import json,sys; d=json.load(sys.stdin); print(sum(n["cpus_used"] for n in d["nodes"]) == 0 and d["placement_groups"]["created"] == 0)'; }
check "  ... their placement groups were removed: no CPU held" wait_until 10 eval '[ "$(cpus_used)" = True ]'

# a multi-worker trial: its second worker runs in bundle 1 of its group
spec pg '{"name": "pg", "metric": "loss", "mode": "min",
  "space": {"lib": "'"$TLIB"'", "k": {"type": "grid", "values": [1, 2]}},
  "search": {"algorithm": "grid"},
  "trial": {"library": "'"$TLIB"'", "function": "pg_trial"},
  "resources": {"bundles": [{"cpus": 1}, {"cpus": 1}], "strategy": "PACK"},
  "limits": {"concurrent": 2}}'
tune_run pg
check "2-worker trials: each used bundle 1 of its placement group" test "$RC:$(res pg '[t["last"].get("workers") for t in d["trials"]]')" = "0:[2, 2]"

# GPUs: a command trial sees the device it was given
spec gpus '{"name": "gpus", "metric": "x", "mode": "min",
  "space": {"k": {"type": "grid", "values": [1, 2]}}, "search": {"algorithm": "grid"},
  "trial": {"command": ["sh", "-c", "sleep 0.5; echo \"loom-tune {\\\"x\\\": 1, \\\"gpu\\\": \\\"$CUDA_VISIBLE_DEVICES\\\"}\""]},
  "resources": {"cpus": 1, "gpus": 1}, "limits": {"concurrent": 2}}'
tune_run gpus
check "GPU trials at once get different GPUs (CUDA_VISIBLE_DEVICES)" test "$RC:$(res gpus 'sorted(t["last"]["gpu"] for t in d["trials"])')" = "0:['0', '1']"

# ---- stop from another shell ------------------------------------------------
spec long '{"name": "long", "metric": "loss", "mode": "min",
  "space": {"a": {"type": "uniform", "lower": 0, "upper": 1}, "b": 1, "step_ms": 300, "max_t": 1000},
  "trial": {"library": "'"$TLIB"'", "function": "curve"},
  "limits": {"concurrent": 2}}'
timeout -k 5 120 "$LOOM" tune run "$T/long.json" --state-dir "$D" --output "$T/out-long" >"$T/long.out" 2>"$T/long.err" &
RUNNER=$!
wait_until 20 grep -q '^sweep ' "$T/long.out" || true
LID=$(sed -n 's/^sweep \([0-9a-f]\{32\}\)$/\1/p' "$T/long.out")
sleep 2
capture "$LOOM" tune stop "$LID" --state-dir "$D"
check "tune stop" test "$RC" -eq 0
LRC=0
wait "$RUNNER" || LRC=$?
check "  ... the running sweep ends stopped" test "$LRC:$(json_eval "$T/out-long/results.json" 'd["sweep"]["state"]')" = "0:stopped"
check "  ... its trials were stopped" test "$(json_eval "$T/out-long/results.json" 'sum(1 for t in d["trials"] if t["state"]=="running")')" = 0
check "  ... no trial task is left running" wait_until 10 eval '[ "$(timeout 30 "$LOOM" jobs --label "tune:$LID" --json --state-dir "$D" | "$PY" -c "import json,sys; print(sum(j[\"states\"].get(\"running\",0) for j in json.load(sys.stdin)[\"jobs\"]))")" = 0 ]'

# ---- refused specs -----------------------------------------------------------
spec bad1 '{"metric": "loss", "space": {"a": {"type": "uniform", "lower": 2, "upper": 1}}, "trial": {"library": "'"$TLIB"'", "function": "curve"}}'
spec bad2 '{"metric": "loss", "space": {}, "trial": {"library": "'"$TLIB"'", "function": "curve"}, "limits": {"trails": 3}}'
spec bad3 '{"metric": "loss", "space": {}, "scheduler": {"type": "asha", "reduction_factor": 1}, "trial": {"command": ["true"]}}'
printf '{"metric": ' >"$T/bad4.json"
spec bad5 '{"space": {}, "trial": {"command": ["true"]}}'
for b in bad1:"lower" bad2:"trails" bad3:"reduction_factor" bad4:"not JSON" bad5:"metric"; do
  capture "$LOOM" tune run "$T/${b%%:*}.json" --state-dir "$D"
  check "a bad spec (${b%%:*}) is refused, naming ${b#*:}" eval '[ "$RC" -eq 2 ] && printf "%s" "$ERR" | grep -q "${b#*:}"'
done
capture "$LOOM" tune status 0123456789abcdef0123456789abcdef --state-dir "$D"
check "an unknown sweep: a clear error" eval '[ "$RC" -eq 1 ] && printf "%s" "$ERR" | grep -q "no sweep"'

# ---- durability: the driver and the head killed mid-sweep ------------------
durable='{"name": "durable", "metric": "loss", "mode": "min",
  "space": {"a": {"type": "uniform", "lower": 0, "upper": 1}, "b": {"type": "uniform", "lower": 0, "upper": 2},
            "step_ms": 150, "max_t": 8},
  "search": {"algorithm": "random", "seed": 11},
  "trial": {"library": "'"$TLIB"'", "function": "curve"},
  "limits": {"trials": 8, "concurrent": 2}}'
spec ref "$durable"
tune_run ref
check "the reference sweep completes" test "$RC:$(res ref 'd["sweep"]["state"]')" = "0:completed"
REF_BEST=$(res ref '(d["sweep"]["best_trial"], round(d["sweep"]["best"], 12))')

kill_head() { local h; h=$(pgrep -f -- "loom _head.*$D" || true); [ -n "$h" ] && kill -9 $h; wait_until 5 eval '! pgrep -f -- "loom _head.*$D" >/dev/null'; }
restart_head() { capture "$LOOM" start --head --no-node --port 0 --state-dir "$D" --heartbeat-timeout-ms 3000; }
# start the durable sweep under the name $1 in the background; DID is its id
start_durable()
{
  spec "$1" "$durable"
  "$LOOM" tune run "$T/$1.json" --state-dir "$D" --output "$T/out-$1" >"$T/$1.out" 2>"$T/$1.err" &
  RUNNER=$!
  wait_until 20 grep -q '^sweep ' "$T/$1.out" || true
  DID=$(sed -n 's/^sweep \([0-9a-f]\{32\}\)$/\1/p' "$T/$1.out")
}
same_as_ref()
{
  check "  ... completed, 8 trials" test "$(res "$1" 'd["sweep"]["state"], len(d["trials"])')" = "('completed', 8)"
  check "  ... the same best trial as without a kill ($REF_BEST)" test "$(res "$1" '(d["sweep"]["best_trial"], round(d["sweep"]["best"], 12))')" = "$REF_BEST"
  check "  ... every trial has all its results, once each" test "$(res "$1" \
    'all([r["t"] for r in t["results"]] == list(range(1, 9)) for t in d["trials"])')" = True
  check "  ... the same configs as the reference" test "$(res "$1" '[t["config"] for t in d["trials"]]')" = "$(res ref '[t["config"] for t in d["trials"]]')"
}

# the head alone killed: the driver waits for it and goes on
start_durable headkill
sleep 3
check "the head is killed mid-sweep (its driver lives)" kill_head
sleep 1
restart_head
check "a new head starts on the same state" test "$RC" -eq 0
check "  ... the node rejoins" wait_until 15 nodes_alive_eq 1 "$D"
DRC=0
timeout 120 tail --pid=$RUNNER -f /dev/null || true
wait "$RUNNER" || DRC=$?
check "the driver finishes the sweep" test "$DRC" -eq 0
same_as_ref headkill

# the driver and the head killed together: `loom tune resume` takes it up
start_durable durable
sleep 3.5
kill -9 "$RUNNER" 2>/dev/null || true
wait "$RUNNER" 2>/dev/null || true
check "the driver and the head are killed mid-sweep" kill_head
capture "$LOOM" tune status "$DID" --json --state-dir "$D"
check "  ... (the head is down: status fails)" test "$RC" -ne 0
restart_head
check "a new head starts on the same state" test "$RC" -eq 0
check "  ... the node rejoins" wait_until 15 nodes_alive_eq 1 "$D"
capture "$LOOM" tune status "$DID" --json --state-dir "$D"
check "  ... the sweep is known, mid-way" test "$RC:$(printf '%s' "$OUT" | "$PY" -c 'import json,sys; d=json.load(sys.stdin); print(d["sweep"]["state"], 0 < sum(1 for t in d["trials"] if t["state"]=="completed") < 8)')" = "0:running True"
capture "$LOOM" tune resume "$DID" --state-dir "$D"
if [ "$RC" -eq 0 ]; then ok "tune resume drives it to its end"; else bad "tune resume"; show_capture; fi
same_as_ref durable

finish
