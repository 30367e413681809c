#!/bin/bash
# sys_restart_order.sh — actor calls waiting at the head keep their order
# across a head restart (tests/restart_order_driver.c): on a 1-CPU node a
# task holds the CPU, so an actor and its 40 calls wait at the head; the head
# is killed with SIGKILL and restarted on its state dir; the calls must then
# run in the order they were made.  (The reloaded head used to put them back
# in its hash map's order.)
set -euo pipefail
. "$(dirname "$0")/lib.sh" "$@"

DRIVER_BIN=$BUILD/bin/restart_order_driver
[ -x "$DRIVER_BIN" ] || { bad "restart_order_driver is built ($DRIVER_BIN)"; finish; }
D=$T/state
use_state_dir "$D"
capture "$LOOM" start --head --port 0 --state-dir "$D" --num-cpus 1 --heartbeat-timeout-ms 5000
if [ "$RC" -ne 0 ]; then bad "start the head"; show_capture; finish; fi
ADDR=$(cat "$D/address")

LOOM_SECRET_FILE="$D/secret" timeout -k 5 200 "$DRIVER_BIN" "$ADDR" "$EXLIB" 40 8000 >"$T/driver.out" 2>&1 &
DRIVER=$!
check "the driver queued its calls" wait_until 60 grep -q "^queued 40 calls" "$T/driver.out"
HEAD=$(pgrep -f -- "loom _head.*$D" || true)
check "the head's pid is known ($HEAD)" test -n "$HEAD"
kill -9 $HEAD
check "the head is gone" wait_until 5 eval '! kill -0 '"$HEAD"' 2>/dev/null'
capture "$LOOM" start --head --no-node --port 0 --state-dir "$D" --heartbeat-timeout-ms 5000
check "a new head starts with the same state dir" test "$RC" -eq 0
check "  ... it reloaded the tables" grep -q "reloaded the tables" "$D/logs/head.log"
check "  ... the node rejoins" wait_until 15 nodes_alive_eq 1 "$D"
DRC=0
wait "$DRIVER" || DRC=$?
sed 's/^/  /' "$T/driver.out"
check "the actor ran the 40 calls in the order they were made (driver exit $DRC)" \
    eval '[ "$DRC" -eq 0 ] && grep -q "restart_order_driver: OK" "$T/driver.out"'
capture "$LOOM" stop --state-dir "$D"
check "loom stop" test "$RC" -eq 0
finish
