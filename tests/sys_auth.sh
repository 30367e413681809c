#!/bin/bash
# sys_auth.sh — the cluster secret keeps strangers out.  A head (with one node)
# runs in one state dir; drivers and node daemons that come with a wrong
# secret, a secret file other users could read, or a malformed one are
# refused with a clear message, the cluster is unchanged, and the head logs
# the refusals.  The head and the data port speak CURVE with keys derived
# from the secret: a plaintext peer is shut out even with the right secret.
# Executors hold only their grant (a token and a task key), never the
# secret: not in their environment, fd 3 or memory.
set -euo pipefail
. "$(dirname "$0")/lib.sh" "$@"

D=$T/head
D2=$T/other
use_state_dir "$D"
use_state_dir "$D2"
mkdir -p "$D2" && chmod 700 "$D2"

capture "$LOOM" start --head --port 0 --state-dir "$D" --num-cpus 1
if [ "$RC" -ne 0 ]; then bad "start the head"; show_capture; finish; exit 1; fi
ADDR=$(cat "$D/address")
check "the cluster has 1 node" wait_until 10 nodes_alive_eq 1 "$D"

new_secret() { "$PY" -c 'import secrets; print(secrets.token_hex(32))'; }
WRONG=$T/wrong.secret
new_secret >"$WRONG"
chmod 600 "$WRONG"
OPEN=$T/open.secret            # the right secret, but readable by everyone
cp "$D/secret" "$OPEN"
chmod 644 "$OPEN"
GOOD=$T/good.secret            # the right secret, copied properly
cp "$D/secret" "$GOOD"
chmod 600 "$GOOD"
SHORT=$T/short.secret
printf '0123456789abcdef\n' >"$SHORT"
chmod 600 "$SHORT"
check "the wrong secret differs from the head's" test "$(cat "$WRONG")" != "$(cat "$D/secret")"

# ---- drivers --------------------------------------------------------------
capture "$LOOM" status --json --address "$ADDR" --state-dir "$D2" --secret-file "$GOOD"
check "a driver with a good copy of the secret gets in" test "$RC" -eq 0

capture "$LOOM" status --address "$ADDR" --state-dir "$D2" --secret-file "$WRONG"
check "a driver with a wrong secret is refused (exit $RC)" test "$RC" -ne 0
check "  ... with a clear 'secret' message: $(head -1 <<<"$ERR")" grep -qi "wrong cluster secret" <<<"$ERR"
check "  ... and prints nothing on stdout" test -z "$OUT"

cat >"$T/g.json" <<EOF
{"library": "$EXLIB", "tasks": [{"name": "sum", "function": "add", "args": [{"msgpack": 1}, {"msgpack": 2}]}]}
EOF
capture "$LOOM" submit "$T/g.json" --address "$ADDR" --state-dir "$D2" --secret-file "$WRONG"
check "submit with a wrong secret is refused" eval '[ "$RC" -ne 0 ] && grep -qi "secret" <<<"$ERR"'

capture env LOOM_SECRET="$(cat "$WRONG")" "$LOOM" status --address "$ADDR" --state-dir "$D2"
check "a wrong secret in \$LOOM_SECRET is refused" eval '[ "$RC" -ne 0 ] && grep -qi "secret" <<<"$ERR"'

capture env LOOM_SECRET_FILE="$WRONG" "$LOOM" status --address "$ADDR" --state-dir "$D2"
check "a wrong secret in \$LOOM_SECRET_FILE is refused" eval '[ "$RC" -ne 0 ] && grep -qi "secret" <<<"$ERR"'

capture "$LOOM" status --address "$ADDR" --state-dir "$D2" --secret-file "$OPEN"
check "a secret file with mode 0644 is refused (exit $RC)" test "$RC" -ne 0
check "  ... saying it must be 0600: $(head -1 <<<"$ERR")" grep -q "0600" <<<"$ERR"

capture "$LOOM" status --address "$ADDR" --state-dir "$D2" --secret-file "$SHORT"
check "a secret file of the wrong length is refused" eval '[ "$RC" -ne 0 ] && grep -qi "secret" <<<"$ERR"'

capture "$LOOM" status --address "$ADDR" --state-dir "$D2" --secret-file "$T/missing.secret"
check "a missing secret file is refused, naming it" eval '[ "$RC" -ne 0 ] && grep -q "missing.secret" <<<"$ERR"'

# the default secret file is STATE_DIR/secret: none in D2
capture "$LOOM" status --address "$ADDR" --state-dir "$D2"
check "no secret at all is refused" eval '[ "$RC" -ne 0 ] && grep -qi "secret" <<<"$ERR"'

# ---- node daemons ---------------------------------------------------------
capture "$LOOM" start --address "$ADDR" --state-dir "$D2" --secret-file "$WRONG" --num-cpus 1
check "a node daemon with a wrong secret does not start (exit $RC)" test "$RC" -ne 0
check "  ... 'loom start' points at its log" grep -q "log is" <<<"$ERR"
NLOG=$(ls "$D2"/logs/node-*.log 2>/dev/null | head -1)
check "  ... whose log shows the refusal" grep -q "refused this node's CURVE handshake .*wrong cluster secret" "${NLOG:-/dev/null}"
check "  ... and no process of it is left" wait_until 10 no_procs_of "$D2"
check "the cluster still has exactly 1 node" nodes_alive_eq 1 "$D"
status_json "$D" "$T/status.json"
check "status lists 1 node in all" test "$(json_eval "$T/status.json" 'len(d["nodes"])')" = 1

rm -rf "$D2/logs"
capture "$LOOM" start --address "$ADDR" --state-dir "$D2" --secret-file "$OPEN" --num-cpus 1
check "a node daemon with a 0644 secret file does not start" test "$RC" -ne 0
NLOG=$(ls "$D2"/logs/node-*.log 2>/dev/null | head -1)
check "  ... its log says why (mode 0600)" grep -q "0600" "${NLOG:-/dev/null}"
check "  ... and no process of it is left" wait_until 10 no_procs_of "$D2"
check "the cluster still has exactly 1 node" nodes_alive_eq 1 "$D"

HEADLOG=$D/logs/head.log
# drivers and nodes with a wrong secret derive wrong CURVE keys: the head
# cannot open their handshake, and logs that
check "the head logs the refused handshakes" grep -q "CURVE handshake failed: wrong cluster secret" "$HEADLOG"

# ---- plaintext peers ----------------------------------------------------------
# HELLO with the right secret, but over a plaintext (NULL mechanism) ZMTP
# connection: the CURVE ports greet, then close, before any message
DATA=$(json_eval "$T/status.json" 'd["nodes"][0]["address"]')
capture "$PY" "$SRC/tests/loom_fuzz.py" hello --target "tcp:$DATA" --secret "$(cat "$WRONG")"
check "the data port shuts out a plaintext peer: $OUT" test "$OUT" = "REFUSED CURVE"
capture "$PY" "$SRC/tests/loom_fuzz.py" hello --target "tcp:$DATA" --secret "$(cat "$D/secret")"
check "  ... even one with the right secret: $OUT" test "$OUT" = "REFUSED CURVE"
capture "$PY" "$SRC/tests/loom_fuzz.py" hello --target "tcp:$ADDR" --secret "$(cat "$D/secret")" --role 2
check "the head shuts out a plaintext node with the right secret: $OUT" test "$OUT" = "REFUSED CURVE"
capture "$PY" "$SRC/tests/loom_fuzz.py" hello --target "tcp:$ADDR" --secret "$(cat "$D/secret")"
check "  ... and a plaintext driver with it: $OUT" test "$OUT" = "REFUSED CURVE"
check "  ... and no node joined" nodes_alive_eq 1 "$D"

# ---- and the cluster still works for those who know the secret -------------
capture "$LOOM" submit "$T/g.json" --wait --timeout 60 --state-dir "$D"
check "a graph still runs with the right secret" test "$RC" -eq 0
JOB=$(head -1 <<<"$OUT")
capture "$LOOM" get "$JOB" sum --json --address "$ADDR" --state-dir "$D2" --secret-file "$GOOD"
check "  ... and a driver elsewhere with the copied secret reads it" test "$RC:$OUT" = "0:3"

# ---- tasks do not see the secret ----------------------------------------------
# a command task reads its own environment and its executor's (/proc/$PPID/environ
# shows the environment a process started with, whatever it unset since)
cat >"$T/env.json" <<'JSONEOF'
{"tasks": [{"name": "env", "command": ["sh", "-c", "tr '\\0' '\\n' </proc/$PPID/environ; echo ---; env"]}]}
JSONEOF
capture "$LOOM" submit "$T/env.json" --wait --timeout 60 --state-dir "$D"
check "a command task that reads its executor's environment runs" test "$RC" -eq 0
JOB=$(head -1 <<<"$OUT")
capture "$LOOM" logs "$JOB" env --state-dir "$D"
check "  ... and sees its executor's environment (PATH, ---, its own)" \
    eval 'grep -q "^PATH=" <<<"$OUT" && grep -q "^---$" <<<"$OUT"'
check "  ... but not the cluster secret in it or in its own" eval '! grep -q "$(cat "$D/secret")" <<<"$OUT"'

# fd 3 (where the daemon handed the executor its grant) is closed before any
# task runs, in the executor and in the command
cat >"$T/fd3.json" <<'JSONEOF'
{"tasks": [{"name": "fd3", "command": ["sh", "-c", "cat <&3; echo; cat /proc/$PPID/fd/3; echo; ls -l /proc/$PPID/fd; echo done"]}]}
JSONEOF
capture "$LOOM" submit "$T/fd3.json" --wait --timeout 60 --state-dir "$D"
JOB=$(head -1 <<<"$OUT")
capture "$LOOM" logs "$JOB" fd3 --state-dir "$D"
check "a command task that reads fd 3 (its own and its executor's) runs" grep -q "^done$" <<<"$OUT"
check "  ... and finds no secret there" eval '! grep -q "$(cat "$D/secret")" <<<"$OUT"'
check "  ... nor a pipe left open on the executor's fd 3" eval '! grep -q " 3 -> pipe:" <<<"$OUT"'

# the executor's memory: a command dumps its parent's private writable
# mappings (heap, stack, anonymous); the dump has the executor's environment
# (the head's address: the dump works) but not the secret, which it never had
cat >"$T/memdump.py" <<'PYEOF'
import os, re, sys
pid, out = os.getppid(), sys.argv[1]
with open("/proc/%d/maps" % pid) as maps, open("/proc/%d/mem" % pid, "rb", 0) as mem, open(out, "wb") as w:
    for line in maps:
        f = line.split()
        if "w" not in f[1] or (len(f) > 5 and f[5].startswith("/")):
            continue  # only private writable memory, not files (the store's maps)
        lo, hi = (int(x, 16) for x in f[0].split("-"))
        if hi - lo > (256 << 20):
            continue
        try:
            mem.seek(lo)
            w.write(mem.read(hi - lo))
        except (OSError, ValueError, OverflowError):
            pass
print("dumped", os.path.getsize(out))
PYEOF
cat >"$T/mem.json" <<JSONEOF
{"tasks": [{"name": "mem", "command": ["$PY", "$T/memdump.py", "$T/exec.mem"]}]}
JSONEOF
capture "$LOOM" submit "$T/mem.json" --wait --timeout 60 --state-dir "$D"
if [ -s "$T/exec.mem" ]; then
    check "a command task dumps its executor's memory ($(stat -c %s "$T/exec.mem") bytes)" true
    check "  ... which holds the executor's environment (the head's address)" grep -qa "LOOM_ADDRESS=$ADDR" "$T/exec.mem"
    check "  ... but not the cluster secret" eval '! grep -qa "$(cat "$D/secret")" "$T/exec.mem"'
else
    skip "a command task cannot read its executor's memory here (ptrace rules): not checked"
fi
rm -f "$T/exec.mem"

finish
