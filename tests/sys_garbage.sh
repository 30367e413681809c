#!/bin/bash
# sys_garbage.sh — random and truncated bytes sent to every port the daemons
# open leave them serving.  A head and two node daemons are started; every TCP
# port they listen on (the head's, the daemons' data ports) and every ipc
# socket (the daemons' executor endpoints) gets garbage from loom_fuzz.py:
# random bytes, truncated and corrupted ZMTP greetings and handshakes, random
# msgpack after a valid handshake, real loom messages truncated at every
# length and mutated, lying msgpack headers, huge frame sizes, connection
# churn, and well-formed nonsense from a peer that knows the secret.  The
# tcp ports speak CURVE (runtime/curve.h): the fuzzer must see them shut its
# plaintext peers out and never answer them; the ipc sockets' decoders get
# the bad frames.  Afterwards the same processes must still serve: status
# shows both nodes, a graph runs, and the logs show the rejections.
set -euo pipefail
. "$(dirname "$0")/lib.sh" "$@"

PAYLOADS=${LOOM_FUZZ_PAYLOADS:-4000}
SECONDS_MAX=${LOOM_FUZZ_SECONDS:-60}
D=$T/st
use_state_dir "$D"

capture "$LOOM" start --head --port 0 --state-dir "$D" --num-cpus 2
if [ "$RC" -ne 0 ]; then bad "start the head"; show_capture; finish; exit 1; fi
ADDR=$(cat "$D/address")
capture "$LOOM" start --address "$ADDR" --state-dir "$D" --num-cpus 2
if [ "$RC" -ne 0 ]; then bad "start a second node"; show_capture; finish; exit 1; fi
check "cluster of 2 nodes is up" wait_until 10 nodes_alive_eq 2 "$D"

# a graph that needs both nodes' executors and moves data between them
cat >"$T/graph.json" <<EOF
{"name": "after-garbage", "library": "$EXLIB", "tasks": [
  {"name": "c0", "function": "count_words", "args": [{"file": "/usr/share/common-licenses/GPL-3"}]},
  {"name": "c1", "function": "count_words", "args": [{"file": "/usr/share/common-licenses/GPL-2"}]},
  {"name": "c2", "function": "count_words", "args": [{"file": "/usr/share/common-licenses/LGPL-2.1"}]},
  {"name": "c3", "function": "count_words", "args": [{"file": "/usr/share/common-licenses/MPL-1.1"}]},
  {"name": "m", "function": "merge_counts", "args": [{"ref": "c0"}, {"ref": "c1"}, {"ref": "c2"}, {"ref": "c3"}]},
  {"name": "big", "command": ["sh", "-c", "head -c 300000 /dev/zero > big.bin"], "outputs": ["big.bin"]},
  {"name": "len", "function": "length", "args": [{"ref": "big", "output": 1}]},
  {"name": "sum", "function": "add", "args": [{"msgpack": 40}, {"msgpack": 2}]}
]}
EOF
run_graph()
{
    local tag=$1
    capture "$LOOM" submit "$T/graph.json" --wait --timeout 60 --state-dir "$D"
    check "$tag: submit --wait succeeds" test "$RC" -eq 0
    [ "$RC" -eq 0 ] || show_capture
    local job
    job=$(head -1 <<<"$OUT")
    capture "$LOOM" get "$job" sum --json --state-dir "$D"
    check "$tag: add gives 42" test "$RC:$OUT" = "0:42"
    capture "$LOOM" get "$job" len --json --state-dir "$D"
    check "$tag: length of a 300000-byte object" test "$RC:$OUT" = "0:300000"
    capture "$LOOM" get "$job" m --json --state-dir "$D"
    printf '%s\n' "$OUT" >"$T/m.json"
    check "$tag: word count merged (the: $(json_eval "$T/m.json" 'd.get("the")' 2>/dev/null))" \
        test "$(json_eval "$T/m.json" 'd.get("the", 0) > 1000' 2>/dev/null)" = True
    timeout -k 5 30 "$LOOM" delete "$job" --state-dir "$D" >/dev/null 2>&1 || true
}
run_graph "before"

# ---- find every port ---------------------------------------------------------
PIDS=$(state_pids "$D" | sort -n | tr '\n' ' ')
check "3 daemons recorded (head + 2 nodes): $PIDS" test "$(wc -w <<<"$PIDS")" -eq 3
status_json "$D" "$T/status.json"
HEAD_PORT=${ADDR##*:}
DATA_ADDRS=$(json_eval "$T/status.json" '" ".join(n["address"] for n in d["nodes"])')
PORTS="$HEAD_PORT"
for a in $DATA_ADDRS; do PORTS="$PORTS ${a##*:}"; done
# whatever else they listen on (ss -ltnp), by pid
SS_PORTS=""
if command -v ss >/dev/null; then
    for p in $PIDS; do
        SS_PORTS="$SS_PORTS $(ss -Hltnp 2>/dev/null | grep -F "pid=$p," | awk '{print $4}' | sed 's/.*://' | tr '\n' ' ')"
    done
    SS_PORTS=$(tr ' ' '\n' <<<"$SS_PORTS" | grep -E '^[0-9]+$' | sort -un | tr '\n' ' ' || true)
    KNOWN=$(tr ' ' '\n' <<<"$PORTS" | grep -E '^[0-9]+$' | sort -un | tr '\n' ' ')
    MISSING=$(comm -23 <(tr ' ' '\n' <<<"$KNOWN" | grep . | sort) <(tr ' ' '\n' <<<"$SS_PORTS" | grep . | sort) | tr '\n' ' ')
    OTHER=$(comm -13 <(tr ' ' '\n' <<<"$KNOWN" | grep . | sort) <(tr ' ' '\n' <<<"$SS_PORTS" | grep . | sort) | tr '\n' ' ')
    check "ss (by pid) sees the ports status reports ($KNOWN)" test -z "${MISSING// /}"
    [ -z "${OTHER// /}" ] || echo "# more listening ports (attacked too, protocol unknown): $OTHER"
fi
PORTS=$(tr ' ' '\n' <<<"$PORTS" | grep -E '^[0-9]+$' | sort -un | tr '\n' ' ')
TARGETS=()
for p in $PORTS; do TARGETS+=(--target "tcp:127.0.0.1:$p"); done
for p in ${OTHER:-}; do TARGETS+=(--target "other:127.0.0.1:$p"); done
IPCS=$(find "$D/nodes" -name exec.sock -type s 2>/dev/null | sort)
for s in $IPCS; do TARGETS+=(--target "ipc:$s"); done
check "3 loom TCP ports to attack: $PORTS" test "$(wc -w <<<"$PORTS")" -eq 3
check "2 executor ipc sockets to attack" test "$(wc -w <<<"$IPCS")" -eq 2

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

# ---- the garbage -------------------------------------------------------------
echo "# fuzzing ${TARGETS[*]}"
set +e
timeout $((SECONDS_MAX + 60)) "$PY" "$SRC/tests/loom_fuzz.py" fuzz "${TARGETS[@]}" \
    --payloads "$PAYLOADS" --seconds "$SECONDS_MAX" --secret-file "$D/secret" \
    ${LOOM_FUZZ_SEED:+--seed "$LOOM_FUZZ_SEED"} >"$T/fuzz.log" 2>&1
FRC=$?
set -e
sed 's/^/  fuzz: /' "$T/fuzz.log" | tail -30
check "the fuzzer's own checks hold (answers before and after, no refused connections)" test "$FRC" -eq 0

# ---- still serving, same processes -------------------------------------------
for p in $PIDS; do
    check "pid $p ($(cat "$D/pids/$p" 2>/dev/null)) is still alive" kill -0 "$p"
    check "pid $p uses less than 512 MiB ($(rss_kb "$p") KiB)" test "$(rss_kb "$p")" -lt $((512 * 1024))
done
check "the recorded pids are the same (no restart)" test "$(state_pids "$D" | sort -n | tr '\n' ' ')" = "$PIDS"
check "status: exactly 2 nodes, both alive" wait_until 10 nodes_alive_eq 2 "$D"
status_json "$D" "$T/status_after.json"
check "status: no extra nodes joined" test "$(json_eval "$T/status_after.json" 'len(d["nodes"])')" = 2
check "status: same data addresses" \
    test "$(json_eval "$T/status_after.json" '" ".join(n["address"] for n in d["nodes"])')" = "$DATA_ADDRS"
for p in $PORTS ${OTHER:-}; do
    check "port $p still listens" eval "ss -Hltn 2>/dev/null | awk '{print \$4}' | grep -q ':$p\$'"
done
run_graph "after"

# ---- the logs say what was refused -------------------------------------------
HEADLOG=$D/logs/head.log
NODELOGS=$(ls "$D"/logs/node-*.log)
for p in $PORTS; do
    check "port $p speaks CURVE and shut the fuzzer's plaintext peers out, before and after" \
        test "$(grep -c "tcp:127.0.0.1:$p speaks CURVE and shuts out a plaintext peer" "$T/fuzz.log")" -eq 2
done
check "head log: no garbage reached the decoder through CURVE" eval '! grep -q "rejected a malformed message" "$HEADLOG"'
for f in $NODELOGS; do
    check "$(basename "$f"): no garbage reached the data port's decoder" \
        eval '! grep -q "data port: rejected a malformed message" "$f"'
    check "$(basename "$f"): bad messages on the executor socket logged" \
        grep -q "bad message from an executor\|refused an executor hello" "$f"
done
check "no assertion, sanitizer report or crash in the logs" \
    eval '! grep -l "Assertion\|AddressSanitizer\|runtime error\|Segmentation\|core dumped" "$D"/logs/*.log "$D"/nodes/*/logs/*.log 2>/dev/null'

finish
