#!/bin/bash
# sys_gateway_auth.sh — the gateway's auth (on by default) on a real head:
# bearer tokens made by `loom token create` (401 without one, with an unknown
# one, and after `loom token revoke`); running code is a permission of its own
# (--run); tenancy: jobs and private models belong to their user (403 for
# another user, with the reason), public models are readable and deployable
# by all, deployments of private models answer their owner only, deployment
# names are scoped by user, an admin token may do anything, health checks
# need no token; limits: bodies are not read before the token is checked,
# JSON depth and size, tasks per job, deployments per user.
set -euo pipefail
. "$(dirname "$0")/lib.sh" "$@"

need_cmd curl
D=$T/st
use_state_dir "$D"
capture "$LOOM" start --head --port 0 --state-dir "$D" --num-cpus 6 --http-port 0 --http-rate 100
if [ "$RC" -ne 0 ]; then bad "loom start --http-port"; show_capture; finish; exit 1; fi
H=http://$(cat "$D/http_address")

capture "$LOOM" token create --user alice --run --state-dir "$D"
TA=$OUT
check "loom token create prints a token" grep -Eq '^loom_[0-9a-f]{48}$' <<<"$TA"
capture "$LOOM" token create --user bob --state-dir "$D"
TB=$OUT
capture "$LOOM" token create --user root --admin --state-dir "$D"
TR=$OUT
capture "$LOOM" token create --user carol --state-dir "$D"
TC=$OUT
capture "$LOOM" token create --state-dir "$D"
check "loom token create without --user is refused" test "$RC" -ne 0
capture "$LOOM" token create --user 'eve"x' --state-dir "$D"
check "a user name with a quote is refused" test "$RC" -ne 0
check "the token is stored hashed, not as itself" \
    eval '! "$LOOM" kv get "auth/tokens/$TA" --state-dir "$D" >/dev/null 2>&1'

code() { curl -s -o "$T/body" -w '%{http_code}' "$@"; }
as() { local tok=$1; shift; code -H "Authorization: Bearer $tok" "$@"; }
body_has() { grep -q -- "$1" "$T/body"; }

# ---- authentication -----------------------------------------------------------------
check "health needs no token (200)" test "$(code "$H/v2/health/live")" = 200
check "no token: 401" test "$(code "$H/v1/models")" = 401
check "  ... saying how to get one" body_has 'loom token create'
check "  ... with WWW-Authenticate" eval 'curl -s -D - -o /dev/null "$H/v1/models" | grep -qi "^WWW-Authenticate: Bearer"'
check "an unknown token: 401" test "$(as loom_0000 "$H/v1/models")" = 401
check "a token that is not Bearer: 401" test "$(code -H "Authorization: Basic eDp5" "$H/v1/models")" = 401
check "alice's token works (200)" test "$(as "$TA" "$H/v1/models")" = 200
check "auth is on by default: no token on a plain loom start --http-port is 401" \
    test "$(code "$H/v1/jobs")" = 401

# ---- running code is a permission of its own -------------------------------------------------
check "carol (no --run) may not submit a command task (403)" \
    test "$(as "$TC" -X POST --data-binary '{"tasks":[{"name":"s","command":["cat","secret"],"cwd":"'"$D"'","outputs":["secret"]}]}' "$H/v1/jobs")" = 403
check "  ... saying which permission is missing" body_has "may not run code"
check "  ... and nothing ran: no job of carol's exists" \
    eval 'as "$TR" "$H/v1/jobs?label=carol" >/dev/null; test "$(json_eval "$T/body" "d[\"total\"]")" = 0'
check "carol's token still reads (200)" test "$(as "$TC" "$H/v1/models")" = 200

# ---- limits before and after authentication ------------------------------------------------------
# a body is not read before its token is checked: 16 clients that send 60 MB
# bodies with no token or a bad one at once get 401s, and the head does not
# grow (it grew by 1 GB when bodies were buffered before the token check)
HEAD_PID=$(pgrep -f -- "_head --state-dir $D" | head -1)
rss() { awk '/^VmRSS/ {print $2}' "/proc/$HEAD_PID/status"; }
RSS0=$(rss)
python3 - "$(cat "$D/http_address")" >"$T/flood.txt" <<'PY'
import select, socket, sys, threading
host, port = sys.argv[1].rsplit(":", 1)
codes, sent = [], []
def one(i):
    s = socket.create_connection((host, int(port)), timeout=20)
    auth = "" if i % 2 else "Authorization: Bearer loom_%048x\r\n" % i
    s.sendall(("POST /v1/models/big HTTP/1.1\r\nHost: x\r\n%sContent-Length: 60000000\r\n\r\n" % auth).encode())
    chunk, n, code = b"\0" * 65536, 0, "none"
    for _ in range(5000):                      # bounded: 60 MB in 64 KiB sends, or the answer
        r, w, _x = select.select([s], [s] if n < 60000000 else [], [], 10)
        if r:
            try:
                code = s.recv(64).split(b" ")[1].decode()
            except (OSError, IndexError):
                code = "reset"
            break
        if not w:
            break
        try:
            n += s.send(chunk)
        except OSError:
            pass
    codes.append(code)
    sent.append(n)
    s.close()
ts = [threading.Thread(target=one, args=(i,)) for i in range(16)]
[t.start() for t in ts]
[t.join(60) for t in ts]
print(" ".join(sorted(codes)), max(sent))
PY
RSS1=$(rss)
read -r -a FLOOD <"$T/flood.txt"
check "16 x 60 MB bodies without a valid token: all 401 (${FLOOD[*]:0:16})" \
    test "$(printf '%s\n' "${FLOOD[@]:0:16}" | sort -u | tr -d '\n')" = 401
check "  ... answered before the body was read (at most ${FLOOD[16]} bytes of one sent)" test "${FLOOD[16]}" -lt 30000000
check "  ... and the head grew by less than 100 MB ($(( (RSS1 - RSS0) / 1024 )) MB)" test $(( RSS1 - RSS0 )) -lt 102400
check "a body over 64 MiB with a good token: 413 on its Content-Length" \
    test "$(as "$TA" -X POST -H 'Content-Length: 70000000' -H 'Expect: 100-continue' --data-binary @/dev/null \
              --max-time 5 "$H/v1/models/big" || true)" = 413
deep=$(python3 -c 'print("["*200 + "]"*200)')
check "JSON nested 200 deep: 413" test "$(as "$TA" -X POST -d "{\"tasks\":$deep}" "$H/v1/jobs")" = 413
check "  ... saying why" body_has "nests deeper"
python3 -c 'import sys; sys.stdout.write("{\"tasks\":[" + ",".join(["1"]*1200000) + "]}")' >"$T/many.json"
check "JSON with 1.2 million values: 413" test "$(as "$TA" -X POST --data-binary @"$T/many.json" "$H/v1/jobs")" = 413
python3 -c '
import json, sys
json.dump({"tasks": [{"name": "t%d" % i, "command": ["true"]} for i in range(10001)]}, sys.stdout)' >"$T/tasks.json"
check "a REST job of 10,001 tasks: 413" test "$(as "$TA" -X POST --data-binary @"$T/tasks.json" "$H/v1/jobs")" = 413
check "  ... saying the limit" body_has "at most 10000 tasks"
check "the head still serves (200)" test "$(as "$TA" "$H/v1/models")" = 200

# ---- jobs --------------------------------------------------------------------------------
check "alice submits a job (201)" \
    test "$(as "$TA" -X POST --data-binary '{"tasks":[{"name":"e","command":["echo","hi"]}]}' "$H/v1/jobs")" = 201
JOB=$(json_eval "$T/body" 'd["job_id"]')
check "alice reads her job (200)" test "$(as "$TA" "$H/v1/jobs/$JOB")" = 200
check "bob may not read it (403)" test "$(as "$TB" "$H/v1/jobs/$JOB")" = 403
check "  ... saying whose it is not" body_has "not one of user bob's jobs"
check "bob may not delete it (403)" test "$(as "$TB" -X DELETE "$H/v1/jobs/$JOB")" = 403
check "alice's job list has it" \
    eval 'as "$TA" "$H/v1/jobs" >/dev/null; test "$(json_eval "$T/body" "[j[\"id\"] for j in d[\"jobs\"]] == [\"$JOB\"]")" = True'
check "bob's job list is empty" \
    eval 'as "$TB" "$H/v1/jobs" >/dev/null; test "$(json_eval "$T/body" "d[\"total\"]")" = 0'
check "  ... and labels are his own even if he asks for alice's" \
    eval 'as "$TB" "$H/v1/jobs?label=alice" >/dev/null; test "$(json_eval "$T/body" "d[\"total\"]")" = 0'
check "the admin lists alice's jobs by label" \
    eval 'as "$TR" "$H/v1/jobs?label=alice" >/dev/null; test "$(json_eval "$T/body" "d[\"total\"]")" = 1' 
check "the admin reads it (200)" test "$(as "$TR" "$H/v1/jobs/$JOB")" = 200
check "alice deletes it (200)" test "$(as "$TA" -X DELETE "$H/v1/jobs/$JOB")" = 200

# ---- models ------------------------------------------------------------------------------
rc=0
CSV=$(bash "$SRC/scripts/get_digits.sh") || rc=$?
if [ "$rc" = 0 ] && "$BUILD/bin/digits_mlp" train --data "$CSV" --out "$T/m.safetensors" >/dev/null 2>&1; then
    ART=$T/m.safetensors
else
    ART=$SRC/README.md   # any bytes for the registry; the deployment checks are skipped
fi
check "alice uploads a private model (201)" test "$(as "$TA" -X POST --data-binary @"$ART" "$H/v1/models/secret")" = 201
check "  ... owned by alice" test "$(json_eval "$T/body" 'd["owner"]')" = alice
check "alice uploads a public model (201)" \
    test "$(as "$TA" -X POST --data-binary @"$ART" "$H/v1/models/shared?public=1")" = 201
check "bob does not see the private one in the list" \
    eval 'as "$TB" "$H/v1/models" >/dev/null; test "$(json_eval "$T/body" "\",\".join(m[\"name\"] for m in d[\"models\"])")" = shared'
check "alice sees both" \
    eval 'as "$TA" "$H/v1/models" >/dev/null; test "$(json_eval "$T/body" "len(d[\"models\"])")" = 2'
check "bob may not read the private model (403)" test "$(as "$TB" "$H/v1/models/secret/versions/1")" = 403
check "  ... nor download it (403)" test "$(as "$TB" "$H/v1/models/secret/versions/1/artifact")" = 403
check "bob reads the public model (200)" test "$(as "$TB" "$H/v1/models/shared/versions/1")" = 200
check "bob may not add a version to alice's model (403)" \
    test "$(as "$TB" -X POST --data-binary @"$ART" "$H/v1/models/shared")" = 403
check "  ... saying whose it is" body_has "belongs to user alice"
check "bob may not delete alice's version (403)" test "$(as "$TB" -X DELETE "$H/v1/models/shared/versions/1")" = 403
check "the admin reads the private model (200)" test "$(as "$TR" "$H/v1/models/secret/versions/1")" = 200
# a model written while auth was off has no owner: only an admin may change it
capture "$LOOM" kv put registry/m/legacy '{"next":1,"owner":"","versions":[]}' --state-dir "$D"
check "bob may not add a version to a model without an owner (403)" \
    test "$(as "$TB" -X POST --data-binary @"$ART" "$H/v1/models/legacy")" = 403
check "  ... saying why" body_has "only an admin may change it"
check "  ... the admin may (201)" test "$(as "$TR" -X POST --data-binary @"$ART" "$H/v1/models/legacy")" = 201

# ---- deployments ------------------------------------------------------------------------------
if [ "$ART" = "$T/m.safetensors" ]; then
    INFER='{"inputs":[{"name":"pixels","shape":[1,64],"datatype":"FP32","data":['"$(head -1 "$CSV" | cut -d, -f1-64)"']}]}'
    check "bob may not deploy alice's private model (403)" \
        test "$(as "$TB" -X POST -d '{"model":"secret","name":"bob~secret"}' "$H/v1/deployments")" = 403
    check "bob may not take a name outside his scope, such as alice's (403)" \
        test "$(as "$TB" -X POST -d '{"model":"shared","name":"alice~secret"}' "$H/v1/deployments")" = 403
    check "  ... saying how his deployments are named" body_has "named 'bob~NAME'"
    check "  ... nor a global name (403)" \
        test "$(as "$TB" -X POST -d '{"model":"shared","name":"classifier"}' "$H/v1/deployments")" = 403
    check "alice deploys her private model, named alice~secret by default (201)" \
        eval 'test "$(as "$TA" -X POST -d "{\"model\":\"secret\"}" "$H/v1/deployments")" = 201 &&
              test "$(json_eval "$T/body" "d[\"name\"]")" = "alice~secret"'
    check "alice classifies with it (200)" test "$(as "$TA" -X POST -d "$INFER" "$H/v2/models/alice~secret/infer")" = 200
    check "12 concurrent classifications by alice all answer 200 (inference is not held to a user's share of workers)" \
        eval 'for i in $(seq 12); do as "$TA" -X POST -d "$INFER" "$H/v2/models/alice~secret/infer" >"$T/c$i" & done; wait;
              test "$(cat "$T"/c{1..12} | tr -d "\n")" = "$(printf "200%.0s" $(seq 12))"'
    check "bob may not (403)" test "$(as "$TB" -X POST -d "$INFER" "$H/v2/models/alice~secret/infer")" = 403
    check "  ... nor read its metadata (403)" test "$(as "$TB" "$H/v2/models/alice~secret")" = 403
    check "bob does not see it in /v1/deployments" \
        eval 'as "$TB" "$H/v1/deployments" >/dev/null; test "$(json_eval "$T/body" "len(d[\"deployments\"])")" = 0'
    check "bob may not undeploy it (403)" test "$(as "$TB" -X DELETE "$H/v1/deployments/alice~secret")" = 403
    check "bob deploys the public model (201)" \
        test "$(as "$TB" -X POST -d '{"model":"shared","name":"bob~s"}' "$H/v1/deployments")" = 201
    check "alice classifies with bob's deployment of a public model (200)" \
        test "$(as "$TA" -X POST -d "$INFER" "$H/v2/models/bob~s/infer")" = 200
    check "alice may not undeploy bob's deployment (403)" test "$(as "$TA" -X DELETE "$H/v1/deployments/bob~s")" = 403
    check "bob may not ask for more replicas than a user may have (429)" \
        test "$(as "$TB" -X POST -d '{"model":"shared","name":"bob~big","replicas":1,"max_replicas":32}' "$H/v1/deployments")" = 429
    capture "$LOOM" quota set --user bob --replicas 1 --state-dir "$D"
    check "with a quota of 1 replica, bob may not add a second deployment (429)" \
        test "$(as "$TB" -X POST -d '{"model":"shared","name":"bob~two"}' "$H/v1/deployments")" = 429
    check "  ... saying the quota" grep -q "at most 1 replicas" "$T/body"
    # a rollout serves only what its caller may read, and is public only if that version is
    check "alice adds a private version 2 to her public model (201)" \
        test "$(as "$TA" -X POST --data-binary @"$ART" "$H/v1/models/shared")" = 201
    check "bob may not roll his deployment out to alice's private version 2 (403)" \
        test "$(as "$TB" -X PUT -d '{"version":2}' "$H/v1/deployments/bob~s")" = 403
    check "  ... saying why" body_has "private to another user"
    check "  ... nor to the newest version, which is that one (403)" \
        test "$(as "$TB" -X PUT -d '{}' "$H/v1/deployments/bob~s")" = 403
    check "  ... his deployment still serves version 1" \
        eval 'as "$TB" "$H/v1/deployments/bob~s" >/dev/null; test "$(json_eval "$T/body" "d[\"version\"]")" = 1'
    check "alice deploys version 1 of her public model (201)" \
        test "$(as "$TA" -X POST -d '{"model":"shared","version":1,"name":"alice~s"}' "$H/v1/deployments")" = 201
    check "bob classifies with it (200)" test "$(as "$TB" -X POST -d "$INFER" "$H/v2/models/alice~s/infer")" = 200
    check "alice rolls it out to her private version 2 (200)" \
        test "$(as "$TA" -X PUT -d '{"version":2}' "$H/v1/deployments/alice~s")" = 200
    check "  ... now it is private: bob may not classify with it (403)" \
        test "$(as "$TB" -X POST -d "$INFER" "$H/v2/models/alice~s/infer")" = 403
    check "  ... alice may (200)" test "$(as "$TA" -X POST -d "$INFER" "$H/v2/models/alice~s/infer")" = 200
    check "the admin undeploys the three (200, 200, 200)" \
        test "$(as "$TR" -X DELETE "$H/v1/deployments/bob~s")$(as "$TR" -X DELETE "$H/v1/deployments/alice~secret")$(as "$TR" -X DELETE "$H/v1/deployments/alice~s")" = 200200200
else
    skip "deployment tenancy: no digits dataset to train a model"
fi

# ---- connections and request rates -------------------------------------------------------------
# 1,100 idle connections (more than the server's 1,024, and than one address's
# 128): health checks and users still get in (idle connections make room)
"$PY" - "$(cat "$D/http_address")" "$TB" >"$T/idle.txt" <<'PY'
import resource, socket, sys, time, http.client
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
host, port = sys.argv[1].rsplit(":", 1)
idle = []
for _ in range(1100):
    try:
        idle.append(socket.create_connection((host, int(port)), timeout=5))
    except OSError:
        break
time.sleep(0.5)
def get(path, token=None):
    c = http.client.HTTPConnection(host, int(port), timeout=10)
    c.request("GET", path, headers={"Authorization": "Bearer " + token} if token else {})
    st = c.getresponse().status
    c.close()
    return st
print(len(idle), get("/v2/health/ready"), get("/v1/models", sys.argv[2]))
for s in idle:
    s.close()
PY
read -r NIDLE HEALTH BOBS <"$T/idle.txt"
check "with $NIDLE idle connections open, the health check answers 200 ($HEALTH)" test "$HEALTH" = 200
check "  ... and bob's request too ($BOBS)" test "$BOBS" = 200
# one user's flood of requests is limited (--http-rate 100: bursts of 200): 429s for
# them, while another user's requests go through
"$PY" - "$(cat "$D/http_address")" "$TC" "$TB" >"$T/rate.txt" <<'PY'
import sys, http.client
host, port = sys.argv[1].rsplit(":", 1)
c = http.client.HTTPConnection(host, int(port), timeout=10)
codes = {}
for _ in range(600):
    c.request("GET", "/v1/models", headers={"Authorization": "Bearer " + sys.argv[2]})
    r = c.getresponse(); r.read()
    codes[r.status] = codes.get(r.status, 0) + 1
o = http.client.HTTPConnection(host, int(port), timeout=10)
o.request("GET", "/v1/models", headers={"Authorization": "Bearer " + sys.argv[3]})
print(codes.get(200, 0), codes.get(429, 0), o.getresponse().status)
PY
read -r OK200 OK429 OTHER <"$T/rate.txt"
check "600 quick requests of carol: some 429 ($OK429), at least the burst served ($OK200)" \
    eval 'test "$OK429" -gt 0 && test "$OK200" -ge 200'
check "  ... bob's request meanwhile: 200 ($OTHER)" test "$OTHER" = 200

# ---- revocation ------------------------------------------------------------------------------
capture "$LOOM" token revoke "$TA" --state-dir "$D"
check "loom token revoke" test "$RC" -eq 0
check "the revoked token is refused within 5 s (401)" wait_until 8 eval 'test "$(as "$TA" "$H/v1/models")" = 401'
check "bob's token still works (200)" test "$(as "$TB" "$H/v1/models")" = 200
capture "$LOOM" token revoke "$TA" --state-dir "$D"
check "revoking it again says there is no such token" eval 'test "$RC" -ne 0 && grep -q "no such token" <<<"$ERR"'
capture "$LOOM" stop --state-dir "$D"
finish
