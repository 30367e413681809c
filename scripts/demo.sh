#!/usr/bin/env bash
# scripts/demo.sh — set up loom on a fresh Debian 12 machine and run the demo:
# install dependencies, build, start a local cluster (a head with its HTTP
# gateway and three node daemons), run a map-reduce word count, a 10,000-task
# tree reduction, a command-task graph through the CLI, data-parallel
# training with actors, a hyperparameter sweep whose best model is
# registered, batch inference with that model (twice: the second from
# the cache) and the word count again from Python (examples/python/), then
# stop the cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
bash scripts/build.sh build
LOOM=$PWD/build/bin/loom
export LOOM_STATE_DIR=$(mktemp -d --suffix=.loom-demo)
trap '"$LOOM" stop >/dev/null 2>&1 || true; rm -rf "$LOOM_STATE_DIR"' EXIT

echo "== starting a local cluster: a head and 3 node daemons"
"$LOOM" start --head --port 0 --num-cpus 1 --http-port 0
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

if [ -n "${digits:-}" ]; then
    echo "== a hyperparameter sweep: TPE and ASHA over learning rates and widths of the digits classifier"
    cat >"$LOOM_STATE_DIR/sweep.json" <<JSON
{"name": "demo-digits", "metric": "accuracy", "mode": "max",
 "space": {"lr": {"type": "loguniform", "lower": 0.003, "upper": 1.0},
           "hidden": {"type": "choice", "values": [8, 32, 128]}},
 "search": {"algorithm": "tpe", "seed": 1, "n_startup": 6},
 "scheduler": {"type": "asha", "max_t": 27, "grace_period": 1, "reduction_factor": 3},
 "trial": {"command": ["$PWD/build/bin/digits_mlp", "train", "--data", "$digits", "--val-rows", "360",
           "--epochs", "27", "--lr", "{lr}", "--hidden", "{hidden}", "--report", "--out", "model.safetensors"]},
 "limits": {"trials": 12, "concurrent": 3, "wall_seconds": 120},
 "output": "$LOOM_STATE_DIR/tune", "data": ["$digits"],
 "register": {"name": "digits-tuned", "artifact": "model.safetensors", "token_env": "LOOM_DEMO_TOKEN"}}
JSON
    # the gateway wants a token (auth is on by default): the sweep registers its best model with one
    LOOM_DEMO_TOKEN=$("$LOOM" token create --user demo) && export LOOM_DEMO_TOKEN
    "$LOOM" tune run "$LOOM_STATE_DIR/sweep.json" --quiet
    echo "== batch inference: the registered best model over the 1,797 digits, twice (the second from the cache)"
    cut -d, -f1-64 "$digits" >"$LOOM_STATE_DIR/pixels.csv"
    for run in 1 2; do
        "$LOOM" infer --model digits-tuned --input "$LOOM_STATE_DIR/pixels.csv" --shard-size 200 \
            --output "$LOOM_STATE_DIR/infer$run" --quiet | head -1
    done
fi

if [ -d build/python/loom ] && ls build/python/loom/_loom*.so >/dev/null 2>&1; then
    echo "== Python (import loom): the map-reduce word count as Ray-style remote functions"
    PYTHONPATH=$PWD/build/python /usr/bin/python3 examples/python/map_reduce.py --address "$addr"
else
    echo "== (Python example skipped: build/python/loom was not built; it needs libpython3-dev)"
fi

echo "== the cluster after the demo"
"$LOOM" status
echo "== demo finished; stopping the cluster"
