#!/usr/bin/env bash
# bench/serve_bench.sh — load on the HTTP gateway's KServe v2 /infer with wrk
# (Debian's wrk; installed if missing): requests/s and p50/p99 latency for a
# deployment of the digits classifier on 1, 2 and 4 replicas, the gateway's
# overhead as a ratio to the model's in-process forward pass
# (bench/mlp_predict_bench), and a sustained run with no errors and the head's
# memory sampled (the gateway lives in the head's process).
#
#   bash bench/serve_bench.sh [--seconds S (10)] [--sustain S (60)] [--connections C (16)]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=10 sustain=60 conns=16
while [ $# -gt 0 ]; do
  case $1 in
    --seconds) secs=$2; shift 2 ;;
    --sustain) sustain=$2; shift 2 ;;
    --connections) conns=$2; shift 2 ;;
    *) echo "usage: bash bench/serve_bench.sh [--seconds S] [--sustain S] [--connections C]" >&2; exit 2 ;;
  esac
done
if ! command -v wrk >/dev/null; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get install -y -qq wrk >/dev/null
fi
build=${LOOM_BUILD_DIR:-build}
cmake --build "$build" -j"$(nproc)" --target loom_cli loom_mlp digits_mlp mlp_predict_bench >/dev/null
work=$(mktemp -d)
state=$work/state
trap '"$build/bin/loom" stop --state-dir "$state" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

csv=$(bash scripts/get_digits.sh)
"$build/bin/digits_mlp" train --data "$csv" --out "$work/model.safetensors" | tail -1
"$build/bin/loom" start --head --port 0 --state-dir "$state" --num-cpus 8 --http-port 0 --http-auth=none >/dev/null
H=$(cat "$state/http_address")
for _ in $(seq 50); do curl -sf "http://$H/v2/health/ready" >/dev/null && break; sleep 0.2; done
curl -sf -X POST --data-binary @"$work/model.safetensors" "http://$H/v1/models/digits" >/dev/null

row=$(head -1 "$csv" | cut -d, -f1-64)
cat >"$work/post.lua" <<EOF
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"inputs":[{"name":"pixels","shape":[1,64],"datatype":"FP32","data":[$row]}],"outputs":[{"name":"label"}]}'
EOF

# wrk's "Latency Distribution" in ms, whatever unit it printed
to_ms() { awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /s$/) n *= 1000; printf "%.2f", n }'; }

run_wrk() {   # NAME SECONDS -> sets RPS P50 P99 ERRS
  wrk -t2 -c"$conns" -d"$2"s --latency -s "$work/post.lua" "http://$H/v2/models/$1/infer" >"$work/wrk.txt"
  RPS=$(awk '/^Requests\/sec/ {print $2}' "$work/wrk.txt")
  P50=$(to_ms "$(awk '$1 == "50%" {print $2}' "$work/wrk.txt")")
  P99=$(to_ms "$(awk '$1 == "99%" {print $2}' "$work/wrk.txt")")
  ERRS=$(awk '/Non-2xx/ {n += $NF} /Socket errors/ {for (i = 4; i <= NF; i += 2) n += $i} END {print n + 0}' "$work/wrk.txt")
}

direct=$("$build/bin/mlp_predict_bench" "$work/model.safetensors" 1 20000 | awk '/p50/ {print $2}')
echo
printf "%-10s %12s %10s %10s %8s %18s\n" replicas "requests/s" "p50 ms" "p99 ms" errors "p50 / in-process"
for r in 1 2 4; do
  curl -sf -X POST -d "{\"model\":\"digits\",\"name\":\"r$r\",\"replicas\":$r,\"num_cpus\":1}" \
       "http://$H/v1/deployments" >/dev/null
  run_wrk "r$r" "$secs"
  ratio=$(awk -v a="$P50" -v b="$direct" 'BEGIN { printf "%.0fx", a * 1000 / b }')
  printf "%-10s %12s %10s %10s %8s %18s\n" "$r" "$RPS" "$P50" "$P99" "$ERRS" "$ratio"
  curl -sf -X DELETE "http://$H/v1/deployments/r$r" >/dev/null
done
echo "in-process forward pass of one digit: p50 $direct us (bench/mlp_predict_bench)"

# ---- sustained --------------------------------------------------------------------
curl -sf -X POST -d '{"model":"digits","name":"sustain","replicas":2}' "http://$H/v1/deployments" >/dev/null
head_pid=$(pgrep -f -- "_head --state-dir $state" | head -1)
rss() { awk '/VmRSS/ {print $2}' "/proc/$head_pid/status"; }
rss_before=$(rss)
( for _ in $(seq $((sustain / 5))); do sleep 5; rss; done ) >"$work/rss.txt" &
sampler=$!
run_wrk sustain "$sustain"
wait "$sampler" || true
echo
echo "sustained ${sustain} s on 2 replicas, $conns connections: $RPS requests/s, p50 $P50 ms, p99 $P99 ms, errors $ERRS"
echo "head RSS (KiB, gateway included): before $rss_before, every 5 s: $(tr '\n' ' ' <"$work/rss.txt")"
