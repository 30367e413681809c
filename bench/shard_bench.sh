#!/usr/bin/env bash
# bench/shard_bench.sh — batch inference figures (shard/, `loom infer`):
#   1. throughput with 1, 2 and 3 node daemons (1 CPU each, one machine; the
#      head has no node of its own): rows/s of a 64-2048-2048-10 MLP over
#      20,000 rows in shards of 500, the cache off;
#   2. the cache: the same 100,000-row run twice with a 64-3072-3072-10 MLP
#      (the model of tests/sys_shard.sh), wall time of each.
# Needs python3-numpy (for the data and the model) and curl.
#
#   bash bench/shard_bench.sh [--rows N (20000)]
# Environment: LOOM_BUILD_DIR (default <repo>/build).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
build=${LOOM_BUILD_DIR:-$repo/build}
loom=$build/bin/loom
py=/usr/bin/python3
rows=20000
[ "${1:-}" = --rows ] && rows=$2
tmp=$(mktemp -d)
D=$tmp/state
trap '"$loom" stop --state-dir "$D" >/dev/null 2>&1 || true; rm -rf "$tmp"' EXIT
data() { "$py" "$repo/tests/shard_data.py" "$@"; }
now() { date +%s.%N; }

"$loom" start --head --no-node --port 0 --http-port 0 --http-auth=none --state-dir "$D" >/dev/null
H=http://$(cat "$D/http_address")
data model "$tmp/m.safetensors" --widths 64,2048,2048,10
data data "$tmp/x.npy" --rows "$rows"
curl -sf -o /dev/null --data-binary @"$tmp/m.safetensors" "$H/v1/models/bench?framework=loom-mlp"

echo "== throughput by node daemons (1 CPU each, $(nproc) cores on this machine)"
printf '%-8s %12s %10s\n' daemons rows/s seconds
for n in 1 2 3; do
    "$loom" start --address "$(cat "$D/address")" --state-dir "$D" --num-cpus 1 >/dev/null
    for _ in $(seq 1 50); do
        alive=$("$loom" status --json --state-dir "$D" | "$py" -c 'import json,sys; print(sum(n["state"]=="alive" for n in json.load(sys.stdin)["nodes"]))')
        [ "$alive" = "$n" ] && break
        sleep 0.2
    done
    t0=$(now)
    "$loom" infer --model bench --input "$tmp/x.npy" --shard-size 500 --max-in-flight $((2 * n)) \
        --output "$tmp/out$n" --no-cache --straggler-factor -1 --state-dir "$D" --quiet >/dev/null
    t1=$(now)
    "$py" -c "print('%-8d %12.0f %10.2f' % ($n, $rows / ($t1 - $t0), $t1 - $t0))"
done

echo
echo "== the cache (64-3072-3072-10 MLP, 100,000 rows, shards of 2000, $(nproc) cores)"
data model "$tmp/w.safetensors" --widths 64,3072,3072,10
curl -sf -o /dev/null --data-binary @"$tmp/w.safetensors" "$H/v1/models/wide?framework=loom-mlp"
data data "$tmp/big.npy" --rows 100000 --seed 9
t0=$(now)
"$loom" infer --model wide --input "$tmp/big.npy" --shard-size 2000 --output "$tmp/c1" --state-dir "$D" --quiet >/dev/null
t1=$(now)
"$loom" infer --model wide --input "$tmp/big.npy" --shard-size 2000 --output "$tmp/c2" --state-dir "$D" --quiet >/dev/null
t2=$(now)
"$py" -c "a, b = $t1 - $t0, $t2 - $t1; print('first run %.2f s, second (all cache hits) %.3f s: %.0fx' % (a, b, a / b))"
