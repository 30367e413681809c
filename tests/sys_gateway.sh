#!/bin/bash
# sys_gateway.sh — the HTTP gateway of a real head (`loom start --head
# --http-port 0`), driven by curl and by Python's http.client (clients written
# from RFC 9110 and the KServe v2 health routes, not from loom's code): health,
# jobs REST (submit a graph, poll its result, logs, state, delete), bad input
# (malformed JSON, "file" arguments, library paths outside --http-lib-dir,
# unknown jobs and routes, wrong methods), keep-alive, /metrics, and that
# `loom stop` closes the port.
set -euo pipefail
. "$(dirname "$0")/lib.sh" "$@"

need_cmd curl

D=$T/st
use_state_dir "$D"
mkdir -p "$T/libs"
cp "$EXLIB" "$T/libs/"

# auth off is an explicit choice, and only on loopback
capture "$LOOM" start --head --port 0 --state-dir "$T/open" --no-node --http-port 0 --http-auth=none --http-bind 0.0.0.0
check "--http-auth=none on 0.0.0.0 is refused" test "$RC" -ne 0
check "  ... saying why" grep -q "loopback addresses only" "$T/open/logs/head.log"
capture "$LOOM" start --head --port 0 --state-dir "$T/open2" --no-node --http-port 0 --http-auth=maybe
check "--http-auth=maybe is refused" test "$RC" -ne 0
"$LOOM" stop --state-dir "$T/open" >/dev/null 2>&1 || true
"$LOOM" stop --state-dir "$T/open2" >/dev/null 2>&1 || true
capture "$LOOM" start --head --port 0 --state-dir "$D" --num-cpus 2 --http-port 0 --http-auth=none --http-lib-dir "$T/libs"
if [ "$RC" -eq 0 ]; then ok "loom start --head --http-port 0"; else bad "loom start"; show_capture; finish; exit 1; fi
check "start prints the gateway's address" grep -q "HTTP gateway on http://127.0.0.1:" <<<"$OUT"
check "the http_address file exists" test -s "$D/http_address"
H=http://$(cat "$D/http_address")

code() { curl -s -o "$T/body" -w '%{http_code}' "$@"; }
body_has() { grep -q -- "$1" "$T/body"; }

# ---- health and metrics --------------------------------------------------------
check "GET /v2/health/live is 200" test "$(code "$H/v2/health/live")" = 200
check "  ... with {\"live\": true}" body_has '"live": *true'
check "GET /v2/health/ready turns 200 once the gateway reaches the head" \
    wait_until 15 eval 'test "$(code "$H/v2/health/ready")" = 200'

# ---- jobs REST -------------------------------------------------------------------
cat >"$T/job.json" <<EOF
{"name": "rest-test", "library": "libloom_examples.so", "tasks": [
  {"name": "sum", "function": "add", "args": [{"msgpack": 40}, {"msgpack": 2}]},
  {"name": "words", "function": "count_words", "args": ["to be or not to be"]},
  {"name": "sh", "command": ["sh", "-c", "echo out-line; echo err-line >&2"]}
]}
EOF
check "POST /v1/jobs is 201" test "$(code -X POST --data-binary @"$T/job.json" "$H/v1/jobs")" = 201
JOB=$(json_eval "$T/body" 'd["job_id"]' 2>/dev/null || echo none)
check "  ... and returns a job id ($JOB)" grep -Eq '^[0-9a-f]{16}$' <<<"$JOB"
check "  ... counting 3 tasks" test "$(json_eval "$T/body" 'd["tasks"]')" = 3
check "GET result of sum turns 200 (202 while running)" \
    wait_until 20 eval 'test "$(code "$H/v1/jobs/$JOB/result?task=sum")" = 200'
check "  ... and is 42" test "$(cat "$T/body")" = 42
check "GET result of count_words is its JSON map" \
    wait_until 20 eval 'test "$(code "$H/v1/jobs/$JOB/result?task=words")" = 200'
check "  ... with to: 2" test "$(json_eval "$T/body" 'd["to"]')" = 2
wait_until 20 eval 'test "$(code "$H/v1/jobs/$JOB/result?task=sh")" = 200' || true
check "GET logs of the command task is 200" test "$(code "$H/v1/jobs/$JOB/logs?task=sh")" = 200
check "  ... with its stdout" body_has out-line
check "  ... and its stderr" body_has err-line
check "GET /v1/jobs/ID is 200" test "$(code "$H/v1/jobs/$JOB")" = 200
check "  ... every task finished" \
    test "$(json_eval "$T/body" 'all(t["state"]=="finished" for t in d["tasks"])')" = True
check "result without ?task= is 400" test "$(code "$H/v1/jobs/$JOB/result")" = 400
check "result of an unknown task is 404" test "$(code "$H/v1/jobs/$JOB/result?task=nope")" = 404
check "DELETE /v1/jobs/ID is 200" test "$(code -X DELETE "$H/v1/jobs/$JOB")" = 200
check "  ... then the job is gone (404)" test "$(code "$H/v1/jobs/$JOB")" = 404

# ---- bad input -------------------------------------------------------------------
check "malformed JSON is 400" test "$(code -X POST --data-binary '{"tasks": [' "$H/v1/jobs")" = 400
check "  ... with a JSON error body" body_has '"error"'
check "a \"file\" argument is refused (400)" \
    test "$(code -X POST --data-binary '{"tasks":[{"name":"a","command":["cat"],"args":[{"file":"/etc/passwd"}]}]}' "$H/v1/jobs")" = 400
check "  ... saying why" body_has 'not accepted'
check "a library outside --http-lib-dir is refused (403)" \
    test "$(code -X POST --data-binary "{\"library\":\"$EXLIB\",\"tasks\":[{\"name\":\"a\",\"function\":\"add\",\"args\":[1,2]}]}" "$H/v1/jobs")" = 403
check "  ... and a ../ escape too" \
    test "$(code -X POST --data-binary '{"library":"../../../../../../usr/lib/x86_64-linux-gnu/libm.so.6","tasks":[{"name":"a","function":"add","args":[1,2]}]}' "$H/v1/jobs")" = 403
# the answer outside the directory does not tell which files exist there
libjob() { printf '{"library":"%s","tasks":[{"name":"a","function":"add","args":[1,2]}]}' "$1"; }
check "a library path outside that does not exist is refused the same way (403, 403)" \
    test "$(code -X POST --data-binary "$(libjob /nonexistent/x.so)" "$H/v1/jobs")$(code -X POST --data-binary "$(libjob ../../../nonexistent.so)" "$H/v1/jobs")" = 403403
check "  ... with the same words as one that exists" \
    eval 'code -X POST --data-binary "$(libjob /etc/passwd)" "$H/v1/jobs" >/dev/null; A=$(sed "s|/etc/passwd||" "$T/body");
          code -X POST --data-binary "$(libjob /etc/passwdx)" "$H/v1/jobs" >/dev/null; test "$A" = "$(sed "s|/etc/passwdx||" "$T/body")"'
check "a library inside --http-lib-dir that does not exist is 400" \
    test "$(code -X POST --data-binary "$(libjob nonexistent.so)" "$H/v1/jobs")" = 400
check "an unknown job is 404" test "$(code "$H/v1/jobs/0123456789abcdef")" = 404
check "an unknown route is 404" test "$(code "$H/v1/nothing")" = 404
check "PUT /v1/jobs is 405" test "$(code -X PUT "$H/v1/jobs")" = 405
for i in 1 2 3; do code -X POST --data-binary "{\"name\":\"page-$i\",\"tasks\":[{\"name\":\"t\",\"command\":[\"true\"]}]}" "$H/v1/jobs" >/dev/null; done
check "GET /v1/jobs?limit=2 is a page of 2, newest first" \
    eval 'code "$H/v1/jobs?limit=2" >/dev/null; test "$(json_eval "$T/body" "\",\".join(j[\"name\"] for j in d[\"jobs\"])")" = page-3,page-2'
check "  ... of all the jobs (total $(json_eval "$T/body" 'd["total"]' 2>/dev/null))" test "$(json_eval "$T/body" 'd["total"] >= 3')" = True
check "GET /v1/jobs?offset=2&limit=2 is the next page" \
    eval 'code "$H/v1/jobs?offset=2&limit=2" >/dev/null; test "$(json_eval "$T/body" "d[\"jobs\"][0][\"name\"]")" = page-1'
check "a bad limit is 400" test "$(code "$H/v1/jobs?limit=0")" = 400
check "an empty graph is 400" test "$(code -X POST --data-binary '{"tasks":[]}' "$H/v1/jobs")" = 400

# ---- a client from Python's standard library: keep-alive, several requests ------
cat >"$T/client.py" <<'EOF'
import http.client, json, sys, time
host, port = sys.argv[1].split(":")
conn = http.client.HTTPConnection(host, int(port), timeout=10)
ok = 0
for i in range(20):
    conn.request("GET", "/v2/health/live")
    r = conn.getresponse()
    body = r.read()
    if r.status == 200 and json.loads(body)["live"] is True:
        ok += 1
graph = {"tasks": [{"name": "n%d" % i, "function": "add", "args": [{"msgpack": i}, {"msgpack": 1}]}
                   for i in range(10)], "library_ref": None}
del graph["library_ref"]
graph["library"] = "libloom_examples.so"
conn.request("POST", "/v1/jobs", body=json.dumps(graph), headers={"Content-Type": "application/json"})
r = conn.getresponse()
job = json.loads(r.read())["job_id"] if r.status == 201 else None
total = 0
deadline = time.time() + 20
for i in range(10):
    while time.time() < deadline:
        conn.request("GET", "/v1/jobs/%s/result?task=n%d" % (job, i))
        r = conn.getresponse()
        body = r.read()
        if r.status == 200:
            total += json.loads(body)
            break
        time.sleep(0.05)
print("keepalive_ok", ok, "sum", total)
EOF
capture python3 "$T/client.py" "$(cat "$D/http_address")"
check "python http.client: 20 health checks on one connection" grep -q "keepalive_ok 20" <<<"$OUT"
check "  ... and a 10-task job's results sum to 55" grep -q "sum 55" <<<"$OUT"
[ "$RC" -eq 0 ] || show_capture

# ---- metrics -----------------------------------------------------------------------
check "GET /metrics is 200" test "$(code "$H/metrics")" = 200
check "  ... counts requests by code" body_has 'loom_http_requests_total{code="201"}'
check "  ... has a latency histogram" body_has 'loom_http_request_seconds_bucket{le="+Inf"}'
check "  ... reports tasks by state (refreshed from the head)" \
    wait_until 10 eval 'code "$H/metrics" >/dev/null; body_has "loom_tasks{state=\"finished\"}"'

# ---- overload: a tiny gateway (1 worker, 2 queued) under 40 clients ---------------------
D2=$T/st2
use_state_dir "$D2"
capture "$LOOM" start --head --port 0 --state-dir "$D2" --num-cpus 1 --http-port 0 --http-auth=none --http-workers 1 --http-queue 2
check "a gateway with --http-workers 1 --http-queue 2 starts" test "$RC" -eq 0
H2=$(cat "$D2/http_address")
wait_until 15 eval 'test "$(code "http://$H2/v2/health/ready")" = 200' || true
code -X POST --data-binary '{"tasks":[{"name":"slow","command":["sleep","30"]}]}' "http://$H2/v1/jobs" >/dev/null
SLOW=$(json_eval "$T/body" 'd["job_id"]' 2>/dev/null || echo none)
cat >"$T/overload.py" <<'PYEOF'
# 40 clients ask at once for a result that is not ready (each takes the one
# worker about 100 ms); meanwhile health checks must answer at once.
import http.client, json, sys, threading, time
host, port = sys.argv[1].split(":")
job = sys.argv[2]
codes, retry, health = {}, [], []
lock = threading.Lock()
def ask():
    c = http.client.HTTPConnection(host, int(port), timeout=30)
    c.request("GET", "/v1/jobs/%s/result?task=slow" % job)
    r = c.getresponse()
    r.read()
    with lock:
        codes[r.status] = codes.get(r.status, 0) + 1
        if r.status == 429:
            retry.append(r.getheader("Retry-After"))
def probe():
    c = http.client.HTTPConnection(host, int(port), timeout=30)
    for _ in range(10):
        t = time.time()
        c.request("GET", "/v2/health/live")
        r = c.getresponse()
        r.read()
        health.append((r.status, time.time() - t))
        time.sleep(0.02)
ts = [threading.Thread(target=ask) for _ in range(40)] + [threading.Thread(target=probe)]
for t in ts: t.start()
for t in ts: t.join()
print(json.dumps({"codes": codes, "retry_after": sorted(set(retry)),
                  "health_ok": all(s == 200 for s, _ in health), "health_max_ms": round(max(d for _, d in health) * 1000)}))
PYEOF
capture python3 "$T/overload.py" "$H2" "$SLOW"
printf '%s\n' "$OUT" >"$T/overload.json"
[ "$RC" -eq 0 ] || show_capture
oj() { json_eval "$T/overload.json" "$1" 2>/dev/null; }
check "overload: some requests refused with 429 ($(oj 'd["codes"]'))" test "$(oj 'd["codes"].get("429", 0) > 0')" = True
check "  ... the rest answered (202: still running)" test "$(oj 'd["codes"].get("202", 0) > 0')" = True
check "  ... nothing else" test "$(oj 'sum(d["codes"].values()) == d["codes"].get("429", 0) + d["codes"].get("202", 0)')" = True
check "  ... 429 carries Retry-After: 1" test "$(oj 'd["retry_after"]')" = "['1']"
check "  ... health checks answered 200 meanwhile (slowest $(oj 'd["health_max_ms"]') ms)" \
    test "$(oj 'd["health_ok"] and d["health_max_ms"] < 1000')" = True
capture "$LOOM" stop --state-dir "$D2"

# ---- stop ----------------------------------------------------------------------------
capture "$LOOM" stop --state-dir "$D"
check "loom stop" test "$RC" -eq 0
check "the gateway's port is closed" eval '! curl -s -m 2 "$H/v2/health/live" >/dev/null'
finish
