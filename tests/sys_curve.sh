#!/bin/bash
# sys_curve.sh — what travels between loom's processes is encrypted.  A head
# and two node daemons run on tcp loopback; tcpdump records every packet on
# their ports (the head's and both data ports) while a job runs a command
# task whose argument holds a unique marker and writes a 300 kB output that a
# function task reads (from a data port when it runs on the other node).  Neither the cluster secret nor the marker may appear
# in the capture.  The control: a second capture of the same ports, with the
# secret and the marker sent there in plaintext, does show them (so the
# check can fail).  Then replay: the longest CURVE client stream recorded
# (greeting, HELLO, INITIATE, messages) is sent again to the head, which must
# close it after its WELCOME (the cookie in the recorded INITIATE was made
# for another connection), and no node joins.
# Needs root and tcpdump; skipped (" 1 skipped") otherwise.
set -euo pipefail
. "$(dirname "$0")/lib.sh" "$@"

if [ "$(id -u)" != 0 ] || ! command -v tcpdump >/dev/null; then
    skip "needs root and tcpdump (scripts/deps.sh test installs it)"
    finish
fi

D=$T/st
use_state_dir "$D"
capture "$LOOM" start --head --port 0 --state-dir "$D" --num-cpus 2
if [ "$RC" -ne 0 ]; then bad "start the head"; show_capture; finish; exit 1; fi
ADDR=$(cat "$D/address")
capture "$LOOM" start --address "$ADDR" --state-dir "$D" --num-cpus 2
if [ "$RC" -ne 0 ]; then bad "start a second node"; show_capture; finish; exit 1; fi
check "a cluster of 2 nodes is up" wait_until 20 nodes_alive_eq 2 "$D"
SECRET=$(cat "$D/secret")
HEAD_PORT=${ADDR##*:}
status_json "$D" "$T/status.json"
DATA_PORTS=$(json_eval "$T/status.json" '" ".join(n["address"].rsplit(":", 1)[1] for n in d["nodes"])')
FILTER="tcp port $HEAD_PORT"
for p in $DATA_PORTS; do FILTER="$FILTER or tcp port $p"; done
MARKER="loom-curve-marker-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
echo "# capturing '$FILTER' on lo; marker $MARKER"

# tcpdump in the background until stop_capture; -U writes each packet at once
TCPDUMP_PID=""
start_capture()
{
    local file=$1
    tcpdump -i lo -nn -U --immediate-mode -s 0 -w "$file" "$FILTER" 2>"$file.log" &
    TCPDUMP_PID=$!
    wait_until 10 grep -q "listening on" "$file.log"
}
stop_capture()
{
    [ -n "$TCPDUMP_PID" ] || return 0
    sleep 1                         # what is in flight reaches the file
    kill -INT "$TCPDUMP_PID" 2>/dev/null || true
    wait "$TCPDUMP_PID" 2>/dev/null || true
    TCPDUMP_PID=""
}
on_cleanup stop_capture

# ---- the cluster's own traffic ---------------------------------------------
CAP=$T/cluster.pcap
check "tcpdump listens on lo" start_capture "$CAP"
cat >"$T/job.json" <<EOF
{"name": "curve", "library": "$EXLIB", "tasks": [
  {"name": "cmd", "command": ["sh", "-c", "echo \$0; head -c 300000 /dev/zero > big.bin", "$MARKER"],
   "outputs": ["big.bin"]},
  {"name": "len", "function": "length", "args": [{"ref": "cmd", "output": 1}]}
]}
EOF
capture "$LOOM" submit "$T/job.json" --wait --timeout 60 --state-dir "$D"
check "a job with the marker in a command's argument runs" test "$RC" -eq 0
[ "$RC" -eq 0 ] || show_capture
JOB=$(head -1 <<<"$OUT")
capture "$LOOM" get "$JOB" len --json --state-dir "$D"
check "  ... the other task read its 300000-byte output" test "$RC:$OUT" = "0:300000"
capture "$LOOM" logs "$JOB" cmd --state-dir "$D"
check "  ... and the command printed the marker" grep -q "$MARKER" <<<"$OUT"
capture "$LOOM" status --state-dir "$D"
stop_capture

check "the capture is not empty ($(stat -c %s "$CAP") bytes)" test "$(stat -c %s "$CAP")" -gt 1000
HEAD_PKTS=$(tcpdump -nn -r "$CAP" "tcp port $HEAD_PORT" 2>/dev/null | wc -l)
check "  ... and has packets on the head's port ($HEAD_PKTS)" test "$HEAD_PKTS" -gt 10
DATA_PKTS=0
for p in $DATA_PORTS; do
    DATA_PKTS=$((DATA_PKTS + $(tcpdump -nn -r "$CAP" "tcp port $p and greater 1000" 2>/dev/null | wc -l)))
done
echo "# packets over 1000 bytes on the data ports: $DATA_PKTS (0 when every read was local)"
"$PY" "$SRC/tests/curve_pcap.py" streams "$CAP" "$HEAD_PORT" >"$T/streams.txt"
# (connections made before the capture began show no greeting: "?")
check "every connection to the head that began in the capture speaks CURVE ($(grep -c " CURVE$" "$T/streams.txt") of $(wc -l <"$T/streams.txt"))" \
    eval 'grep -q " CURVE$" "$T/streams.txt" && ! grep -qvE " (CURVE|\?)$" "$T/streams.txt"'
check "the cluster secret is not in the capture" eval '! grep -qa "$SECRET" "$CAP"'
check "the marker is not in the capture" eval '! grep -qa "$MARKER" "$CAP"'

# ---- control: the same capture sees plaintext on these ports ----------------
CTL=$T/control.pcap
check "tcpdump listens on lo again" start_capture "$CTL"
"$PY" - "$HEAD_PORT" "$SECRET" "$MARKER" <<'PYEOF'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=3)
try:
    s.sendall(("plaintext %s %s\n" % (sys.argv[2], sys.argv[3])).encode())
    s.recv(100)
except OSError:
    pass
s.close()
PYEOF
stop_capture
check "control: plaintext sent to the head's port shows the secret in its capture" grep -qa "$SECRET" "$CTL"
check "control: ... and the marker" grep -qa "$MARKER" "$CTL"

# ---- replay --------------------------------------------------------------------
capture "$PY" "$SRC/tests/curve_pcap.py" replay "$CAP" "$HEAD_PORT" 127.0.0.1
check "a recorded CURVE client stream replayed to the head is refused: $OUT" \
    eval '[ "$RC" -eq 0 ] && grep -q "^REFUSED" <<<"$OUT"'
check "  ... the head is still serving, with the same 2 nodes" wait_until 10 nodes_alive_eq 2 "$D"
status_json "$D" "$T/status_after.json"
check "  ... and no node joined" test "$(json_eval "$T/status_after.json" 'len(d["nodes"])')" = 2

finish
