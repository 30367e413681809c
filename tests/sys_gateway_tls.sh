#!/bin/bash
# sys_gateway_tls.sh — the gateway over TLS on a real head (`loom start --head
# --http-port 0 --tls-cert FILE --tls-key FILE`), with a CA and a server
# certificate the test makes with the openssl command: `loom start` says
# https://, http_scheme says https, curl trusting the test CA gets health and,
# with a token made by `loom token create --run`, submits a command task and
# reads its state and logs; curl without the CA, a TLS 1.1 client and plain
# HTTP are refused; a key that does not match its certificate (and a missing
# file) make `loom start` fail, saying why.
set -euo pipefail
. "$(dirname "$0")/lib.sh" "$@"

need_cmd curl
need_cmd openssl

# ---- a CA and a certificate for 127.0.0.1 / localhost ------------------------------
P=$T/pki
mkdir -p "$P"
(
    cd "$P"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=loom-sys-ca \
        -keyout ca.key -out ca.pem -addext basicConstraints=critical,CA:TRUE \
        -addext keyUsage=critical,keyCertSign,cRLSign
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
        -keyout server.key -out server.csr
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >ext.cnf
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile ext.cnf \
        -out server.pem
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out other.key
) >"$T/pki.log" 2>&1 || { bad "openssl made the test certificates"; cat "$T/pki.log"; finish; }

# ---- a wrong pair, a missing file --------------------------------------------------
capture "$LOOM" start --head --port 0 --state-dir "$T/wrong" --no-node --http-port 0 \
    --tls-cert "$P/server.pem" --tls-key "$P/other.key"
check "a key that does not match its certificate: loom start fails" test "$RC" -ne 0
check "  ... saying why" grep -q "does not match the certificate" <<<"$OUT$ERR"
"$LOOM" stop --state-dir "$T/wrong" >/dev/null 2>&1 || true
capture "$LOOM" start --head --port 0 --state-dir "$T/missing" --no-node --http-port 0 \
    --tls-cert "$P/nope.pem" --tls-key "$P/server.key"
check "a certificate file that is not there: loom start fails" test "$RC" -ne 0
check "  ... naming it" grep -q "nope.pem" <<<"$OUT$ERR"
"$LOOM" stop --state-dir "$T/missing" >/dev/null 2>&1 || true

# ---- a head with TLS -----------------------------------------------------------------
D=$T/st
use_state_dir "$D"
capture "$LOOM" start --head --port 0 --state-dir "$D" --num-cpus 2 --http-port 0 \
    --tls-cert "$P/server.pem" --tls-key "$P/server.key"
if [ "$RC" -ne 0 ]; then bad "loom start --tls-cert --tls-key"; show_capture; finish; fi
ok "loom start --head --http-port 0 --tls-cert --tls-key"
check "start prints the gateway's https address" grep -q "HTTP gateway on https://127.0.0.1:" <<<"$OUT"
check "http_address is HOST:PORT" grep -Eq '^127\.0\.0\.1:[0-9]+$' "$D/http_address"
check "http_scheme is https" test "$(cat "$D/http_scheme")" = https
ADDR=$(cat "$D/http_address")
H=https://$ADDR

code() { curl -s --max-time 20 --cacert "$P/ca.pem" -o "$T/body" -w '%{http_code}' "$@"; }
as() { local tok=$1; shift; code -H "Authorization: Bearer $tok" "$@"; }
body_has() { grep -q -- "$1" "$T/body"; }

check "GET /v2/health/ready over TLS turns 200" wait_until 15 eval 'test "$(code "$H/v2/health/ready")" = 200'
check "  ... by name too (https://localhost)" test "$(code "https://localhost:${ADDR##*:}/v2/health/live")" = 200
check "without the CA, curl refuses the certificate" \
    eval '! curl -s --max-time 20 -o /dev/null "$H/v2/health/live"'
check "a TLS 1.1 client is refused" \
    eval '! curl -s --max-time 20 --cacert "$P/ca.pem" --tlsv1.1 --tls-max 1.1 -o /dev/null "$H/v2/health/live"'
check "plain HTTP on the port gets no HTTP answer" \
    test "$(curl -s --max-time 20 -o /dev/null -w '%{http_code}' "http://$ADDR/v2/health/live" || true)" = 000

capture "$LOOM" token create --user alice --run --state-dir "$D"
TA=$OUT
check "loom token create --user alice --run" grep -Eq '^loom_[0-9a-f]{48}$' <<<"$TA"
check "no token over TLS: 401" test "$(code "$H/v1/jobs")" = 401
check "POST /v1/jobs of a command task over TLS is 201" \
    test "$(as "$TA" -X POST --data-binary '{"tasks":[{"name":"sh","command":["sh","-c","echo tls-task-ran"]}]}' "$H/v1/jobs")" = 201
JOB=$(json_eval "$T/body" 'd["job_id"]' 2>/dev/null || echo none)
check "  ... with a job id ($JOB)" grep -Eq '^[0-9a-f]{16}$' <<<"$JOB"
check "GET /v1/jobs/ID turns finished" wait_until 30 eval \
    'test "$(as "$TA" "$H/v1/jobs/$JOB")" = 200 && test "$(json_eval "$T/body" "all(t[\"state\"]==\"finished\" for t in d[\"tasks\"])")" = True'
check "  ... and its logs hold what it printed" \
    eval 'test "$(as "$TA" "$H/v1/jobs/$JOB/logs?task=sh")" = 200 && body_has tls-task-ran'
check "/metrics over TLS counts failed handshakes" \
    eval 'test "$(code "$H/metrics")" = 200 && body_has "loom_http_tls_handshake_failures_total"'

capture "$LOOM" stop --state-dir "$D"
check "loom stop" test "$RC" -eq 0
check "  ... closes the port" wait_until 10 eval '! curl -s --max-time 2 --cacert "$P/ca.pem" -o /dev/null "$H/v2/health/live"'
finish
