#!/bin/bash
# sys_netns.sh — a cluster across three "hosts": network namespaces made by
# this test, joined by veth pairs to a bridge in the first.  The head and the
# drivers run in ns1 (10.R.0.1), a node daemon in each of ns2 and ns3
# (10.R.0.2, 10.R.0.3), each with its own state dir, node dir, object store
# and a copy of the secret.  Drivers must get right answers with tasks placed
# on both remote nodes and objects moving between them over the veths.
# Needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) and iproute2; skipped otherwise.
set -euo pipefail
. "$(dirname "$0")/lib.sh" "$@"

TAG=lm$$
NS1=${TAG}h
NS2=${TAG}a
NS3=${TAG}b
NSES=()
NET=10.$((($$ % 200) + 20)).0     # any private /24: it exists only inside the namespaces
IP1=$NET.1
IP2=$NET.2
IP3=$NET.3

remove_namespaces()
{
    local ns p
    for ns in "${NSES[@]}"; do
        for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
    done
    for ns in "${NSES[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
}
on_cleanup remove_namespaces

skip_all()
{
    echo "# $*"
    skip "multi-host test with network namespaces: $*"
    finish
    exit 0
}

IP=$(command -v ip || ls /usr/sbin/ip /sbin/ip 2>/dev/null | head -1 || true)
[ -n "$IP" ] || skip_all "no 'ip' command (iproute2)"
ip() { "$IP" "$@"; }
if [ "$(id -u)" -ne 0 ] && ! "$IP" netns list >/dev/null 2>&1; then
    skip_all "not root and cannot list network namespaces"
fi
# namespaces of an earlier run of this test that was killed before its trap
# ran (named lmPID[hab], PID gone): remove them and what runs in them
for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^lm[0-9]+[hab]$' || true); do
    owner=${ns:2:-1}
    if ! kill -0 "$owner" 2>/dev/null; then
        for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
        ip netns del "$ns" 2>/dev/null && echo "# removed a stale namespace $ns"
    fi
done
NSES+=("$NS1")   # before trying: a half-made namespace is removed too
if ! ip netns add "$NS1" 2>"$T/netns.err"; then
    skip_all "cannot create network namespaces here ($(head -1 "$T/netns.err"))"
fi
if ! ip -n "$NS1" link add br0 type bridge 2>"$T/netns.err"; then
    skip_all "cannot create a bridge in a namespace ($(head -1 "$T/netns.err"))"
fi

# ---- the network ---------------------------------------------------------------
ip -n "$NS1" link set lo up
ip -n "$NS1" link set br0 up
ip -n "$NS1" addr add "$IP1/24" dev br0
i=0
for ns in "$NS2" "$NS3"; do
    i=$((i + 1))
    ip netns add "$ns"
    NSES+=("$ns")
    ip -n "$NS1" link add "v$i" type veth peer name eth0 netns "$ns"
    ip -n "$NS1" link set "v$i" master br0
    ip -n "$NS1" link set "v$i" up
    ip -n "$ns" link set lo up
    ip -n "$ns" link set eth0 up
done
ip -n "$NS2" addr add "$IP2/24" dev eth0
ip -n "$NS3" addr add "$IP3/24" dev eth0
ok "3 namespaces ($NS1 $NS2 $NS3) on $NET.0/24"

# can_reach NS IP PORT: a TCP connection from NS to IP:PORT succeeds
can_reach() { ip netns exec "$1" timeout 3 bash -c "exec 3<>/dev/tcp/$2/$3" 2>/dev/null; }
ip netns exec "$NS1" timeout 20 "$PY" -c '
import socket, sys
s = socket.socket(); s.bind((sys.argv[1], 0)); s.listen(4)
print(s.getsockname()[1], flush=True)
for _ in range(2): s.accept()[0].close()
' "$IP1" >"$T/probe.port" &
PROBE=$!
wait_until 5 test -s "$T/probe.port" || true
PP=$(cat "$T/probe.port")
check "ns2 reaches ns1 over the bridge" can_reach "$NS2" "$IP1" "$PP"
check "ns3 reaches ns1 over the bridge" can_reach "$NS3" "$IP1" "$PP"
kill "$PROBE" 2>/dev/null || true
wait "$PROBE" 2>/dev/null || true

# ---- the cluster -------------------------------------------------------------------
D1=$T/h1
D2=$T/h2
D3=$T/h3
use_state_dir "$D1"
use_state_dir "$D2"
use_state_dir "$D3"
in1() { "$IP" netns exec "$NS1" timeout -k 5 60 "$@"; }   # bounded, for plain calls
IN1=("$IP" netns exec "$NS1")                                  # for capture (which bounds)

capture "${IN1[@]}" "$LOOM" start --head --no-node --port 0 --bind "$IP1" --state-dir "$D1"
if [ "$RC" -ne 0 ]; then bad "start the head in $NS1"; show_capture; finish; exit 1; fi
ADDR=$(cat "$D1/address")
check "the head listens on $ADDR" grep -q "^$IP1:[0-9]*$" <<<"$ADDR"
check "the head is not reachable from the root namespace's loopback" \
    eval '! timeout 3 bash -c "exec 3<>/dev/tcp/127.0.0.1/${ADDR##*:}" 2>/dev/null'

start_node()
{
    local ns=$1 ip=$2 d=$3
    mkdir -p "$d"
    chmod 700 "$d"
    cp "$D1/secret" "$d/secret"
    chmod 600 "$d/secret"
    capture "$IP" netns exec "$ns" "$LOOM" start --address "$ADDR" --bind "$ip" --advertise "$ip" \
        --state-dir "$d" --node-dir "$d/node" --store-dir "$d/store" --num-cpus 2 --store-bytes 256M
    check "a node daemon in $ns ($ip) joins" test "$RC" -eq 0
    [ "$RC" -eq 0 ] || show_capture
}
start_node "$NS2" "$IP2" "$D2"
start_node "$NS3" "$IP3" "$D3"

status1() { in1 "$LOOM" status --json --state-dir "$D1" >"$T/status.json" 2>/dev/null; }
two_alive() { status1 && [ "$(json_eval "$T/status.json" 'sum(n["state"]=="alive" for n in d["nodes"])')" = 2 ]; }
check "status (from $NS1): 2 alive nodes" wait_until 15 two_alive
check "the nodes advertise their namespaces' addresses" \
    test "$(json_eval "$T/status.json" '" ".join(sorted(n["address"].split(":")[0] for n in d["nodes"]))')" = "$IP2 $IP3"
NODE2=$(json_eval "$T/status.json" '[n["id"] for n in d["nodes"] if n["address"].startswith(sys.argv[3] + ":")][0]' "$IP2")
NODE3=$(json_eval "$T/status.json" '[n["id"] for n in d["nodes"] if n["address"].startswith(sys.argv[3] + ":")][0]' "$IP3")

# ---- a graph whose data must cross between the nodes ------------------------------
# 8 producers of 200000-byte files (too big to travel inline in messages), then a
# task that reads all of them (so it pulls what the other node made), and small
# consumers of each.
"$PY" - "$EXLIB" >"$T/graph.json" <<'PYEOF'
import json, sys
tasks = []
for k in range(8):
    tasks.append({"name": "gen%d" % k, "outputs": ["out.bin"],
                  "command": ["sh", "-c", "sleep 0.3; head -c 200000 /dev/zero | tr '\\0' '%d' > out.bin" % k]})
    tasks.append({"name": "len%d" % k, "function": "length", "args": [{"ref": "gen%d" % k, "output": 1}]})
tasks.append({"name": "all", "outputs": ["n.txt", "all.bin"],
              "command": ["sh", "-c", 'i=0; while [ $i -lt $LOOM_NARGS ]; do eval cat \\"\\$LOOM_ARG_$i\\"; '
                                      'i=$((i+1)); done | tee all.bin | wc -c > n.txt'],
              "args": [{"ref": "gen%d" % k, "output": 1} for k in range(8)]})
tasks.append({"name": "total", "function": "length", "args": [{"ref": "all", "output": 2}]})
print(json.dumps({"name": "netns", "library": sys.argv[1], "tasks": tasks}, indent=1))
PYEOF
check "the graph is valid JSON" eval '"$PY" -m json.tool "$T/graph.json" >/dev/null'

capture "${IN1[@]}" timeout 120 "$LOOM" submit "$T/graph.json" --wait --timeout 100 --state-dir "$D1"
check "loom submit --wait from $NS1 succeeds" test "$RC" -eq 0
[ "$RC" -eq 0 ] || show_capture
JOB=$(head -1 <<<"$OUT")
in1 "$LOOM" job "$JOB" --state-dir "$D1" >"$T/job.json" 2>/dev/null || true
GEN_NODES=$(json_eval "$T/job.json" '" ".join(sorted(set(str(t["node"]) for t in d["tasks"] if t["name"].startswith("gen"))))' 2>/dev/null || true)
check "producers ran on both nodes (nodes: $GEN_NODES)" test "$GEN_NODES" = "$(printf '%s\n' "$NODE2" "$NODE3" | sort | tr '\n' ' ' | sed 's/ $//')"
ALL_NODE=$(json_eval "$T/job.json" '[t["node"] for t in d["tasks"] if t["name"]=="all"][0]' 2>/dev/null || true)
FROM_OTHER=$(json_eval "$T/job.json" 'sum(1 for t in d["tasks"] if t["name"].startswith("gen") and t["node"] != int(sys.argv[3]))' "${ALL_NODE:-0}" 2>/dev/null || echo 0)
check "'all' (on node $ALL_NODE) read $FROM_OTHER producers' outputs from the other node" test "${FROM_OTHER:-0}" -gt 0
capture "${IN1[@]}" "$LOOM" get "$JOB" all:1 --state-dir "$D1"
check "'all' read every byte: $OUT" test "$RC:$(tr -d ' ' <<<"$OUT")" = "0:1600000"
capture "${IN1[@]}" "$LOOM" get "$JOB" total --json --state-dir "$D1"
check "length of 'all' (another move) is 1600000" test "$RC:$OUT" = "0:1600000"
LENS=$(for k in 0 1 2 3 4 5 6 7; do in1 "$LOOM" get "$JOB" "len$k" --json --state-dir "$D1" 2>/dev/null || echo x; done | sort -u | tr '\n' ' ')
check "every producer's output is 200000 bytes ($LENS)" test "$LENS" = "200000 "
in1 "$LOOM" get "$JOB" all:2 --state-dir "$D1" >"$T/all.bin" 2>/dev/null || true
check "the driver in $NS1 fetched a 1.6 MB object from a node: $(wc -c <"$T/all.bin") bytes" \
    test "$(wc -c <"$T/all.bin")" -eq 1600000
check "  ... with the right content" test "$(md5sum <"$T/all.bin")" = \
    "$(for k in 0 1 2 3 4 5 6 7; do head -c 200000 /dev/zero | tr '\0' "$k"; done | md5sum)"
capture "${IN1[@]}" "$LOOM" get "$JOB" gen3:1 --state-dir "$D1"
check "a producer's output read from $NS1 is right" test "$OUT" = "$(head -c 200000 /dev/zero | tr '\0' 3)"
in1 "$LOOM" delete "$JOB" --state-dir "$D1" >/dev/null 2>&1 || true

# ---- the example drivers, from ns1 -----------------------------------------------------
capture "${IN1[@]}" env LOOM_SECRET_FILE="$D1/secret" timeout 180 "$BUILD/bin/tree_reduce" --address "$ADDR" --leaves 2000 --lib "$EXLIB"
echo "  $OUT"
check "tree_reduce --leaves 2000 from $NS1 is correct" eval '[ "$RC" -eq 0 ] && grep -q "correct" <<<"$OUT"'

WANT_TOTAL=$(cat /usr/share/common-licenses/* | tr -c 'A-Za-z' '\n' | grep -c '[A-Za-z]')
capture "${IN1[@]}" env LOOM_SECRET_FILE="$D1/secret" timeout 180 "$BUILD/bin/wordcount" --address "$ADDR" --lib "$EXLIB"
echo "  $(head -1 <<<"$OUT")"
check "wordcount from $NS1 counts $WANT_TOTAL words" \
    eval '[ "$RC" -eq 0 ] && grep -q " $WANT_TOTAL words" <<<"$OUT"'

# actors on the two hosts all-reducing gradients over the veths (collective
# CPU backend: each member listens on its node's namespace address)
if DIGITS=$(bash "$SRC/scripts/get_digits.sh" 2>/dev/null); then
    capture "${IN1[@]}" env LOOM_SECRET_FILE="$D1/secret" timeout 180 "$BUILD/bin/dp_train" --address "$ADDR" \
        --workers 2 --steps 40 --rounds 4 --data "$DIGITS" --lib "$BUILD/lib/libloom_dp_examples.so"
    echo "  $(grep -E "Trainers|max \|w" <<<"$OUT" | tr '\n' ' ')"
    check "dp_train: 2 Trainers on the 2 hosts train to the single-worker weights" \
        eval '[ "$RC" -eq 0 ] && grep -q "(2 distinct)" <<<"$OUT" && grep -q ": match" <<<"$OUT"'
else
    skip "dp_train across hosts: the digits dataset could not be fetched"
fi

status1 || true
check "the cluster finished the drivers' tasks: $(json_eval "$T/status.json" 'd["total"]')" \
    test "$(json_eval "$T/status.json" 'd["total"]["finished"] >= 3999 + 25 and d["total"]["failed"] == 0')" = True
check "both nodes still alive" two_alive
check "the node logs show no transfer failure" eval '! grep -h "fetch from .* failed" "$D2"/logs/*.log "$D3"/logs/*.log'

# ---- stop ----------------------------------------------------------------------
for d in "$D2" "$D3" "$D1"; do timeout -k 5 60 "$LOOM" stop --state-dir "$d" >/dev/null 2>&1 || true; done
check "no loom process is left in the namespaces" wait_until 10 eval \
    '[ -z "$(for ns in "${NSES[@]}"; do ip netns pids "$ns"; done)" ]'

finish
