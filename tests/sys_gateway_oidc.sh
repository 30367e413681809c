#!/bin/bash
# sys_gateway_oidc.sh — OIDC access tokens at a real head's gateway: an
# identity provider made by the test (tests/oidc_tokens.py: RSA and EC keys,
# a JWKS file) signs JWTs; the gateway takes good RS256 and ES256 tokens
# (user from "preferred_username", projects from "groups", run and admin
# permissions from groups) and refuses forged, expired, not-yet-valid,
# wrong-audience, wrong-issuer, alg-none, HS256-with-the-public-key and
# tampered tokens, before reading their bodies; project members share a
# model; a rotated JWKS file takes effect without a restart.
set -euo pipefail
. "$(dirname "$0")/lib.sh" "$@"

need_cmd curl
if ! "$PY" -c 'import cryptography' 2>/dev/null; then
    skip "python3-cryptography is not installed"; finish; exit 0
fi
IDP=$T/idp
mkdir -p "$IDP"
"$PY" "$SRC/tests/oidc_tokens.py" keys "$IDP"
ISS=https://aai.example.org/realms/loom
D=$T/st
use_state_dir "$D"
capture "$LOOM" start --head --port 0 --state-dir "$D" --num-cpus 2 --http-port 0 \
    --oidc-issuer "$ISS" --oidc-audience loom-gw --oidc-jwks "$IDP/jwks.json" \
    --oidc-user-claim preferred_username --oidc-run-group researchers --oidc-admin-group ops
if [ "$RC" -ne 0 ]; then bad "loom start with OIDC"; show_capture; finish; exit 1; fi
H=http://$(cat "$D/http_address")

mint() { "$PY" "$SRC/tests/oidc_tokens.py" mint "$IDP" "$@"; }
claims() {   # USER GROUPS_JSON [extra json members]
    echo '{"iss":"'"$ISS"'","aud":["loom-gw","account"],"exp":"+300","iat":"-5","preferred_username":"'"$1"'","groups":'"$2"${3:+,$3}'}'
}
code() { curl -s -o "$T/body" -w '%{http_code}' "$@"; }
as() { local tok=$1; shift; code -H "Authorization: Bearer $tok" "$@"; }
body_has() { grep -q -- "$1" "$T/body"; }
JOB='{"tasks":[{"name":"e","command":["echo","hi"]}]}'

DANA=$(mint RS256 r1 "$(claims dana '["researchers","proj-x"]')")
ERIN=$(mint ES256 e1 "$(claims erin '["proj-x"]')")
GINA=$(mint ES256 e1 "$(claims gina '[]')")

# ---- good tokens --------------------------------------------------------------------
check "an RS256 token from the issuer works (200)" test "$(as "$DANA" "$H/v1/models")" = 200
check "an ES256 token works (200)" test "$(as "$ERIN" "$H/v1/models")" = 200
check "a member of the run group submits a job (201)" test "$(as "$DANA" -X POST -d "$JOB" "$H/v1/jobs")" = 201
check "  ... which is hers" \
    eval 'J=$(json_eval "$T/body" "d[\"job_id\"]"); test "$(as "$DANA" "$H/v1/jobs/$J")" = 200 && test "$(as "$ERIN" "$H/v1/jobs/$J")" = 403'
check "a user outside the run group may not run code (403)" test "$(as "$ERIN" -X POST -d "$JOB" "$H/v1/jobs")" = 403
check "  ... saying why" body_has "may not run code"

# ---- bad tokens -------------------------------------------------------------------------
refused() {   # DESC TOKEN WORD: 401 with WORD in the reason
    check "$1: 401" test "$(as "$2" "$H/v1/models")" = 401
    check "  ... saying '$3'" body_has "$3"
}
refused "expired" "$(mint RS256 r1 "$(claims dana '[]' | sed 's/"exp":"+300"/"exp":"-600"/')")" "expired"
refused "not valid yet (nbf in an hour)" "$(mint RS256 r1 "$(claims dana '[]' '"nbf":"+3600"')")" "not yet valid"
refused "another audience" "$(mint RS256 r1 "$(claims dana '[]' | sed 's/"loom-gw",//')")" "audience"
refused "another issuer" "$(mint RS256 r1 "$(claims dana '[]' | sed 's|realms/loom|realms/evil|')")" "issuer"
refused "signed by another key under our kid (forged)" "$(mint RS256 r1 "$(claims mallory '["ops"]')" --key evil)" "signature"
refused "alg none" "$(mint none r1 "$(claims mallory '["ops"]')")" "malformed"
refused "HS256 keyed with the issuer's public key" "$(mint HS256 r1 "$(claims mallory '["ops"]')")" "alg"
refused "an unknown kid" "$(mint RS256 zz "$(claims dana '[]')")" "key"
TAMPERED=$(IFS=.; set -- $DANA; echo "$1.$(mint RS256 r1 "$(claims dana '["ops"]')" | cut -d. -f2).$3")
refused "a payload swapped under a good signature (admin groups)" "$TAMPERED" "signature"
check "a forged token with a 60 MB body: 401 before the body is read" \
    test "$(head -c 60000000 /dev/zero | as "$(mint RS256 r1 "$(claims mallory '["ops"]')" --key evil)" \
              -H 'Expect:' -X POST --data-binary @- --max-time 20 "$H/v1/models/big" || true)" = 401

# ---- projects ------------------------------------------------------------------------------
printf 'weights' >"$T/art"
check "dana gives a model to her project proj-x (201)" \
    test "$(as "$DANA" -X POST --data-binary @"$T/art" "$H/v1/models/xm?project=proj-x")" = 201
check "erin, a member of proj-x, reads it (200)" test "$(as "$ERIN" "$H/v1/models/xm/versions/1")" = 200
check "gina, who is not, may not (403)" test "$(as "$GINA" "$H/v1/models/xm/versions/1")" = 403
check "dana may not give a model to a project she is not in (403)" \
    test "$(as "$DANA" -X POST --data-binary @"$T/art" "$H/v1/models/ym?project=proj-y")" = 403

# ---- admins and key rotation ---------------------------------------------------------------
OPS=$(mint RS256 r1 "$(claims olga '["ops"]')")
check "a member of the admin group reads dana's jobs (200)" \
    eval 'as "$OPS" "$H/v1/jobs?label=dana" >/dev/null; test "$(json_eval "$T/body" "d[\"total\"]")" = 1'
"$PY" "$SRC/tests/oidc_tokens.py" rotate "$IDP"
NEW=$(mint RS256 r2 "$(claims dana '[]')" --key rsa2)
check "after the JWKS file is rotated, the new key's tokens work within 15 s" \
    wait_until 15 eval 'test "$(as "$NEW" "$H/v1/models")" = 200'
check "  ... and the old key's do not (401)" test "$(as "$DANA" "$H/v1/models")" = 401
check "loom's own tokens still work beside OIDC" \
    eval 'TOK=$("$LOOM" token create --user zed --state-dir "$D") && test "$(as "$TOK" "$H/v1/models")" = 200'

# ---- a bad configuration fails at start ------------------------------------------------------
echo '{"keys":[]}' >"$T/empty.json"
capture "$LOOM" start --head --port 0 --state-dir "$T/st2" --no-node --http-port 0 \
    --oidc-issuer "$ISS" --oidc-audience loom-gw --oidc-jwks "$T/empty.json"
check "a JWKS without usable keys: loom start fails" test "$RC" -ne 0
"$LOOM" stop --state-dir "$T/st2" >/dev/null 2>&1 || true
capture "$LOOM" stop --state-dir "$D"
finish
