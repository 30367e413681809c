#!/bin/bash
# sys_chaos.sh — chaos: processes killed with SIGKILL at pseudo-random moments
# while a 10,000-task graph and an actor workload run (examples/chaos_driver.c),
# over several seeds.
#
# For each seed in $LOOM_CHAOS_SEEDS (default "1 2 3 4 5"): a head (with its own
# node daemon) and 2 more daemons, 1 CPU each, a 1.5 s heartbeat timeout;
# chaos_driver runs in the background while this script, at moments drawn from
# bash's $RANDOM seeded with the seed, does a bounded number of faults:
#   exec    kill -9 a random executor (a child of a random daemon: task runner
#           or actor process); the daemon starts another, the task is retried
#   daemon  kill -9 a random whole daemon (its executors die with it), then
#           start a new one with `loom start --address` so capacity comes back
#   head    (unless LOOM_CHAOS_HEAD=0) kill -9 the head and start it again
#           on the same port with the same state dir; the daemons and the
#           driver must reconnect by themselves
# Checks per seed: the driver exits 0 with the right sum, the actor's calls all
# returned, every object the driver read early reads the same at the end; the
# head's RSS stays under $LOOM_CHAOS_RSS_MB (default 100 MB: a run of this
# graph peaks near 33 MB, for ~10,000 tasks and their objects; 100 MB leaves
# room for retries and rebuilds yet catches per-task leaks, which at 10,000
# tasks x a few faults would be far more); the logs show the retries;
# nothing of the cluster is left after `loom stop`.
#
# Knobs: LOOM_CHAOS_SEEDS, LOOM_CHAOS_HEAD=0, LOOM_CHAOS_FAULTS (faults per
# seed, default 4: one daemon kill, the rest executor kills), LOOM_CHAOS_KINDS
# (the faults themselves instead, e.g. "daemon daemon exec"), LOOM_CHAOS_RSS_MB,
# LOOM_CHAOS_LEAVES (default 5000 → 10,016 tasks).
set -euo pipefail
. "$(dirname "$0")/lib.sh" "$@"

SEEDS=${LOOM_CHAOS_SEEDS:-"1 2 3 4 5"}
HEADKILL=${LOOM_CHAOS_HEAD:-1}
NFAULTS=${LOOM_CHAOS_FAULTS:-4}
RSS_MB=${LOOM_CHAOS_RSS_MB:-100}
# AddressSanitizer's shadow memory and quarantine multiply a process's RSS
# (peaks near 330 MB here): the bound of a sanitizer build is 4 times larger
if [ -z "${LOOM_CHAOS_RSS_MB:-}" ] && grep -q "^LOOM_SANITIZE:BOOL=ON" "$BUILD/CMakeCache.txt" 2>/dev/null; then
    RSS_MB=800
fi
LEAVES=${LOOM_CHAOS_LEAVES:-5000}
DRIVER_BIN=$BUILD/bin/chaos_driver
DRIVER_LIMIT=150   # seconds one seed's driver may take, at most

if [ ! -x "$DRIVER_BIN" ]; then
    bad "chaos_driver is built ($DRIVER_BIN)"
    finish
fi

DRIVER=
kill_driver() { [ -n "$DRIVER" ] && kill -9 "$DRIVER" 2>/dev/null; return 0; }
on_cleanup kill_driver

cmdline_of() { { tr '\0' ' ' <"/proc/$1/cmdline"; } 2>/dev/null || true; }
# live head / daemons of state dir $1 (from its pids dir, checked in /proc)
head_pid() {
    local p
    for p in $(state_pids "$1"); do
        [[ "$(cmdline_of "$p")" == *" _head "*"$1"* ]] && { echo "$p"; return 0; }
    done
    return 0
}
daemon_pids() {
    local p
    for p in $(state_pids "$1"); do
        [[ "$(cmdline_of "$p")" == *" _node "*"$1"* ]] && echo "$p"
    done
    return 0
}
executors_of() {
    local p
    for p in $(pgrep -P "$1" 2>/dev/null || true); do
        [[ "$(cmdline_of "$p")" == *" executor "* ]] && echo "$p"
    done
    return 0
}
# pick WORD...: PICKED = one of the words, by $RANDOM ("" if none); not in a
# subshell, so that each pick moves the seed's sequence on
pick() {
    PICKED=
    [ $# -gt 0 ] || return 0
    local a=("$@")
    PICKED=${a[RANDOM % ${#a[@]}]}
}
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

HEAD_RSS_MAX=0
DAEMON_RSS_MAX=0
sample_rss() {
    local p r
    p=$(head_pid "$D")
    if [ -n "$p" ]; then
        r=$(rss_kb "$p")
        [ "${r:-0}" -gt "$HEAD_RSS_MAX" ] && HEAD_RSS_MAX=$r
    fi
    for p in $(daemon_pids "$D"); do
        r=$(rss_kb "$p")
        [ "${r:-0}" -gt "$DAEMON_RSS_MAX" ] && DAEMON_RSS_MAX=$r
    done
    return 0
}
# the driver runs until it prints its verdict (its `timeout` wrapper's pid,
# and the driver by its command line, as a second opinion)
driver_alive() {
    [ -n "$DRIVER" ] || return 1
    grep -q "chaos_driver: \(OK\|FAILED\)" "$T/driver-$SEED.out" 2>/dev/null && return 1
    kill -0 "$DRIVER" 2>/dev/null || pgrep -f -- "chaos_driver --address $ADDR " >/dev/null 2>&1
}
# nap TENTHS: sleep that many tenths of a second (sampling RSS every 0.2 s);
# returns 1 at once if the driver has exited
# By the clock, not by a count of naps: on a loaded machine (ctest -j2) the
# sampling's forks can take most of a second, and a fault plan counted in
# naps then never came before the driver ended.
now_ms() { local t=${EPOCHREALTIME//[.,]/}; NOW_MS=$((10#$t / 1000)); }
nap() {
    now_ms
    local until=$((NOW_MS + $1 * 100))
    while now_ms && [ "$NOW_MS" -lt "$until" ]; do
        driver_alive || return 1
        sample_rss
        sleep 0.2
    done
    driver_alive
}

# the faults
fault_exec() {
    local dm ex
    pick $(daemon_pids "$D"); dm=$PICKED
    [ -n "$dm" ] || { echo "# seed $SEED: no daemon to pick an executor of"; return 0; }
    pick $(executors_of "$dm"); ex=$PICKED
    [ -n "$ex" ] || { echo "# seed $SEED: daemon $dm has no executor right now"; return 0; }
    echo "# seed $SEED t=$(elapsed)s: kill -9 executor $ex of daemon $dm ($(cmdline_of "$ex" | cut -c1-60)...)"
    kill -9 "$ex" 2>/dev/null || true
    EXEC_KILLS=$((EXEC_KILLS + 1))
}
fault_daemon() {
    local dm
    pick $(daemon_pids "$D"); dm=$PICKED
    [ -n "$dm" ] || { echo "# seed $SEED: no daemon to kill"; return 0; }
    echo "# seed $SEED t=$(elapsed)s: kill -9 daemon $dm (executors: $(executors_of "$dm" | tr '\n' ' '))"
    kill -9 "$dm" 2>/dev/null || true
    DAEMON_KILLS=$((DAEMON_KILLS + 1))
    KILLED_DAEMONS+=("$dm")
    capture "$LOOM" start --address "$ADDR" --state-dir "$D" --num-cpus 1
    if [ "$RC" -eq 0 ]; then
        echo "# seed $SEED t=$(elapsed)s: a new daemon joined: $(printf '%s\n' "$OUT" "$ERR" | grep -m1 joined || true)"
    else
        bad "seed $SEED: a new daemon joins after daemon $dm was killed"
        show_capture
    fi
}
fault_head() {
    local hp
    hp=$(head_pid "$D")
    [ -n "$hp" ] || { echo "# seed $SEED: no head to kill"; return 0; }
    echo "# seed $SEED t=$(elapsed)s: kill -9 head $hp"
    kill -9 "$hp" 2>/dev/null || true
    HEAD_KILLS=$((HEAD_KILLS + 1))
    wait_until 5 eval '! kill -0 '"$hp"' 2>/dev/null' || true
    capture "$LOOM" start --head --port "$PORT" --state-dir "$D" --num-cpus 1 \
        --heartbeat-timeout-ms 1500 --no-node
    if [ "$RC" -eq 0 ]; then
        echo "# seed $SEED t=$(elapsed)s: head restarted (pid $(head_pid "$D"))"
    else
        bad "seed $SEED: the head restarts on port $PORT with state dir $D"
        show_capture
    fi
}

SECONDS_T0=0
elapsed() { echo $(( $(date +%s) - SECONDS_T0 )); }

KILLED_DAEMONS=()
# stores (/dev/shm/loom-UID/node-PID) of the daemons this script killed: a
# killed daemon cannot remove its own, and nothing else does (reported, then
# removed here)
SHM=/dev/shm/loom-$(id -u)
sweep_killed_stores() {
    local p
    for p in "${KILLED_DAEMONS[@]}"; do
        [ -d "/proc/$p" ] || rm -rf "${SHM:?}/node-$p"
    done
}
on_cleanup sweep_killed_stores

SEEDS_OK=0
SEEDS_RUN=0
SUMMARY=()
for SEED in $SEEDS; do
    SEEDS_RUN=$((SEEDS_RUN + 1))
    D=$T/seed-$SEED
    use_state_dir "$D"
    echo "# ---- seed $SEED ----"
    capture "$LOOM" start --head --port 0 --state-dir "$D" --num-cpus 1 --heartbeat-timeout-ms 1500
    if [ "$RC" -ne 0 ]; then bad "seed $SEED: start the head"; show_capture; continue; fi
    ADDR=$(cat "$D/address")
    PORT=${ADDR##*:}
    for k in 1 2; do
        capture "$LOOM" start --address "$ADDR" --state-dir "$D" --num-cpus 1
        [ "$RC" -eq 0 ] || { bad "seed $SEED: start daemon $k"; show_capture; }
    done
    check "seed $SEED: 3 nodes alive" wait_until 15 nodes_alive_eq 3 "$D"

    # the fault plan, from the seed: kinds shuffled, each after a random pause
    RANDOM=$SEED
    if [ -n "${LOOM_CHAOS_KINDS:-}" ]; then
        read -r -a KINDS <<<"$LOOM_CHAOS_KINDS"
    else
        KINDS=(daemon)
        for ((k = 1; k < NFAULTS; k++)); do KINDS+=(exec); done
    fi
    [ "$HEADKILL" = 1 ] && KINDS+=(head)
    for ((k = ${#KINDS[@]} - 1; k > 0; k--)); do
        j=$((RANDOM % (k + 1)))
        tmp=${KINDS[k]}; KINDS[k]=${KINDS[j]}; KINDS[j]=$tmp
    done
    PAUSES=()
    for ((k = 0; k < ${#KINDS[@]}; k++)); do PAUSES+=($((5 + RANDOM % 20))); done  # 0.5 .. 2.4 s
    echo "# seed $SEED: plan: ${KINDS[*]} after pauses (0.1 s) ${PAUSES[*]}"

    EXEC_KILLS=0 DAEMON_KILLS=0 HEAD_KILLS=0 HEAD_RSS_MAX=0 DAEMON_RSS_MAX=0
    SECONDS_T0=$(date +%s)
    t0=$(date +%s%N)
    LOOM_SECRET_FILE="$D/secret" timeout -k 5 "$DRIVER_LIMIT" "$DRIVER_BIN" --address "$ADDR" \
        --leaves "$LEAVES" --timeout-s $((DRIVER_LIMIT - 20)) --lib "$EXLIB" >"$T/driver-$SEED.out" 2>&1 &
    DRIVER=$!
    done_faults=0
    for ((k = 0; k < ${#KINDS[@]}; k++)); do
        if ! nap "${PAUSES[k]}"; then
            echo "# seed $SEED t=$(elapsed)s: the driver ($DRIVER) is not running any more: $(ps -o pid=,stat=,etime=,args= -p "$DRIVER" 2>&1 | cut -c1-100)"
            break
        fi
        "fault_${KINDS[k]}"
        done_faults=$((done_faults + 1))
    done
    # wait for the driver (bounded by its own timeout), sampling the head's RSS
    while driver_alive; do sample_rss; sleep 0.2; done
    DRC=0
    wait "$DRIVER" || DRC=$?
    DRIVER=
    dt=$(( ($(date +%s%N) - t0) / 1000000000 ))
    sed "s/^/  [seed $SEED] /" "$T/driver-$SEED.out"
    check "seed $SEED: the faults ran while the driver did ($done_faults of ${#KINDS[@]}: $EXEC_KILLS executor, $DAEMON_KILLS daemon, $HEAD_KILLS head kills)" \
        test "$done_faults" -ge 1
    check "seed $SEED: chaos_driver exits 0 (rc $DRC, $dt s)" test "$DRC" -eq 0
    check "seed $SEED: the graph's sum is right" grep -q "ok   the [0-9]*-task graph's sum" "$T/driver-$SEED.out"
    check "seed $SEED: chaos_driver: OK" grep -q "chaos_driver: OK" "$T/driver-$SEED.out"
    sample_rss
    check "seed $SEED: the head's RSS peaked at $((HEAD_RSS_MAX / 1024)) MB (< $RSS_MB MB); daemons' at $((DAEMON_RSS_MAX / 1024)) MB" \
        test "$HEAD_RSS_MAX" -gt 0 -a "$HEAD_RSS_MAX" -lt $((RSS_MB * 1024))

    # what the logs say
    HL=$D/logs/head.log
    # a daemon killed just before the driver finished is seen dead one
    # heartbeat timeout (1.5 s) later: give the head that long
    dead_seen() { [ "$(grep -c "is dead: " "$HL" || true)" -ge "$1" ]; }
    [ "$DAEMON_KILLS" -gt 0 ] && { wait_until 6 dead_seen "$DAEMON_KILLS" || true; }
    RETRIES=$(grep -c "): attempt [0-9]* of [0-9]*" "$HL" || true)
    REBUILDS=$(grep -c "runs again to rebuild" "$HL" || true)
    DEAD=$(grep -c "is dead: " "$HL" || true)
    RESTARTS=$(grep -c "died (.*): restart" "$HL" || true)
    EXITS=$(cat "$D"/logs/node-*.log 2>/dev/null | grep -c "exited (status [0-9-]*, signal 9); starting another" || true)
    echo "# seed $SEED logs: $RETRIES task retries, $REBUILDS rebuilds, $DEAD nodes dead, $RESTARTS actor restarts, $EXITS executors killed (daemon logs)"
    grep -m3 "): attempt [0-9]* of" "$HL" | sed "s/^/  [seed $SEED head.log] /" || true
    grep -m3 "runs again to rebuild" "$HL" | sed "s/^/  [seed $SEED head.log] /" || true
    if [ "$DAEMON_KILLS" -gt 0 ]; then
        check "seed $SEED: the head saw $DAEMON_KILLS killed daemon(s) die ($DEAD)" test "$DEAD" -ge "$DAEMON_KILLS"
        check "seed $SEED: the head log shows what ran there run again ($RETRIES retries, $REBUILDS rebuilds)" \
            test "$((RETRIES + REBUILDS))" -ge 1
    fi
    if [ "$EXEC_KILLS" -gt 0 ]; then
        # an executor killed with its daemon later leaves no line, and a
        # killed actor process shows as the actor's restart: at least one
        check "seed $SEED: the logs show the killed executors replaced ($EXITS of $EXEC_KILLS, $RESTARTS actor restarts)" \
            test $((EXITS + RESTARTS)) -ge 1
    fi

    # stop: nothing of this cluster may be left
    capture "$LOOM" stop --state-dir "$D"
    check "seed $SEED: loom stop" test "$RC" -eq 0
    check "seed $SEED: no loom process of the cluster left after loom stop" wait_until 10 no_procs_of "$D"
    if [ -n "$(procs_of "$D")" ]; then
        for p in $(procs_of "$D"); do echo "  left: $p $(cmdline_of "$p")"; done
    fi
    LEFT_STORES=
    for p in "${KILLED_DAEMONS[@]}"; do
        [ -d "$SHM/node-$p" ] && LEFT_STORES+="node-$p ($(du -sk "$SHM/node-$p" | cut -f1) KiB) "
    done
    [ -n "$LEFT_STORES" ] && echo "# seed $SEED: note: stores of killed daemons left in $SHM after loom stop: $LEFT_STORES"
    sweep_killed_stores
    ok_now=$(grep -c "chaos_driver: OK" "$T/driver-$SEED.out" || true)
    [ "$DRC" -eq 0 ] && [ "$ok_now" -ge 1 ] && SEEDS_OK=$((SEEDS_OK + 1))
    SUMMARY+=("seed $SEED: rc $DRC, $dt s, head RSS max $((HEAD_RSS_MAX / 1024)) MB, kills exec/daemon/head $EXEC_KILLS/$DAEMON_KILLS/$HEAD_KILLS, retries $RETRIES, rebuilds $REBUILDS")
done
printf '# %s\n' "${SUMMARY[@]}"
echo "# $SEEDS_OK of $SEEDS_RUN seeds passed"
finish
