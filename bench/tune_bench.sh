#!/usr/bin/env bash
# bench/tune_bench.sh — figures of loom's sweeps (tune/), printed as one table:
#   1. search quality: best value found by random search and TPE in 60 trials
#      on Branin and Hartmann-6, mean and median over 40 seeds, beside Optuna's
#      RandomSampler and TPESampler on the same problems (the peer, Debian's
#      python3-optuna: `apt-get install python3-optuna`), and the time each
#      takes to suggest a config;
#   2. the sweep runtime on a local cluster (1 node, 2 CPUs): reports a
#      second through the report/answer round trip, and trials started a
#      second (function trials from examples/tune).
#
#   bash bench/tune_bench.sh [--seeds N] [--trials N] [--no-peer]
# Environment: LOOM_BUILD_DIR (default <repo>/build), PYTHON (/usr/bin/python3).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
build=${LOOM_BUILD_DIR:-$repo/build}
python=${PYTHON:-/usr/bin/python3}
seeds=40 trials=60 peer=1
while [ $# -gt 0 ]; do
    case "$1" in
    --seeds) seeds=$2; shift 2 ;;
    --trials) trials=$2; shift 2 ;;
    --no-peer) peer=0; shift ;;
    *) echo "usage: $0 [--seeds N] [--trials N] [--no-peer]" >&2; exit 2 ;;
    esac
done
tmp=$(mktemp -d)
trap 'LOOM_STATE_DIR=$tmp/state "$build/bin/loom" stop --state-dir "$tmp/state" >/dev/null 2>&1 || true; rm -rf "$tmp"' EXIT

echo "== search quality ($trials trials, $seeds seeds; lower is better)"
"$build/bin/tune_search_bench" --seeds "$seeds" --trials "$trials" >"$tmp/search.jsonl"
if [ "$peer" = 1 ] && "$python" -c 'import optuna' 2>/dev/null; then
    "$python" "$here/tune_peer_optuna.py" --seeds "$seeds" --trials "$trials" >>"$tmp/search.jsonl"
else
    echo "(the Optuna peer is skipped: --no-peer, or python3-optuna is not installed)"
fi
"$python" - "$tmp/search.jsonl" <<'PYEOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("%-10s %-8s %-14s %12s %12s %14s" % ("function", "search", "impl", "mean best", "median best", "ms/suggest"))
for r in sorted(rows, key=lambda r: (r["function"], r["algorithm"], r["impl"])):
    print("%-10s %-8s %-14s %12.4f %12.4f %14.4f" % (r["function"], r["algorithm"], r["impl"],
          r["mean_best"], r["median_best"], r["suggest_ms"]))
PYEOF

echo
echo "== the sweep runtime (local cluster: 1 node, 2 CPUs)"
D=$tmp/state
"$build/bin/loom" start --head --port 0 --state-dir "$D" --num-cpus 2 >/dev/null
lib=$build/lib/libloom_tune_examples.so
cat >"$tmp/reports.json" <<EOF
{"name": "reports", "metric": "loss", "space": {"a": {"type": "uniform", "lower": 0, "upper": 1},
 "b": 1, "step_ms": 0, "max_t": 1000}, "trial": {"library": "$lib", "function": "curve"},
 "limits": {"trials": 2, "concurrent": 2}}
EOF
cat >"$tmp/starts.json" <<EOF
{"name": "starts", "metric": "loss", "space": {"a": {"type": "uniform", "lower": 0, "upper": 1},
 "b": 1, "step_ms": 0, "max_t": 1}, "trial": {"library": "$lib", "function": "curve"},
 "limits": {"trials": 100, "concurrent": 2}}
EOF
for s in reports starts; do
    "$build/bin/loom" tune run "$tmp/$s.json" --state-dir "$D" --output "$tmp/out-$s" --quiet >/dev/null 2>&1
done
"$python" - "$tmp/out-reports/results.json" "$tmp/out-starts/results.json" <<'PYEOF'
import json, sys
r = json.load(open(sys.argv[1])); s = json.load(open(sys.argv[2]))
n = sum(len(t["results"]) for t in r["trials"])
print("reports answered:  %d in %.2f s = %.0f /s (2 trials at once; %.2f ms per report and trial)"
      % (n, r["sweep"]["usage"]["wall_s"], n / r["sweep"]["usage"]["wall_s"], 2e3 * r["sweep"]["usage"]["wall_s"] / n))
m = len(s["trials"])
print("trials run:        %d one-step trials in %.2f s = %.1f /s (2 at once)"
      % (m, s["sweep"]["usage"]["wall_s"], m / s["sweep"]["usage"]["wall_s"]))
PYEOF
