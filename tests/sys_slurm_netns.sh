#!/bin/bash
# sys_slurm_netns.sh — loom on a real Slurm whose nodes are separate hosts:
# each slurmd in a network namespace of its own (tests/slurm_env.sh,
# slurm_env_up_netns), with addresses that exist only inside the namespaces.
# A job submitted with `loom slurm submit --nodes 2` must start the head on
# the first node at that node's address (Slurm's NodeAddr), a daemon on each
# node advertising its own address, run a graph across both, and leave
# nothing behind.  Skipped without root or network namespaces.
set -euo pipefail
. "$(dirname "$0")/lib.sh" "$@"
. "$(dirname "$0")/slurm_env.sh"

LOOM=$(readlink -f "$LOOM")
rc=0
slurm_env_up_netns 2 4 1 || rc=$?
if [ "$rc" -eq 2 ]; then
    skip "Slurm on network-namespace hosts: $SLURM_ENV_WHY"
    finish
fi
check "a private Slurm with 2 nodes in 2 network namespaces comes up" test "$rc" -eq 0
[ "$rc" -eq 0 ] || finish
JOBS=$T/jobs
export TMPDIR=$T/local   # node-local dirs under T: another test's Slurm numbers its jobs 1, 2, ... too
mkdir -p "$JOBS" "$T/a" "$TMPDIR"

cat >"$T/a/graph.json" <<EOF
{"name": "netns", "library": "$EXLIB", "tasks": [
  {"name": "sum", "function": "add", "args": [{"msgpack": 40}, {"msgpack": 2}]},
  {"name": "w0", "command": ["sh", "-c", "echo \$CUDA_VISIBLE_DEVICES; sleep 1"], "num_cpus": 2, "num_gpus": 1},
  {"name": "w1", "command": ["sh", "-c", "echo \$CUDA_VISIBLE_DEVICES; sleep 1"], "num_cpus": 2, "num_gpus": 1},
  {"name": "w2", "command": ["sh", "-c", "echo \$CUDA_VISIBLE_DEVICES; sleep 1"], "num_cpus": 2, "num_gpus": 1},
  {"name": "w3", "command": ["sh", "-c", "echo \$CUDA_VISIBLE_DEVICES; sleep 1"], "num_cpus": 2, "num_gpus": 1}
]}
EOF
cat >"$T/a/driver.sh" <<EOF
#!/bin/bash
set -u
out=$T/a
echo "\$LOOM_ADDRESS" >"\$out/address"
"$LOOM" status --json >"\$out/status.json" || exit 3
job=\$("$LOOM" submit "\$out/graph.json" --wait --timeout 120) || exit 4
"$LOOM" get "\$job" sum --json >"\$out/sum.txt" || exit 5
"$LOOM" job "\$job" >"\$out/job.json" || exit 6
"$LOOM" logs "\$job" w0 >"\$out/w0.log" || exit 7
echo "driver done"
EOF
chmod +x "$T/a/driver.sh"
capture "${SLURM_ENV_EXEC[@]}" "$LOOM" slurm submit --dir "$JOBS" --nodes 2 --cpus-per-node 2 --gpus-per-node 1 --time 5 \
    -- "$T/a/driver.sh"
JA=$OUT
check "loom slurm submit (from the first host) prints a job id" grep -Eq '^[0-9]+$' <<<"$JA"
[ -n "$JA" ] || { show_capture; finish; }
state=$(slurm_env_wait_job "$JA" 150 || true)
check "the job completed ($state)" test "${state%% *}" = COMPLETED
if ! grep -q "driver done" "$JOBS/$JA/slurm.out" 2>/dev/null; then
    sed 's/^/#   /' "$JOBS/$JA/slurm.out" 2>/dev/null | tail -20
    for f in "$JOBS/$JA"/logs/*; do echo "# $f:"; tail -n 15 "$f" | sed 's/^/#   /'; done
fi
check "the driver ran to its end" grep -q "driver done" "$JOBS/$JA/slurm.out"
HEAD=$(cat "$T/a/address" 2>/dev/null || true)
check "the head listens at the first node's namespace address ($HEAD)" grep -Eq '^10\.[0-9]+\.[0-9]+\.1:[0-9]+$' <<<"$HEAD"
check "2 nodes joined" \
    test "$(json_eval "$T/a/status.json" 'sum(1 for n in d["nodes"] if n["state"]=="alive")' 2>/dev/null)" = 2
check "each daemon advertises its own host's address" \
    test "$(json_eval "$T/a/status.json" 'sorted(n["address"].split(":")[0].split(".")[3] for n in d["nodes"])' 2>/dev/null)" = "['1', '2']"
check "each daemon has the 1 GPU Slurm gave the job on its node" \
    test "$(json_eval "$T/a/status.json" '[n["gpus"] for n in d["nodes"]]' 2>/dev/null)" = "[1, 1]"
check "the graph's result is right (42)" test "$(cat "$T/a/sum.txt" 2>/dev/null)" = 42
check "its tasks ran on both hosts" \
    test "$(json_eval "$T/a/job.json" 'len(set(t["node"] for t in d["tasks"] if t["name"].startswith("w")))' 2>/dev/null)" = 2
check "a GPU task saw its node's Slurm GPU (CUDA_VISIBLE_DEVICES=0)" grep -qx 0 "$T/a/w0.log"
check "no loom process of the job is left" \
    wait_until 15 eval '[ -z "$(pgrep -f -- "$JOBS/$JA|$TMPDIR/loom-[0-9]+/slurm-$JA-[0-9]+-" || true)" ]'
check "its node-local dirs are gone" eval '[ -z "$(ls -d "$TMPDIR"/loom-*/slurm-"$JA"-* 2>/dev/null)" ]'
check "Slurm stops and leaves no process behind" slurm_env_down
finish
