#!/bin/bash
# sys_netcut.sh — a network cut: the head in namespace ns1 (10.R.0.1), a node
# daemon in each of ns2 and ns3, joined by veth pairs to a bridge in ns1.
# While chaos_driver's graph (and its actor) runs, ns2's link is cut (its veth
# set down, the daemon left running but unreachable).  The head must mark that
# node dead within the heartbeat timeout (1.5 s here) and a tick, the graph
# must still finish on the ns3 node with the right answer (what ran or was
# kept on the cut node is run again), and once the link is back a new daemon
# in ns2 joins and runs work.
# Needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) and iproute2; skipped otherwise.
set -euo pipefail
. "$(dirname "$0")/lib.sh" "$@"

TAG=lc$$
NS1=${TAG}h
NS2=${TAG}a
NS3=${TAG}b
NSES=()
NET=10.$((($$ % 200) + 20)).1     # any private /24: it exists only inside the namespaces
IP1=$NET.1
IP2=$NET.2
IP3=$NET.3
HB_MS=1500

DRIVER=
remove_namespaces()
{
    local ns p
    [ -n "$DRIVER" ] && kill -9 "$DRIVER" 2>/dev/null
    for ns in "${NSES[@]}"; do
        for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
    done
    for ns in "${NSES[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
}
on_cleanup remove_namespaces

skip_all()
{
    echo "# $*"
    skip "network cut test with network namespaces: $*"
    finish
    exit 0
}

IP=$(command -v ip || ls /usr/sbin/ip /sbin/ip 2>/dev/null | head -1 || true)
[ -n "$IP" ] || skip_all "no 'ip' command (iproute2)"
ip() { "$IP" "$@"; }
if [ "$(id -u)" -ne 0 ] && ! "$IP" netns list >/dev/null 2>&1; then
    skip_all "not root and cannot list network namespaces"
fi
[ -x "$BUILD/bin/chaos_driver" ] || skip_all "chaos_driver is not built"
# namespaces of an earlier run killed before its trap ran (lcPID[hab], PID gone)
for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^lc[0-9]+[hab]$' || true); do
    owner=${ns:2:-1}
    if ! kill -0 "$owner" 2>/dev/null; then
        for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
        ip netns del "$ns" 2>/dev/null && echo "# removed a stale namespace $ns"
    fi
done
NSES+=("$NS1")
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

# ---- the cluster -------------------------------------------------------------------
D1=$T/h1
D2=$T/h2
D3=$T/h3
D2B=$T/h2b
for d in "$D1" "$D2" "$D3" "$D2B"; do use_state_dir "$d"; done
in1() { "$IP" netns exec "$NS1" timeout -k 5 60 "$@"; }
IN1=("$IP" netns exec "$NS1")

capture "${IN1[@]}" "$LOOM" start --head --no-node --port 0 --bind "$IP1" --state-dir "$D1" \
    --heartbeat-timeout-ms "$HB_MS"
if [ "$RC" -ne 0 ]; then bad "start the head in $NS1"; show_capture; finish; fi
ADDR=$(cat "$D1/address")

start_node()
{
    local ns=$1 ip=$2 d=$3
    mkdir -p "$d"
    chmod 700 "$d"
    cp "$D1/secret" "$d/secret"
    chmod 600 "$d/secret"
    capture "$IP" netns exec "$ns" "$LOOM" start --address "$ADDR" --bind "$ip" --advertise "$ip" \
        --state-dir "$d" --node-dir "$d/node" --store-dir "$d/store" --num-cpus 1 --store-bytes 256M
    check "a node daemon in $ns ($ip, state $(basename "$d")) joins" test "$RC" -eq 0
    [ "$RC" -eq 0 ] || show_capture
}
start_node "$NS2" "$IP2" "$D2"
start_node "$NS3" "$IP3" "$D3"

status1() { in1 "$LOOM" status --json --state-dir "$D1" >"$T/status.json" 2>/dev/null; }
n_alive() { status1 && [ "$(json_eval "$T/status.json" 'sum(n["state"]=="alive" for n in d["nodes"])')" = "$1" ]; }
node_at() { json_eval "$T/status.json" '[n["id"] for n in d["nodes"] if n["address"].startswith(sys.argv[3] + ":") and n["state"] == "alive"][0]' "$1" 2>/dev/null || true; }
node_state() { status1 && json_eval "$T/status.json" '[n["state"] for n in d["nodes"] if n["id"] == int(sys.argv[3])][0]' "$1" 2>/dev/null; }
check "status: 2 alive nodes" wait_until 15 n_alive 2
NODE2=$(node_at "$IP2")
NODE3=$(node_at "$IP3")
check "node $NODE2 is in $NS2, node $NODE3 in $NS3" test -n "$NODE2" -a -n "$NODE3"

# ---- the cut, under a running graph ------------------------------------------------
"${IN1[@]}" env LOOM_SECRET_FILE="$D1/secret" timeout -k 5 200 "$BUILD/bin/chaos_driver" --address "$ADDR" \
    --leaves 4000 --leaf-ms 2 --blobs 4 --timeout-s 180 --lib "$EXLIB" >"$T/driver.out" 2>&1 &
DRIVER=$!
busy_on_2() {
    status1 && [ "$(json_eval "$T/status.json" 'sum(n.get("running", 0) for n in d["nodes"] if n["id"] == int(sys.argv[3]))' "$NODE2" 2>/dev/null || echo 0)" != 0 ]
}
wait_until 20 busy_on_2 || true
sleep 1.5   # some results made there, some tasks running there
check "the driver runs when the link is cut" kill -0 "$DRIVER"
t0=$(date +%s%N)
ip -n "$NS1" link set v1 down
echo "# cut $NS2 (node $NODE2): v1 down"
node2_dead() { [ "$(node_state "$NODE2")" = dead ]; }
check "the head marks node $NODE2 dead" wait_until 15 node2_dead
dt=$(( ($(date +%s%N) - t0) / 1000000 ))
check "within the heartbeat timeout and a tick (${dt} ms; timeout $HB_MS ms)" test "$dt" -le $((HB_MS + 2500))
check "the head logged it" grep -q "node $NODE2 (.*) is dead: missed heartbeats" "$D1/logs/head.log"
check "node $NODE3 stays alive" eval '[ "$(node_state "$NODE3")" = alive ]'

DRC=0
wait "$DRIVER" || DRC=$?
DRIVER=
sed 's/^/  [driver] /' "$T/driver.out"
check "the graph finishes on node $NODE3 alone: chaos_driver exits 0 (rc $DRC)" test "$DRC" -eq 0
check "with the right sum" grep -q "ok   the [0-9]*-task graph's sum" "$T/driver.out"
RETRIES=$(grep -c "failed on node $NODE2 (node $NODE2 .*died.*): attempt" "$D1/logs/head.log" || true)
REBUILDS=$(grep -c "runs again to rebuild what was lost (node $NODE2 " "$D1/logs/head.log" || true)
echo "# head log: $RETRIES tasks retried and $REBUILDS rebuilt after node $NODE2 was cut"
check "what ran on node $NODE2 ran again ($RETRIES retries, $REBUILDS rebuilds)" test $((RETRIES + REBUILDS)) -ge 1

# ---- the link back: a new daemon joins ------------------------------------------
ip -n "$NS1" link set v1 up
echo "# $NS2's link is up again"
sleep 2
status1 || true
echo "# after the link came back: $(json_eval "$T/status.json" '", ".join("node %d %s" % (n["id"], n["state"]) for n in d["nodes"])' 2>/dev/null || true)"
grep -h -i "node $NODE2\b" "$D1/logs/head.log" | tail -n 3 | sed 's/^/  [head.log] /' || true
start_node "$NS2" "$IP2" "$D2B"
new_node_alive() { status1 && [ "$(json_eval "$T/status.json" 'sum(n["state"]=="alive" and n["address"].startswith(sys.argv[3] + ":") and n["id"] != int(sys.argv[4]) for n in d["nodes"])' "$IP2" "$NODE2")" -ge 1 ]; }
check "a new node from $NS2 is alive" wait_until 15 new_node_alive
NEWNODE=$(json_eval "$T/status.json" '[n["id"] for n in d["nodes"] if n["state"]=="alive" and n["address"].startswith(sys.argv[3] + ":") and n["id"] != int(sys.argv[4])][0]' "$IP2" "$NODE2" 2>/dev/null || true)
cat >"$T/small.json" <<JSON
{"library": "$EXLIB", "tasks": [
  {"name": "x", "function": "node_id", "args": [], "strategy": "node", "node": ${NEWNODE:-0}}
]}
JSON
capture "${IN1[@]}" timeout 60 "$LOOM" submit "$T/small.json" --wait --timeout 50 --state-dir "$D1"
if [ "$RC" -eq 0 ]; then
    JOB=$(head -1 <<<"$OUT")
    capture "${IN1[@]}" "$LOOM" get "$JOB" x --json --state-dir "$D1"
    check "a task runs on the new node $NEWNODE ($OUT)" test "$RC" -eq 0
else
    # node affinity may not be spelled that way in graph JSON: any task then
    show_capture
    capture "${IN1[@]}" env LOOM_SECRET_FILE="$D1/secret" timeout 120 "$BUILD/bin/tree_reduce" --address "$ADDR" \
        --leaves 200 --lib "$EXLIB"
    check "the cluster with the new node runs a graph ($OUT)" eval '[ "$RC" -eq 0 ] && grep -q correct <<<"$OUT"'
fi

# ---- stop ----------------------------------------------------------------------
for d in "$D2B" "$D2" "$D3" "$D1"; do timeout -k 5 60 "$IP" netns exec "${NSES[0]}" "$LOOM" stop --state-dir "$d" >/dev/null 2>&1 || true; done
left() { for ns in "${NSES[@]}"; do ip netns pids "$ns"; done; }
if [ -n "$(left)" ]; then
    # the cut daemon's state dir is reachable only from ns2 (its head is
    # gone; `loom stop` signals by pid, which works from any namespace)
    for ns in "$NS2" "$NS3"; do
        for d in "$D2" "$D2B" "$D3"; do timeout -k 5 30 "$IP" netns exec "$ns" "$LOOM" stop --state-dir "$d" >/dev/null 2>&1 || true; done
    done
fi
check "no loom process is left in the namespaces" wait_until 10 eval '[ -z "$(left)" ]'
[ -z "$(left)" ] || for p in $(left); do echo "  left: $p $(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null)"; done
finish
