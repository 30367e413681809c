#!/bin/bash
# sys_slurm.sh — loom on a real Slurm: this test brings up a private Slurm
# (munged, slurmctld, slurmd's; tests/slurm_env.sh), then
#   1. submits a job with `loom slurm submit` whose driver runs graphs on a
#      2-node loom cluster started by `loom slurm start`, and checks the
#      results, the kept sbatch script, the logs, and that nothing is left;
#   2. cancels a second job midway (a task running in it) and checks that no
#      process of it is left;
#   3. runs two clusters at once on the same node (two salloc allocations of
#      2 CPUs and 1 GPU each, clusters left in the background), checks each
#      daemon reports the GPU Slurm gave its job and a GPU task sees that
#      device (0 in one, 1 in the other), stops one with `loom stop` and
#      checks the other goes on;
# and stops Slurm.  Before that, without Slurm: a daemon started before its
# head waits for it, and two heads started with default options on one host
# get ports of their own.
set -euo pipefail
. "$(dirname "$0")/lib.sh" "$@"
. "$(dirname "$0")/slurm_env.sh"

LOOM=$(readlink -f "$LOOM")
export LOOM_CMD_TIMEOUT=120

# ---- without Slurm: default ports, a daemon that starts before its head ----
H1=$T/h1
H2=$T/h2
use_state_dir "$H1"
use_state_dir "$H2"
capture "$LOOM" start --head --no-node --state-dir "$H1"
check "a head starts with default options" test "$RC" -eq 0
capture "$LOOM" start --head --no-node --state-dir "$H2"
check "a second head with default options starts on the same host" test "$RC" -eq 0
A1=$(cat "$H1/address" 2>/dev/null || true)
A2=$(cat "$H2/address" 2>/dev/null || true)
check "the two heads chose ports of their own ($A1, $A2)" test -n "$A1" -a -n "$A2" -a "$A1" != "$A2"
capture "$LOOM" stop --state-dir "$H1"
check "loom stop stops one cluster" test "$RC" -eq 0
check "... and the other head still answers" wait_until 10 nodes_alive_eq 0 "$H2"
check "... its process is alive" test -n "$(procs_of "$H2")"
capture "$LOOM" stop --state-dir "$H2"

# a daemon pointed at an address file that does not exist yet
H3=$T/h3
mkdir -p "$H3"
use_state_dir "$H3"
"$LOOM" _node --address-file "$H3/address" --state-dir "$H3" --node-dir "$T/n3" --wait-head 60 \
    >"$T/early-node.log" 2>&1 &
EARLY=$!
on_cleanup "kill -9 $EARLY"
sleep 2
check "a daemon started before its head keeps waiting" kill -0 "$EARLY"
check "... and says what it waits for" grep -q "waiting for the head's address in $H3/address" "$T/early-node.log"
capture "$LOOM" start --head --no-node --state-dir "$H3"
check "the head starts after it" test "$RC" -eq 0
check "the early daemon joins once the head is up" wait_until 20 nodes_alive_eq 1 "$H3"
"$LOOM" stop --state-dir "$H3" >/dev/null 2>&1 || true
kill "$EARLY" 2>/dev/null || true
wait "$EARLY" 2>/dev/null || true
"$LOOM" _node --address-file "$T/never/address" --state-dir "$H3" --node-dir "$T/n4" --wait-head 1 \
    >"$T/never.log" 2>&1 && RC=0 || RC=$?
check "a daemon whose head never comes gives up after --wait-head, saying why" \
    eval '[ "$RC" -ne 0 ] && grep -q "no head address appeared in $T/never/address within 1 s" "$T/never.log"'

# `loom start --address` before the head is up: the daemon stays, waiting
H5=$T/h5
use_state_dir "$H5"
PORT5=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$H5" && chmod 700 "$H5" && cp "$H1/secret" "$H5/secret"   # as for a node of another machine
capture "$LOOM" start --address "127.0.0.1:$PORT5" --state-dir "$H5"
check "loom start --address with no head yet leaves the daemon waiting (exit 0)" \
    eval '[ "$RC" -eq 0 ] && grep -q "keeps trying" <<<"$ERR"'
capture "$LOOM" start --head --no-node --port "$PORT5" --state-dir "$H5"
check "the head then starts on that port" test "$RC" -eq 0
check "... and the waiting daemon joins it" wait_until 20 nodes_alive_eq 1 "$H5"
capture "$LOOM" stop --state-dir "$H5"
check "loom stop stops both" eval '[ "$RC" -eq 0 ] && wait_until 10 no_procs_of "$H5"'

# ---- refusals ---------------------------------------------------------------
capture env -u SLURM_JOB_ID "$LOOM" slurm start
check "slurm start outside an allocation is refused clearly" \
    eval '[ "$RC" -eq 2 ] && grep -q "not inside a Slurm allocation" <<<"$ERR"'
capture "$LOOM" slurm submit --nodes 2 -- true
check "slurm submit without --time is refused" eval '[ "$RC" -eq 2 ] && grep -q -- "--time is required" <<<"$ERR"'
capture "$LOOM" slurm submit --nodes x --time 5 -- true
check "slurm submit --nodes x is refused" eval '[ "$RC" -eq 2 ] && grep -q "whole number" <<<"$ERR"'
capture "$LOOM" slurm submit --nodes 1 --time '5;reboot' -- true
check "slurm submit with a value that would break the script is refused" test "$RC" -eq 2
capture "$LOOM" slurm submit --nodes 1 --time 5 --bogus 1 -- true
check "slurm submit --bogus is refused" eval '[ "$RC" -eq 2 ] && grep -q "unknown option --bogus" <<<"$ERR"'
capture "$LOOM" slurm submit --nodes 3 --time 10 --gpus-per-node 2 --partition gpu --account proj \
    --dir "$T/dry" --dry-run -- ./train.sh "two words" "it's"
check "slurm submit --dry-run prints the sbatch script" \
    eval 'grep -q "^#SBATCH --nodes=3$" <<<"$OUT" && grep -q "^#SBATCH --gpus-per-node=2$" <<<"$OUT" &&
          grep -q "^#SBATCH --partition=gpu$" <<<"$OUT" && grep -q "^#SBATCH --account=proj$" <<<"$OUT" &&
          grep -q "^#SBATCH --time=10$" <<<"$OUT"'
check "... with the driver's arguments quoted for the shell" \
    grep -qF -- "-- './train.sh' 'two words' 'it'\\''s'" <<<"$OUT"
check "... and submits nothing" test ! -e "$T/dry"

# ---- a private Slurm ------------------------------------------------------------
rc=0
slurm_env_up 2 4 2 || rc=$?   # 2 nodes of 4 CPUs and 2 (device-less) GPUs
if [ "$rc" -eq 2 ]; then
    skip "real Slurm: $SLURM_ENV_WHY"
    finish
fi
check "a private Slurm with 2 nodes comes up" test "$rc" -eq 0
[ "$rc" -eq 0 ] || finish
JOBS=$T/jobs
# node-local dirs under T (jobs inherit TMPDIR): another test's Slurm numbers its jobs 1, 2, ... too
export TMPDIR=$T/local
mkdir -p "$JOBS" "$TMPDIR"

job_state() { squeue -h -j "$1" -o %T 2>/dev/null || true; }
job_gone() { [ -z "$(job_state "$1")" ]; }
# processes of a loom cluster of Slurm job $1: anything naming its job dir or
# its node-local dir (head, daemons, executors, srun)
job_procs() { pgrep -f -- "$JOBS/$1/|$JOBS/$1\$|$TMPDIR/loom-[0-9]+/slurm-$1-[0-9]+-" || true; }
no_job_procs() { [ -z "$(job_procs "$1")" ]; }
# its node-local dirs (the head's tables, the daemons' work dirs)
local_dirs() { ls -d "$TMPDIR/loom-$(id -u)/slurm-$1-"* 2>/dev/null || true; }
no_local_dirs() { [ -z "$(local_dirs "$1")" ]; }

# ---- 0. a job that runs into its time limit (checked at the end) --------------------
mkdir -p "$T/e"
MARKE=$((5000 + RANDOM % 1000))
cat >"$T/e/driver.sh" <<EOF
#!/bin/bash
touch "$T/e/started"
sleep $MARKE.25
EOF
chmod +x "$T/e/driver.sh"
capture "$LOOM" slurm submit --dir "$JOBS" --nodes 2 --cpus-per-node 1 --time 1 --name loom-e -- "$T/e/driver.sh"
JE=$OUT

# the work dir of a daemon Slurm killed (its pid is gone): the next daemon removes it
mkdir -p "$TMPDIR/loom-$(id -u)/slurm-999-1-node-4194303/logs"

# ---- 1. a job: a 2-node cluster, a graph, the results -----------------------------
mkdir -p "$T/a"
cat >"$T/a/graph.json" <<EOF
{"name": "slurm-test", "library": "$EXLIB", "tasks": [
  {"name": "sum", "function": "add", "args": [{"msgpack": 40}, {"msgpack": 2}]},
  {"name": "w0", "command": ["sleep", "1"], "num_cpus": 2},
  {"name": "w1", "command": ["sleep", "1"], "num_cpus": 2},
  {"name": "w2", "command": ["sleep", "1"], "num_cpus": 2},
  {"name": "w3", "command": ["sleep", "1"], "num_cpus": 2}
]}
EOF
cat >"$T/a/driver.sh" <<EOF
#!/bin/bash
set -u
out=$T/a
env | grep -E '^LOOM_(ADDRESS|STATE_DIR|SECRET_FILE)=' | sort >"\$out/env.txt"
for i in \$(seq 50); do   # ready once the gateway has reached the head (its first stats round)
    code=\$(curl -s -o /dev/null -w '%{http_code}' "http://\$LOOM_HTTP_ADDRESS/v2/health/ready")
    [ "\$code" = 200 ] && break
    sleep 0.2
done
echo "\$code" >"\$out/http.txt"
"$LOOM" status --json >"\$out/status.json" || exit 3
job=\$("$LOOM" submit "\$out/graph.json" --wait --timeout 120) || exit 4
"$LOOM" get "\$job" sum --json >"\$out/sum.txt" || exit 5
"$LOOM" job "\$job" >"\$out/job.json" || exit 6
echo "driver done"
EOF
chmod +x "$T/a/driver.sh"
capture "$LOOM" slurm submit --dir "$JOBS" --nodes 2 --cpus-per-node 2 --time 5 --name loom-a --http-port 0 \
    -- "$T/a/driver.sh"
check "loom slurm submit prints the job id" grep -Eq '^[0-9]+$' <<<"$OUT"
JA=$OUT
[ -n "$JA" ] || { show_capture; finish; }
check "the sbatch script is kept in the job's directory" test -s "$JOBS/$JA/job.sbatch"
check "... and names the driver" grep -qF "'$T/a/driver.sh'" "$JOBS/$JA/job.sbatch"
check "job A runs and ends (within 120 s)" wait_until 120 job_gone "$JA"
if ! grep -q "driver done" "$JOBS/$JA/slurm.out" 2>/dev/null; then
    echo "# slurm.out of job A:"; sed 's/^/#   /' "$JOBS/$JA/slurm.out" 2>/dev/null | tail -30
    for f in "$JOBS/$JA"/logs/*; do echo "# $f:"; tail -15 "$f" | sed 's/^/#   /'; done
fi
check "the driver ran to its end" grep -q "driver done" "$JOBS/$JA/slurm.out"
echo "# job A: $(grep -o 'up in [0-9.]* s' "$JOBS/$JA/slurm.out" || true) (loom slurm start, 2 nodes)"
check "the driver's exit status is recorded (0)" test "$(cat "$JOBS/$JA/driver_exit" 2>/dev/null)" = 0
check "the driver got LOOM_ADDRESS, LOOM_STATE_DIR and LOOM_SECRET_FILE" test "$(wc -l <"$T/a/env.txt")" = 3
check "the head served its HTTP gateway at LOOM_HTTP_ADDRESS (ready: 200)" test "$(cat "$T/a/http.txt" 2>/dev/null)" = 200
check "the cluster had 2 alive nodes" \
    test "$(json_eval "$T/a/status.json" 'sum(1 for n in d["nodes"] if n["state"]=="alive")')" = 2
check "each node has the 2 CPUs Slurm gave it" \
    test "$(json_eval "$T/a/status.json" 'sorted(n["cpus"] for n in d["nodes"])')" = "[2.0, 2.0]"
check "each node is labelled with its Slurm node name" \
    test "$(json_eval "$T/a/status.json" 'sorted(n["labels"]["slurm_node"] for n in d["nodes"])')" = \
         "$("$PY" -c 'import sys; print(sorted(sys.argv[1:]))' $SLURM_ENV_NODES)"
check "the graph's result is right (40 + 2 = 42)" test "$(cat "$T/a/sum.txt" 2>/dev/null)" = 42
check "its 2-CPU tasks ran on both nodes" \
    test "$(json_eval "$T/a/job.json" 'len(set(t["node"] for t in d["tasks"] if t["name"].startswith("w")))')" = 2
check "the head's log is in the job's directory" grep -q "head listening on" "$JOBS/$JA/logs/head.log"
nlogs=0
for n in $SLURM_ENV_NODES; do
    grep -q "joined the cluster" "$JOBS/$JA/logs/node-$n.log" 2>/dev/null && nlogs=$((nlogs + 1))
done
check "each daemon's log is in the job's directory (logs/node-NODE.log)" test "$nlogs" = 2
check "the address file is gone after the job" test ! -e "$JOBS/$JA/address"
check "no process of job A is left" wait_until 10 no_job_procs "$JA"
check "its node-local dirs are gone" wait_until 10 no_local_dirs "$JA"
check "... and so is the stale one of a killed daemon" test ! -e "$TMPDIR/loom-$(id -u)/slurm-999-1-node-4194303"
capture "$LOOM" slurm status "$JA" --dir "$JOBS" --json
check "loom slurm status: job A ended with exit 0" \
    test "$("$PY" -c 'import json,sys; d=json.loads(sys.argv[1])[0]; print(d["state"], d["driver_exit"])' "$OUT")" = "ENDED 0"

# a job dir with a stale address file (a run that was killed: a requeued job)
mkdir -p "$JOBS/stale"
echo "127.0.0.1:1" >"$JOBS/stale/address"
capture salloc -N1 -c1 -t 5 -J loom-stale "$LOOM" slurm start --job-dir "$JOBS/stale" -- "$LOOM" status --json
check "slurm start over a stale address file of a killed run starts anyway, saying so" \
    eval '[ "$RC" -eq 0 ] && grep -q "removing the stale address file" <<<"$ERR" && grep -q "\"alive\"" <<<"$OUT"'
[ "$RC" -eq 0 ] || show_capture

capture salloc -N2 -c1 -t 5 -J loom-srun srun -N2 -n2 "$LOOM" slurm start --dir "$T/under-srun"
check "slurm start in each task of an srun is refused, saying why" \
    eval '[ "$RC" -ne 0 ] && grep -q "runs once per allocation" <<<"$OUT$ERR" && [ ! -e "$T/under-srun" ]'

# ---- 2. cancel a job midway ---------------------------------------------------
mkdir -p "$T/b"
MARK=$((4000 + RANDOM % 1000))
cat >"$T/b/graph.json" <<EOF
{"name": "long", "tasks": [
  {"name": "long", "command": ["sh", "-c", "touch $T/b/task-running; exec sleep $MARK.5"]}
]}
EOF
cat >"$T/b/driver.sh" <<EOF
#!/bin/bash
"$LOOM" submit "$T/b/graph.json" >"$T/b/job" || exit 3
touch "$T/b/submitted"
sleep 300
EOF
chmod +x "$T/b/driver.sh"
capture "$LOOM" slurm submit --dir "$JOBS" --nodes 2 --cpus-per-node 1 --time 10 --name loom-b -- "$T/b/driver.sh"
JB=$OUT
check "job B is submitted" grep -Eq '^[0-9]+$' <<<"$JB"
check "job B's cluster runs a task" wait_until 90 test -e "$T/b/task-running"
check "... which is running" pgrep -f "sleep $MARK.5" >/dev/null
check "... with the head and the daemons up" test -n "$(job_procs "$JB")"
capture "$LOOM" slurm cancel "$JB"
check "loom slurm cancel succeeds" eval '[ "$RC" -eq 0 ] && grep -q "cancelled" <<<"$OUT"'
check "job B has left the queue" job_gone "$JB"
check "no process of job B is left (head, daemons, executors, srun)" wait_until 15 no_job_procs "$JB"
check "its task's command is gone too" wait_until 10 eval '! pgrep -f "sleep $MARK.5" >/dev/null'
check "the driver is gone" wait_until 10 eval '! pgrep -f "$T/b/driver.sh" >/dev/null'
capture "$LOOM" slurm status --dir "$JOBS"
check "loom slurm status lists both jobs" eval 'grep -q "^$JA " <<<"$OUT" && grep -q "^$JB " <<<"$OUT"'

# ---- 3. two clusters at once on the same node ----------------------------------
FIRST=${SLURM_ENV_NODES%% *}
start_alloc()
{
    local tag=$1
    mkdir -p "$T/$tag"
    cat >"$T/$tag/alloc.sh" <<EOF
#!/bin/bash
echo "\$SLURM_JOB_ID" >"$T/$tag/id"
"$LOOM" slurm start --dir "$JOBS" >"$T/$tag/start.out" 2>&1 || { echo failed >"$T/$tag/up"; exit 1; }
echo ok >"$T/$tag/up"
for i in \$(seq 1200); do [ -e "$T/$tag/stop" ] && break; sleep 0.1; done
"$LOOM" stop --state-dir "$JOBS/\$SLURM_JOB_ID" >"$T/$tag/stop.out" 2>&1
echo \$? >"$T/$tag/stopped"
EOF
    chmod +x "$T/$tag/alloc.sh"
    salloc -N1 -c2 --gpus-per-node=1 -w "$FIRST" -J "loom-$tag" -t 10 "$T/$tag/alloc.sh" >"$T/$tag/salloc.out" 2>&1 &
}
start_alloc c
start_alloc d
check "two allocations on node $FIRST start loom clusters" \
    wait_until 90 eval 'test -s "$T/c/up" -a -s "$T/d/up"'
JC=$(cat "$T/c/id" 2>/dev/null || true)
JD=$(cat "$T/d/id" 2>/dev/null || true)
check "both are up" test "$(cat "$T/c/up" 2>/dev/null):$(cat "$T/d/up" 2>/dev/null)" = "ok:ok"
check "both allocations run at once" \
    test "$(job_state "$JC"):$(job_state "$JD")" = "RUNNING:RUNNING"
AC=$(cat "$JOBS/$JC/address" 2>/dev/null || true)
AD=$(cat "$JOBS/$JD/address" 2>/dev/null || true)
check "each cluster chose its own port ($AC, $AD)" test -n "$AC" -a -n "$AD" -a "$AC" != "$AD"
for tag in c d; do
    j=$(cat "$T/$tag/id")
    capture "$LOOM" submit "$T/a/graph.json" --wait --timeout 60 --state-dir "$JOBS/$j"
    job=$OUT
    capture "$LOOM" get "$job" sum --json --state-dir "$JOBS/$j"
    check "cluster $tag runs a graph (42)" test "$RC:$OUT" = "0:42"
done
cat >"$T/gpu.json" <<EOF
{"name": "gpu", "tasks": [{"name": "g", "command": ["sh", "-c", "echo \$CUDA_VISIBLE_DEVICES"], "num_gpus": 1}]}
EOF
GPUS_SEEN=
for tag in c d; do
    j=$(cat "$T/$tag/id")
    status_json "$JOBS/$j" "$T/$tag/status.json" || true
    check "cluster $tag's daemon reports the 1 GPU of its allocation" \
        test "$(json_eval "$T/$tag/status.json" '[n["gpus"] for n in d["nodes"]]' 2>/dev/null)" = "[1]"
    capture "$LOOM" submit "$T/gpu.json" --wait --timeout 60 --state-dir "$JOBS/$j"
    capture "$LOOM" logs "$OUT" g --state-dir "$JOBS/$j"
    GPUS_SEEN="$GPUS_SEEN $(grep -Eo '^[0-9]+$' <<<"$OUT" | head -1)"
done
check "the GPU tasks saw the devices Slurm gave each job (0 and 1):$GPUS_SEEN" \
    test "$(tr ' ' '\n' <<<"$GPUS_SEEN" | grep . | sort | tr '\n' ' ')" = "0 1 "
check "the env file of a cluster can be sourced" \
    eval '( . "$JOBS/$JC/env" && "$LOOM" status --json >/dev/null )'
touch "$T/c/stop"
check "loom stop in allocation C stops its cluster" wait_until 30 test -e "$T/c/stopped"
check "... with success" test "$(cat "$T/c/stopped" 2>/dev/null)" = 0
check "... and nothing of cluster C is left" wait_until 15 no_job_procs "$JC"
check "... nor its node-local dirs" wait_until 10 no_local_dirs "$JC"
check "cluster D still runs" nodes_alive_eq 1 "$JOBS/$JD"
# a start in a job dir whose cluster runs is refused; a stale address file
# (a run that was killed) is not in the way
capture env SLURM_JOB_ID="$JD" SLURM_JOB_NODELIST="$FIRST" "$LOOM" slurm start --job-dir "$JOBS/$JD"
check "slurm start where a cluster runs is refused" \
    eval '[ "$RC" -ne 0 ] && grep -q "a cluster already runs from" <<<"$ERR"'
check "... and the running cluster is untouched" nodes_alive_eq 1 "$JOBS/$JD"
capture "$LOOM" submit "$T/a/graph.json" --wait --timeout 60 --state-dir "$JOBS/$JD"
check "... and runs graphs" test "$RC" -eq 0 || show_capture
touch "$T/d/stop"
check "allocation D ends after loom stop" wait_until 30 eval 'job_gone "$JC" && job_gone "$JD"'
check "nothing of cluster D is left" wait_until 15 no_job_procs "$JD"
wait

# ---- 0. (end) the job that ran into its time limit --------------------------------
check "job E (1 minute) started its driver" test -e "$T/e/started"
check "job E ends at its time limit" wait_until 120 job_gone "$JE"
check "nothing of job E is left" wait_until 15 no_job_procs "$JE"
check "the driver of job E is gone" eval '! pgrep -f "$T/e/driver.sh" >/dev/null'
check "... and so is the command it was running" eval '! pgrep -f "sleep $MARKE.25" >/dev/null'
echo "# job E: $(scontrol show job -o "$JE" 2>/dev/null | grep -o 'JobState=[A-Z]*' || true)," \
     "driver exit $(cat "$JOBS/$JE/driver_exit" 2>/dev/null || echo none)," \
     "$(grep -c 'stopping the cluster' "$JOBS/$JE/slurm.out" 2>/dev/null || true) clean stop"

# ---- Slurm stops ------------------------------------------------------------------
check "Slurm stops and leaves no process behind" slurm_env_down
finish
