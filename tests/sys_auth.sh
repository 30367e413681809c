#!/bin/bash
# sys_auth.sh — the cluster secret keeps strangers out.  A head (with one node)
# runs in one state dir; drivers and node daemons that come with a wrong
# secret, a secret file other users could read, or a malformed one are
# refused with a clear message, the cluster is unchanged, and the head logs
# the refusals.  The data port refuses a wrong secret too.
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
check "  ... whose log shows the refusal" grep -q "wrong cluster secret" "${NLOG:-/dev/null}"
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
check "the head logs refused drivers" grep -q "refused a driver .*wrong cluster secret" "$HEADLOG"
check "the head logs the refused node" grep -q "refused a node .*wrong cluster secret" "$HEADLOG"

# ---- the data port --------------------------------------------------------
DATA=$(json_eval "$T/status.json" 'd["nodes"][0]["address"]')
capture "$PY" "$SRC/tests/loom_fuzz.py" hello --target "tcp:$DATA" --secret "$(cat "$WRONG")"
check "the data port refuses a wrong secret: $OUT" grep -q "^ERROR .*wrong cluster secret" <<<"$OUT"
capture "$PY" "$SRC/tests/loom_fuzz.py" hello --target "tcp:$DATA" --secret "$(cat "$D/secret")"
check "the data port accepts the right one: $OUT" test "$OUT" = OK
capture "$PY" "$SRC/tests/loom_fuzz.py" hello --target "tcp:$ADDR" --secret "$(cat "$WRONG")" --role 2
check "the head refuses a node hello with a wrong secret: $OUT" grep -q "^ERROR .*wrong cluster secret" <<<"$OUT"
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

finish
