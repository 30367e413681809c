#!/usr/bin/env bash
# scripts/demo.sh — set up loom on a fresh Debian 12 machine and run the demo:
# install dependencies, build, start a local cluster (a head and three node
# daemons), run a map-reduce word count, a 10,000-task tree reduction and a
# command-task graph through the CLI, then stop the cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
bash scripts/build.sh build
LOOM=$PWD/build/bin/loom
export LOOM_STATE_DIR=$(mktemp -d --suffix=.loom-demo)
trap '"$LOOM" stop >/dev/null 2>&1 || true; rm -rf "$LOOM_STATE_DIR"' EXIT

echo "== starting a local cluster: a head and 3 node daemons"
"$LOOM" start --head --port 0 --num-cpus 1
addr=$(cat "$LOOM_STATE_DIR/address")
"$LOOM" start --address "$addr" --num-cpus 1 >/dev/null
"$LOOM" start --address "$addr" --num-cpus 1 >/dev/null
"$LOOM" status

echo "== word count over /usr/share/common-licenses (map-reduce graph, C driver)"
build/bin/wordcount --address "$addr"

echo "== tree reduction: 10,000 tasks in one graph"
build/bin/tree_reduce --address "$addr" --leaves 5000

echo "== a command-task graph submitted as JSON with the CLI"
job=$("$LOOM" submit examples/graphs/commands.json --wait)
echo "job $job:"
echo -n "  lines in the GPL-3 text: "; "$LOOM" get "$job" count:1
echo -n "  exit status of 'report' (msgpack as JSON): "; "$LOOM" get "$job" report --json
echo "  logs of 'report':"; "$LOOM" logs "$job" report | sed 's/^/    /'
"$LOOM" delete "$job"
echo "== actors: 3 trainers on the 3 nodes train a digits classifier, all-reducing gradients each step"
if digits=$(bash scripts/get_digits.sh); then
    build/bin/dp_train --address "$addr" --workers 3 --steps 200 --data "$digits"
else
    echo "(skipped: the digits dataset could not be fetched from Debian's archive)"
fi
"$LOOM" actors

echo "== the cluster after the demo"
"$LOOM" status
echo "== demo finished; stopping the cluster"
