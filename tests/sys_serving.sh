#!/bin/bash
# sys_serving.sh — a newcomer's path through model serving, end to end on a real
# cluster: train the digits classifier (examples/digits_mlp on scikit-learn's
# digits from Debian), register it over HTTP, deploy it on 2 replicas, classify
# digits through the KServe v2 REST protocol with a client written from the
# protocol's text (Python's http.client and json, nothing of loom's), then the
# registry's search, download, versions and deletion, bad requests in the
# protocol's error shape, undeploy, and the registry surviving a restart of
# the head (it lives in the head's LMDB key-value table).
set -euo pipefail
. "$(dirname "$0")/lib.sh" "$@"

need_cmd curl
rc=0
CSV=$(bash "$SRC/scripts/get_digits.sh") || rc=$?
if [ "$rc" != 0 ]; then
    skip "the digits dataset is not available (scripts/get_digits.sh: $rc)"
    finish
    exit 0
fi

# ---- train --------------------------------------------------------------------------
capture "$BUILD/bin/digits_mlp" train --data "$CSV" --out "$T/digits.safetensors"
check "digits_mlp trains a model" test "$RC" -eq 0
check "  ... and prints its test accuracy ($(grep -o 'test accuracy [0-9.]*' <<<"$OUT" | head -1))" \
    grep -q "test accuracy 0.9" <<<"$OUT"

D=$T/st
use_state_dir "$D"
capture "$LOOM" start --head --port 0 --state-dir "$D" --num-cpus 8 --http-port 0 --http-auth=none
if [ "$RC" -ne 0 ]; then bad "loom start"; show_capture; finish; exit 1; fi
H=$(cat "$D/http_address")
code() { curl -s -o "$T/body" -w '%{http_code}' "$@"; }
body_has() { grep -q -- "$1" "$T/body"; }
wait_until 15 eval 'test "$(code "http://$H/v2/health/ready")" = 200' || true

# ---- register -------------------------------------------------------------------------
check "POST /v1/models/digits registers the artifact (201)" \
    test "$(code -X POST --data-binary @"$T/digits.safetensors" \
        "http://$H/v1/models/digits?author=ada&license=BSD-3-Clause&framework=loom-mlp&dataset=sklearn-digits&tags=demo,vision&produced_by=digits_mlp&parameters=%7B%22hidden%22%3A64%7D")" = 201
check "  ... as version 1" test "$(json_eval "$T/body" 'd["version"]')" = 1
SHA=$(sha256sum "$T/digits.safetensors" | cut -d' ' -f1)
check "  ... with the artifact's sha256" test "$(json_eval "$T/body" 'd["sha256"]')" = "$SHA"
check "  ... and its metadata (author, parameters)" \
    test "$(json_eval "$T/body" 'd["author"] + str(d["parameters"]["hidden"])')" = ada64
check "a second upload is version 2" \
    test "$(code -X POST --data-binary @"$T/digits.safetensors" "http://$H/v1/models/digits?author=bob")" = 201
check "  ... numbered automatically" test "$(json_eval "$T/body" 'd["version"]')" = 2
check "search by tag is 200" test "$(code "http://$H/v1/models?tag=demo")" = 200
check "  ... and finds version 1, the newest with that tag" \
    test "$(json_eval "$T/body" '[(m["name"], m["version"]) for m in d["models"]]')" = "[('digits', 1)]"
check "search by author bob finds version 2" \
    eval 'code "http://$H/v1/models?author=bob" >/dev/null; test "$(json_eval "$T/body" "[m[\"version\"] for m in d[\"models\"]]")" = "[2]"'
check "search by an unknown tag finds nothing" \
    eval 'code "http://$H/v1/models?tag=nope" >/dev/null; test "$(json_eval "$T/body" "len(d[\"models\"])")" = 0'
check "GET /v1/models/digits lists 2 versions" \
    eval 'code "http://$H/v1/models/digits" >/dev/null; test "$(json_eval "$T/body" "len(d[\"versions\"])")" = 2'
check "download of version 1 is the same bytes" \
    eval 'curl -s -o "$T/dl" "http://$H/v1/models/digits/versions/1/artifact" && cmp -s "$T/dl" "$T/digits.safetensors"'
check "a bad model name is 400" test "$(code -X POST --data-binary x "http://$H/v1/models/a%20b")" = 400
check "an empty artifact is 400" test "$(code -X POST "http://$H/v1/models/empty")" = 400
check "an unknown version is 404" test "$(code "http://$H/v1/models/digits/versions/9")" = 404

# ---- deploy ---------------------------------------------------------------------------------
check "POST /v1/deployments deploys version 1 on 2 replicas (201)" \
    test "$(code -X POST -d '{"model":"digits","version":1,"replicas":2}' "http://$H/v1/deployments")" = 201
[ "$(cat "$T/body" | head -c 1)" = "{" ] || cat "$T/body"
check "  ... with 2 replicas" test "$(json_eval "$T/body" 'd["replicas"]')" = 2
check "a second deployment with that name is 409" \
    test "$(code -X POST -d '{"model":"digits"}' "http://$H/v1/deployments")" = 409
check "a deployment of an unknown model is 404" \
    test "$(code -X POST -d '{"model":"nope","name":"x"}' "http://$H/v1/deployments")" = 404
check "a deployment without a model is 400" test "$(code -X POST -d '{"replicas":2}' "http://$H/v1/deployments")" = 400
check "loom actors shows 2 Model replicas alive" \
    test "$("$LOOM" actors --state-dir "$D" | grep -c 'Model .*alive')" = 2

# ---- KServe v2, from the protocol's text ------------------------------------------------------------
cat >"$T/kserve_client.py" <<'EOF'
# A KServe v2 / Open Inference Protocol REST client: only http.client and json.
import csv, http.client, json, sys
host, port = sys.argv[1].split(":")
rows = [[float(x) for x in r] for r in csv.reader(open(sys.argv[2]))]
conn = http.client.HTTPConnection(host, int(port), timeout=30)

def call(method, path, body=None):
    conn.request(method, path, body=None if body is None else json.dumps(body),
                 headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    data = r.read()
    return r.status, json.loads(data) if data else None

out = {}
out["server_live"] = call("GET", "/v2/health/live")[0]
out["server_ready"] = call("GET", "/v2/health/ready")[0]
st, meta = call("GET", "/v2/models/digits")
out["metadata"] = st
out["meta_ok"] = (meta["name"] == "digits" and meta["inputs"][0]["shape"] == [-1, 64]
                  and meta["inputs"][0]["datatype"] == "FP32"
                  and {o["name"] for o in meta["outputs"]} == {"probabilities", "label"})
out["model_ready"] = call("GET", "/v2/models/digits/ready")[0]
out["version_ready"] = call("GET", "/v2/models/digits/versions/1/ready")[0]
out["other_version"] = call("GET", "/v2/models/digits/versions/2/ready")[0]
correct = total = 0
for i in range(0, len(rows), 50):
    batch = rows[i:i + 50]
    req = {"id": "batch-%d" % i,
           "inputs": [{"name": "pixels", "shape": [len(batch), 64], "datatype": "FP32",
                       "data": [r[:64] for r in batch]}],
           "outputs": [{"name": "label"}]}
    st, resp = call("POST", "/v2/models/digits/versions/1/infer", req)
    if st != 200:
        out["infer_error"] = [st, resp]
        break
    (lab,) = [o for o in resp["outputs"] if o["name"] == "label"]
    assert resp["id"] == "batch-%d" % i and lab["shape"] == [len(batch)] and lab["datatype"] == "INT64"
    assert len(resp["outputs"]) == 1, "only the asked-for output"
    correct += sum(1 for p, r in zip(lab["data"], batch) if p == int(r[64]))
    total += len(batch)
out["accuracy"] = round(correct / max(total, 1), 4)
out["total"] = total
st, resp = call("POST", "/v2/models/digits/infer",
                {"inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP64", "data": rows[0][:64]}]})
probs = [o for o in resp["outputs"] if o["name"] == "probabilities"][0]
out["probs_sum"] = round(sum(probs["data"]), 4)
out["bad_shape"] = call("POST", "/v2/models/digits/infer",
                        {"inputs": [{"name": "pixels", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]})
out["short_data"] = call("POST", "/v2/models/digits/infer",
                         {"inputs": [{"name": "pixels", "shape": [2, 64], "datatype": "FP32", "data": [0] * 64}]})
out["bad_type"] = call("POST", "/v2/models/digits/infer",
                       {"inputs": [{"name": "pixels", "shape": [1, 1], "datatype": "BYTES", "data": ["a"]}]})
out["unknown_model"] = call("POST", "/v2/models/nope/infer", {"inputs": []})
out["wrong_version"] = call("POST", "/v2/models/digits/versions/2/infer", {"inputs": []})[0]
conn.request("POST", "/v2/models/digits/infer", body=b"{not json", headers={"Content-Type": "application/json"})
r = conn.getresponse()
out["not_json"] = [r.status, json.loads(r.read())]
print(json.dumps(out))
EOF
capture python3 "$T/kserve_client.py" "$H" "$CSV"
printf '%s\n' "$OUT" >"$T/kserve.json"
[ "$RC" -eq 0 ] || show_capture
kj() { json_eval "$T/kserve.json" "$1" 2>/dev/null; }
check "KServe: server live and ready (200, 200)" test "$(kj '[d["server_live"], d["server_ready"]]')" = "[200, 200]"
check "KServe: model metadata 200, inputs [-1, 64] FP32, outputs probabilities and label" \
    test "$(kj '[d["metadata"], d["meta_ok"]]')" = "[200, True]"
check "KServe: model ready, version 1 ready, version 2 not deployed" \
    test "$(kj '[d["model_ready"], d["version_ready"], d["other_version"]]')" = "[200, 200, 404]"
check "KServe: all $(kj 'd["total"]') digits classified, accuracy $(kj 'd["accuracy"]') >= 0.95" \
    test "$(kj 'd["total"] == 1797 and d["accuracy"] >= 0.95')" = True
check "KServe: FP64 input, probabilities sum to 1" test "$(kj 'd["probs_sum"]')" = 1.0
check "KServe: a wrong shape is 400 with an error" test "$(kj 'd["bad_shape"][0] == 400 and "error" in d["bad_shape"][1]')" = True
check "KServe: too little data is 400" test "$(kj 'd["short_data"][0]')" = 400
check "KServe: an unsupported datatype is 400" test "$(kj 'd["bad_type"][0]')" = 400
check "KServe: an unknown model is 404 with an error" \
    test "$(kj 'd["unknown_model"][0] == 404 and "error" in d["unknown_model"][1]')" = True
check "KServe: a version not deployed is 404" test "$(kj 'd["wrong_version"]')" = 404
check "KServe: a body that is not JSON is 400" test "$(kj 'd["not_json"][0]')" = 400
check "the replicas are still alive after the bad requests" \
    test "$("$LOOM" actors --state-dir "$D" | grep -c 'Model .*alive')" = 2

# ---- load: batching, autoscaling, rollout with no failed request --------------------------------------
check "deploy digits-live (1 replica, autoscaling to 3, batches up to 32)" \
    test "$(code -X POST -d '{"model":"digits","name":"digits-live","version":1,"replicas":1,"min_replicas":1,"max_replicas":3,"target_load":2,"max_batch_size":32,"max_wait_ms":5}' "http://$H/v1/deployments")" = 201
cat >"$T/load.py" <<'PYEOF'
# 16 clients send one digit each, as fast as they can, for 14 s; a rollout
# to version 2 starts after 3 s.  Every answer must be 200.
import csv, http.client, json, sys, threading, time
host, port = sys.argv[1].split(":")
rows = [[float(x) for x in r] for r in csv.reader(open(sys.argv[2]))]
stop = time.time() + 14
res = {"ok": 0, "bad": 0, "versions": {}, "errors": [], "max_replicas": 1}
lock = threading.Lock()

def client(k):
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    i = k
    while time.time() < stop:
        r = rows[i % len(rows)]
        body = {"inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP32", "data": r[:64]}],
                "outputs": [{"name": "label"}]}
        conn.request("POST", "/v2/models/digits-live/infer", body=json.dumps(body))
        resp = conn.getresponse()
        data = resp.read()
        with lock:
            if resp.status != 200:
                res["bad"] += 1
                if len(res["errors"]) < 3:
                    res["errors"].append([resp.status, data.decode()[:200]])
            else:
                v = json.loads(data)["model_version"]
                res["ok"] += 1
                res["versions"][v] = res["versions"].get(v, 0) + 1
        i += 16

def watcher():
    conn = http.client.HTTPConnection(host, int(port), timeout=120)
    rolled = False
    while time.time() < stop:
        time.sleep(0.5)
        if not rolled and time.time() > stop - 11:
            conn.request("PUT", "/v1/deployments/digits-live", body=json.dumps({"version": 2}))
            r = conn.getresponse()
            r.read()
            res["rollout"] = r.status
            rolled = True
        conn.request("GET", "/v1/deployments/digits-live")
        r = conn.getresponse()
        d = json.loads(r.read())
        res["max_replicas"] = max(res["max_replicas"], d.get("replicas", 0))

ts = [threading.Thread(target=client, args=(k,)) for k in range(16)] + [threading.Thread(target=watcher)]
t0 = time.time()
for t in ts:
    t.start()
for t in ts:
    t.join()
res["rps"] = round(res["ok"] / (time.time() - t0))
print(json.dumps(res))
PYEOF
capture python3 "$T/load.py" "$H" "$CSV"
printf '%s\n' "$OUT" >"$T/load.json"
[ "$RC" -eq 0 ] || show_capture
lj() { json_eval "$T/load.json" "$1" 2>/dev/null; }
check "load: $(lj 'd["ok"]') answers at $(lj 'd["rps"]')/s, none failed ($(lj 'd["bad"]') failed: $(lj 'd["errors"]'))" \
    test "$(lj 'd["ok"] > 100 and d["bad"] == 0')" = True
check "load: the rollout answered 200" test "$(lj 'd.get("rollout")')" = 200
check "load: answers came from version 1, then version 2 ($(lj 'd["versions"]'))" \
    test "$(lj 'd["versions"].get("1", 0) > 0 and d["versions"].get("2", 0) > 0')" = True
check "load: autoscaling added replicas (up to $(lj 'd["max_replicas"]'))" test "$(lj 'd["max_replicas"] >= 2')" = True
code "http://$H/metrics" >/dev/null
cp "$T/body" "$T/metrics.txt"
BS=$(awk '/^loom_serve_batch_rows_sum\{deployment="digits-live"\}/ {s=$2} /^loom_serve_batch_rows_count\{deployment="digits-live"\}/ {c=$2} END {if (c > 0) printf "%.2f", s / c; else print 0}' "$T/metrics.txt")
check "metrics: requests were batched (mean batch $BS rows > 1)" awk -v b="$BS" 'BEGIN {exit !(b > 1)}'
check "metrics: requests counted by model and code" grep -q 'loom_serve_requests_total{model="digits-live",code="200"}' "$T/metrics.txt"
check "metrics: latency histogram per model" grep -q 'loom_serve_request_seconds_bucket{model="digits-live",le="+Inf"}' "$T/metrics.txt"
check "metrics: replicas gauge" grep -q 'loom_serve_replicas{deployment="digits-live"}' "$T/metrics.txt"
check "autoscaling: idle, it scales back down to 1 replica" \
    wait_until 40 eval 'code "http://$H/v1/deployments/digits-live" >/dev/null; test "$(json_eval "$T/body" "d[\"replicas\"]")" = 1'
check "the retired replicas ended (digits' 2 and digits-live's 1 alive)" \
    wait_until 10 eval 'test "$("$LOOM" actors --state-dir "$D" | grep -c "Model .*alive")" = 3'
check "DELETE /v1/deployments/digits-live is 200" test "$(code -X DELETE "http://$H/v1/deployments/digits-live")" = 200

# ---- a deployment's bounded queue: 503 with Retry-After ------------------------------------------------
check "deploy digits-tight (max_queued 1, no batching)" \
    test "$(code -X POST -d '{"model":"digits","name":"digits-tight","version":1,"max_queued":1,"max_batch_size":1}' "http://$H/v1/deployments")" = 201
cat >"$T/tight.py" <<'PYEOF'
import csv, http.client, json, sys, threading
host, port = sys.argv[1].split(":")
row = [float(x) for x in next(csv.reader(open(sys.argv[2])))][:64]
codes, retry = {}, set()
lock = threading.Lock()
def client():
    c = http.client.HTTPConnection(host, int(port), timeout=30)
    for _ in range(25):
        c.request("POST", "/v2/models/digits-tight/infer",
                  body=json.dumps({"inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP32", "data": row}]}))
        r = c.getresponse()
        r.read()
        with lock:
            codes[r.status] = codes.get(r.status, 0) + 1
            if r.status == 503: retry.add(r.getheader("Retry-After"))
ts = [threading.Thread(target=client) for _ in range(12)]
for t in ts: t.start()
for t in ts: t.join()
print(json.dumps({"codes": codes, "retry": sorted(retry)}))
PYEOF
capture python3 "$T/tight.py" "$H" "$CSV"
printf '%s\n' "$OUT" >"$T/tight.json"
tj() { json_eval "$T/tight.json" "$1" 2>/dev/null; }
check "a full deployment queue answers 503 ($(tj 'd["codes"]'))" test "$(tj 'd["codes"].get("503", 0) > 0')" = True
check "  ... with Retry-After: 1, and the rest 200" \
    test "$(tj 'd["retry"] == ["1"] and d["codes"].get("200", 0) + d["codes"].get("503", 0) == 300')" = True
check "DELETE /v1/deployments/digits-tight" test "$(code -X DELETE "http://$H/v1/deployments/digits-tight")" = 200

# ---- undeploy, delete, restart ---------------------------------------------------------------------------
check "DELETE /v1/deployments/digits is 200" test "$(code -X DELETE "http://$H/v1/deployments/digits")" = 200
check "  ... the model is no longer ready (404)" test "$(code "http://$H/v2/models/digits/ready")" = 404
check "  ... and its replicas are gone" \
    wait_until 10 eval 'test "$("$LOOM" actors --state-dir "$D" | grep -c "Model .*alive")" = 0'
check "DELETE a model version is 200" test "$(code -X DELETE "http://$H/v1/models/digits/versions/2")" = 200
check "  ... then it is 404" test "$(code "http://$H/v1/models/digits/versions/2")" = 404
capture "$LOOM" stop --state-dir "$D"
capture "$LOOM" start --head --port 0 --state-dir "$D" --num-cpus 1 --http-port 0 --http-auth=none
check "the cluster starts again on the same state dir" test "$RC" -eq 0
H=$(cat "$D/http_address")
wait_until 15 eval 'test "$(code "http://$H/v2/health/ready")" = 200' || true
check "after the restart the registry still has version 1" \
    test "$(code "http://$H/v1/models/digits/versions/1")" = 200
check "  ... and its artifact, byte for byte" \
    eval 'curl -s -o "$T/dl2" "http://$H/v1/models/digits/versions/1/artifact" && cmp -s "$T/dl2" "$T/digits.safetensors"'
check "  ... and not the deleted version 2" test "$(code "http://$H/v1/models/digits/versions/2")" = 404
capture "$LOOM" stop --state-dir "$D"
finish
