# tests/lib.sh — shared helpers for the system tests (tests/sys_*.sh).
#
# Source it right after `set -euo pipefail` with the script's arguments:
#     . "$(dirname "$0")/lib.sh" "$@"      # BUILD_DIR SOURCE_DIR
# It sets BUILD, SRC, LOOM (the loom binary), EXLIB (the example task library),
# PY (/usr/bin/python3) and T (a fresh temporary directory), and installs an
# EXIT trap that stops every cluster registered with `use_state_dir`, then runs
# the commands registered with `on_cleanup`, and removes T.
#
# Checks: `ok`, `bad`, `skip` count results; `check DESC CMD...` runs CMD and
# counts it; `capture CMD...` runs CMD (killed after $LOOM_CMD_TIMEOUT s,
# default 150) and leaves its stdout, stderr and exit status in OUT, ERR and
# RC; `wait_until SECONDS CMD...` polls CMD (every 0.1 s, at most SECONDS)
# and returns its last status.  End with `finish`,
# which prints "N passed, M failed" and exits (non-zero if anything failed);
# a script that stops before it (set -e) counts as failed.
# Set LOOM_SYS_KEEP=1 to keep T (logs, state dirs) for a look afterwards.

BUILD=$(cd "${1:?usage: $0 BUILD_DIR SOURCE_DIR}" && pwd)
SRC=$(cd "${2:?usage: $0 BUILD_DIR SOURCE_DIR}" && pwd)
LOOM=${LOOM_BIN:-$BUILD/bin/loom}
EXLIB=$BUILD/lib/libloom_examples.so
PY=/usr/bin/python3
export LC_ALL=C
unset LOOM_ADDRESS LOOM_SECRET LOOM_SECRET_FILE LOOM_STATE_DIR

PASS=0
FAIL=0
SKIP=0
T=$(mktemp -d --suffix=".loom-$(basename "$0" .sh)")
chmod 700 "$T"
STATE_DIRS=()
CLEANUP_HOOKS=()

ok()   { PASS=$((PASS + 1)); echo "ok   - $*"; }
bad()  { FAIL=$((FAIL + 1)); echo "FAIL - $*"; }
skip() { SKIP=$((SKIP + 1)); echo "skip - $*"; }

check()
{
    local desc=$1
    shift
    if "$@"; then ok "$desc"; else bad "$desc"; fi
}

capture()
{
    set +e
    timeout -k 5 "${LOOM_CMD_TIMEOUT:-150}" "$@" >"$T/.out" 2>"$T/.err"
    RC=$?
    set -e
    OUT=$(cat "$T/.out")
    ERR=$(cat "$T/.err")
}

# Show what a failed capture printed (for the log of a failing test).
show_capture()
{
    echo "  rc=$RC"
    printf '%s\n' "$OUT" | head -20 | sed 's/^/  out: /'
    printf '%s\n' "$ERR" | head -20 | sed 's/^/  err: /'
}

wait_until()
{
    local secs=$1
    shift
    local tries=$((secs * 10)) i
    for ((i = 0; i < tries; i++)); do
        if "$@"; then return 0; fi
        sleep 0.1
    done
    "$@"
}

# Register a state dir: the trap runs `loom stop` on it and kills whatever of
# its processes is still alive.
use_state_dir() { STATE_DIRS+=("$1"); }
on_cleanup() { CLEANUP_HOOKS+=("$1"); }

# The pids recorded in a state dir (head and node daemons started there).
state_pids()
{
    local d=$1
    [ -d "$d/pids" ] || return 0
    ls "$d/pids" 2>/dev/null | grep -E '^[0-9]+$' || true
}

# Processes whose command line names the state dir (head, daemons, executors).
procs_of() { pgrep -f -- "$1" || true; }
no_procs_of() { [ -z "$(procs_of "$1")" ]; }
has_proc() { pgrep -f -- "$1" >/dev/null; }

# JSON checks: `json_eval FILE EXPR [ARG...]` prints eval(EXPR) with the
# document as d (extra arguments are sys.argv[3:]).
# Skip the whole script (exit 0, "1 skipped") when a command it needs is missing.
need_cmd()
{
    command -v "$1" >/dev/null && return 0
    skip "$1 is not installed"
    finish
    exit 0
}

json_eval()
{
    "$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$@"
}

# `loom status` of a state dir into FILE; returns its status.
status_json()
{
    local d=$1 file=$2
    shift 2
    timeout -k 5 30 "$LOOM" status --json --state-dir "$d" "$@" >"$file" 2>/dev/null
}

# Number of alive nodes in `loom status` of state dir $1.
alive_nodes()
{
    local f="$T/.status.$$"
    status_json "$@" "$f" || { echo -1; return 0; }
    json_eval "$f" 'sum(1 for n in d["nodes"] if n["state"] == "alive")' 2>/dev/null || echo -1
}

nodes_alive_eq()
{
    local want=$1
    shift
    [ "$(alive_nodes "$@")" = "$want" ]
}

# A 3-node cluster in state dir $1 started with the CLI: a head of 2 CPUs and
# two daemons of 2 CPUs that join it (each a check), then a check that all 3
# are alive.  Sets ADDR and exports LOOM_SECRET_FILE; a head that does not
# start ends the test.
start_three_nodes()
{
    local d=$1 i
    use_state_dir "$d"
    capture "$LOOM" start --head --port 0 --state-dir "$d" --num-cpus 2
    if [ "$RC" -ne 0 ]; then bad "start the head"; show_capture; finish; fi
    ADDR=$(cat "$d/address")
    for i in 2 3; do
        capture "$LOOM" start --address "$ADDR" --state-dir "$d" --num-cpus 2
        check "node $i joins" test "$RC" -eq 0
    done
    check "3 nodes alive" wait_until 10 nodes_alive_eq 3 "$d"
    export LOOM_SECRET_FILE=$d/secret
}

FINISHED=
finish()
{
    FINISHED=1
    if [ "$SKIP" -gt 0 ]; then
        echo "$PASS passed, $FAIL failed, $SKIP skipped"
    else
        echo "$PASS passed, $FAIL failed"
    fi
    [ "$FAIL" -eq 0 ] && exit 0
    exit 1
}

_loom_sys_cleanup()
{
    local rc=$?
    set +e
    if [ -z "$FINISHED" ]; then
        # the script stopped before its end (set -e, a signal): that fails it
        FAIL=$((FAIL + 1))
        echo "FAIL - the script stopped early (exit status $rc)"
        echo "$PASS passed, $FAIL failed"
        [ "$rc" -ne 0 ] || rc=1
    fi
    local h d p
    for d in "${STATE_DIRS[@]}"; do
        local pids
        pids=$(state_pids "$d")
        timeout -k 5 60 "$LOOM" stop --state-dir "$d" >/dev/null 2>&1
        # whatever did not stop: kill it, by pid, if it is still one of ours
        for p in $pids $(procs_of "$d"); do
            if [ -r "/proc/$p/cmdline" ] && tr '\0' ' ' <"/proc/$p/cmdline" | grep -qF -- "$d"; then
                kill -9 "$p" 2>/dev/null
            fi
        done
        # stores the daemons named themselves (/dev/shm/loom-UID/node-PID)
        for p in $pids; do
            [ -d "/proc/$p" ] || rm -rf "/dev/shm/loom-$(id -u)/node-$p"
        done
    done
    for h in "${CLEANUP_HOOKS[@]}"; do eval "$h" >/dev/null 2>&1; done
    if [ -n "${LOOM_SYS_KEEP:-}" ]; then
        echo "# kept $T (LOOM_SYS_KEEP is set)"
    else
        rm -rf "$T"
    fi
    exit "$rc"
}
trap _loom_sys_cleanup EXIT
trap 'echo "# stopped at line $LINENO: $BASH_COMMAND"' ERR
trap 'exit 130' INT TERM HUP
