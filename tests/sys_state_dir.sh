#!/bin/bash
# sys_state_dir.sh — a state directory that another user owns, or may write
# in, is not trusted: on a shared machine (an HPC login node, /tmp) another
# user could create it first, or swap its address file for a fake head's,
# and the client would send that head the cluster secret.  `loom status`
# and a driver refuse such a directory with the reason, before connecting
# anywhere; `loom start` refuses to start there.  Needs root (to make a
# directory owned by another user); skipped otherwise.
set -euo pipefail
. "$(dirname "$0")/lib.sh" "$@"

if [ "$(id -u)" != 0 ] || ! id nobody >/dev/null 2>&1; then skip "needs root and a user 'nobody'"; finish; fi
D=$T/state
use_state_dir "$D"
capture "$LOOM" start --head --port 0 --state-dir "$D" --num-cpus 1
if [ "$RC" -ne 0 ]; then bad "start a cluster"; show_capture; finish; fi
SECRET=$(cat "$D/secret")

# a fake head: a listener that keeps whatever a client sends it
"$PY" - "$T/fake.port" "$T/fake.got" <<'PYEOF' &
import socket, sys, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(4)
open(sys.argv[1], "w").write(str(s.getsockname()[1]))
s.settimeout(1.0)
got = b""
end = time.time() + 20
while time.time() < end:
    try:
        c, _ = s.accept()
    except socket.timeout:
        continue
    c.settimeout(1.0)
    try:
        while True:
            b = c.recv(65536)
            if not b:
                break
            got += b
            open(sys.argv[2], "wb").write(got)
    except socket.timeout:
        pass
    c.close()
PYEOF
FAKE=$!
wait_until 5 test -s "$T/fake.port" || true
FPORT=$(cat "$T/fake.port")

# another user's directory holding the user's secret and a fake head's address
EVIL=$T/evil
mkdir -p "$EVIL"
cp -p "$D/secret" "$EVIL/secret"
echo "127.0.0.1:$FPORT" >"$EVIL/address"
chown nobody "$EVIL" "$EVIL/address"
chmod 755 "$EVIL"
capture "$LOOM" status --state-dir "$EVIL"
check "loom status refuses a state dir that another user owns (exit $RC)" \
    eval '[ "$RC" -ne 0 ] && grep -q "belongs to uid $(id -u nobody), not to you" <<<"$ERR"'
capture env LOOM_STATE_DIR="$EVIL" "$BUILD/bin/tree_reduce" --address "" --leaves 4 --lib "$EXLIB"
check "  ... so does a driver (LOOM_STATE_DIR)" eval '[ "$RC" -ne 0 ] && grep -q "belongs to uid" <<<"$ERR$OUT"'
capture "$LOOM" start --head --port 0 --state-dir "$EVIL" --num-cpus 1
check "  ... and loom start (exit $RC)" eval '[ "$RC" -ne 0 ] && grep -q "belongs to uid" <<<"$ERR"'
check "  ... which started nothing there" test ! -e "$EVIL/head.lock"

# a directory of one's own that others may write in
OPEN=$T/open
mkdir -p "$OPEN"
cp -p "$D/secret" "$OPEN/secret"
echo "127.0.0.1:$FPORT" >"$OPEN/address"
chmod 777 "$OPEN"
capture "$LOOM" status --state-dir "$OPEN"
check "loom status refuses a state dir that others may write in (exit $RC)" \
    eval '[ "$RC" -ne 0 ] && grep -q "may be written by other users (mode 777)" <<<"$ERR"'

sleep 1
check "the fake head got nothing: no connection, no secret" test ! -s "$T/fake.got"
kill "$FAKE" 2>/dev/null || true
wait "$FAKE" 2>/dev/null || true
check "the real cluster still answers from its own dir" nodes_alive_eq 1 "$D"
capture "$LOOM" stop --state-dir "$D"
check "loom stop" test "$RC" -eq 0
: "$SECRET"
finish
