#!/bin/bash
# sys_usage.sh — accounting, quotas and the audit log on a real head with its
# gateway: usage per user, project and job adds up to what the jobs held
# (CPUs x seconds), survives a head restart, and is the same in `loom usage`,
# GET /v1/usage (a user sees only their own) and /metrics; a quota on running
# tasks holds however many jobs are sent at once (quota evasion by parallel
# requests); a user whose CPU-hours for the day are used up gets 429 for a
# new job; the audit log records tokens, quotas, jobs and models, without the
# tokens themselves.
set -euo pipefail
. "$(dirname "$0")/lib.sh" "$@"

need_cmd curl
D=$T/st
use_state_dir "$D"
start_head() {
    capture "$LOOM" start --head --port 0 --state-dir "$D" --num-cpus 4 --http-port 0
    if [ "$RC" -ne 0 ]; then bad "loom start"; show_capture; finish; exit 1; fi
    H=http://$(cat "$D/http_address")
}
start_head
TA=$("$LOOM" token create --user alice --run --project px --state-dir "$D")
TB=$("$LOOM" token create --user bob --run --state-dir "$D")
TC=$("$LOOM" token create --user carol --run --state-dir "$D")
TR=$("$LOOM" token create --user root --admin --state-dir "$D")
code() { curl -s -o "$T/body" -w '%{http_code}' "$@"; }
as() { local tok=$1; shift; code -H "Authorization: Bearer $tok" "$@"; }
job_of() { json_eval "$T/body" 'd["job_id"]'; }
done_all() {   # TOKEN JOB: every task finished
    as "$1" "$H/v1/jobs/$2" >/dev/null
    test "$(json_eval "$T/body" 'all(t["state"] == "finished" for t in d["tasks"])')" = True
}
sleeps() {   # N SECONDS CPUS: a job of N command tasks
    "$PY" -c 'import json, sys; n, s, c = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
print(json.dumps({"tasks": [{"name": "s%d" % i, "command": ["sleep", s], "num_cpus": c} for i in range(n)]}))' "$@"
}

# ---- usage adds up ------------------------------------------------------------------
check "alice submits 2 x (1 CPU, 1 s) in project px (201)" \
    test "$(as "$TA" -X POST -d "$(sleeps 2 1 1)" "$H/v1/jobs?project=px")" = 201
JA=$(job_of)
check "bob submits 1 x (2 CPUs, 1 s) (201)" test "$(as "$TB" -X POST -d "$(sleeps 1 1 2)" "$H/v1/jobs")" = 201
JB=$(job_of)
check "alice may not charge a project she is not in (403)" \
    test "$(as "$TA" -X POST -d "$(sleeps 1 0 1)" "$H/v1/jobs?project=other")" = 403
check "both jobs finish" wait_until 30 eval 'done_all "$TA" "$JA" && done_all "$TB" "$JB"'
sleep 1.5   # the head writes its accounting every second
near() { "$PY" -c 'import sys; v, want = float(sys.argv[1]), float(sys.argv[2]); sys.exit(0 if abs(v - want) <= 0.35 * want + 0.2 else 1)' "$1" "$2"; }
capture "$LOOM" usage --json --state-dir "$D"
echo "$OUT" >"$T/u.json"
cpu_s() { json_eval "$T/u.json" "round(d['usage'].get('$1', {}).get('cpu_hours', 0) * 3600, 3)"; }
check "alice used about 2 CPU-seconds ($(cpu_s alice))" near "$(cpu_s alice)" 2
check "bob used about 2 CPU-seconds ($(cpu_s bob))" near "$(cpu_s bob)" 2
check "alice ran 2 tasks, bob 1" \
    test "$(json_eval "$T/u.json" "[d['usage']['alice']['tasks'], d['usage']['bob']['tasks']]")" = "[2.0, 1.0]"
capture "$LOOM" usage --json --by project --state-dir "$D"
echo "$OUT" >"$T/p.json"
check "project px used what alice's job used" \
    test "$(json_eval "$T/p.json" "round(d['usage']['px']['cpu_hours'], 6)")" = "$(json_eval "$T/u.json" "round(d['usage']['alice']['cpu_hours'], 6)")"
check "the job's own record has the same figure" \
    eval 'as "$TA" "$H/v1/jobs/$JA" >/dev/null; near "$(json_eval "$T/body" "d[\"usage\"][\"cpu_s\"]")" 2'
check "GET /v1/usage as alice shows alice only" \
    eval 'as "$TA" "$H/v1/usage" >/dev/null; test "$(json_eval "$T/body" "sorted(d[\"usage\"])")" = "['"'"'alice'"'"']"'
check "  ... and by project, her project only" \
    eval 'as "$TA" "$H/v1/usage?by=project" >/dev/null; test "$(json_eval "$T/body" "sorted(d[\"usage\"])")" = "['"'"'px'"'"']"'
check "GET /v1/usage as the admin shows everyone" \
    eval 'as "$TR" "$H/v1/usage" >/dev/null; test "$(json_eval "$T/body" "all(u in d[\"usage\"] for u in (\"alice\", \"bob\"))")" = True'
check "GET /v1/usage?since=garbage: 400" test "$(as "$TR" "$H/v1/usage?since=yesterday")" = 400
check "alice's requests are counted" \
    wait_until 5 eval 'as "$TR" "$H/v1/usage" >/dev/null; test "$(json_eval "$T/body" "d[\"usage\"][\"alice\"][\"requests\"] >= 3")" = True'
check "/metrics has loom_usage_cpu_hours for alice" \
    wait_until 5 eval 'curl -s "$H/metrics" | grep -q "^loom_usage_cpu_hours{user=\"alice\"} 0.000"'
capture "$LOOM" usage --state-dir "$D"
check "loom usage prints a table with a line per user" \
    eval 'grep -q "^NAME " <<<"$OUT" && grep -q "^alice " <<<"$OUT" && grep -q "^bob " <<<"$OUT"'

LONG=user-with-a-name-longer-than-the-head-map-keys-0123456789ab
TL=$("$LOOM" token create --user "$LONG" --run --state-dir "$D")
check "a user with a 60-byte name submits a job (201)" test "$(as "$TL" -X POST -d "$(sleeps 1 0.2 1)" "$H/v1/jobs")" = 201
JL=$(job_of)
check "  ... it finishes and is charged to that user" \
    wait_until 15 eval 'done_all "$TL" "$JL" && sleep 1.2 && "$LOOM" usage --json --state-dir "$D" | grep -q "\"$LONG\""'

# ---- it survives a head restart -------------------------------------------------------
capture "$LOOM" stop --state-dir "$D"
start_head
capture "$LOOM" usage --json --state-dir "$D"
echo "$OUT" >"$T/u2.json"
check "after a head restart the usage is the same" \
    test "$(json_eval "$T/u2.json" "round(d['usage']['alice']['cpu_hours'], 6)")" = "$(json_eval "$T/u.json" "round(d['usage']['alice']['cpu_hours'], 6)")"

# ---- quotas ---------------------------------------------------------------------------------
capture "$LOOM" quota set --user bob --tasks 1 --state-dir "$D"
check "loom quota set --user bob --tasks 1" test "$RC" = 0
capture "$LOOM" quota show --user bob --state-dir "$D"
check "loom quota show prints it" grep -q "tasks=1" <<<"$OUT"
# 3 jobs of 2 tasks (0.5 s, 0.1 CPU each) sent at once: one task at a time, so >= 3 s.
# Each task writes the times it started and ended itself, so the peak is measured on
# what really ran, not on a sequence of polls of three jobs (which can see one task
# end in one job and the next start in another as two at once).
stamped() {   # N SECONDS CPUS TAG: a job of N command tasks that record their start and end
    "$PY" -c 'import json, sys; n, s, c, tag, d = int(sys.argv[1]), sys.argv[2], float(sys.argv[3]), sys.argv[4], sys.argv[5]
sh = "date +%%s.%%N > %s/iv.%s.$1.start; sleep %s; date +%%s.%%N > %s/iv.%s.$1.end"
print(json.dumps({"tasks": [{"name": "s%d" % i, "num_cpus": c,
    "command": ["sh", "-c", sh % (d, tag, s, d, tag), "sh", str(i)]} for i in range(n)]}))' "$@" "$T"
}
T0=$(date +%s.%N)
for i in 1 2 3; do as "$TB" -X POST -d "$(stamped 2 0.5 0.1 "j$i")" "$H/v1/jobs" >"$T/code$i" & done
wait
check "the 3 parallel submissions are accepted (201 201 201)" test "$(cat "$T/code1" "$T/code2" "$T/code3")" = 201201201
ends() { compgen -G "$T/iv.*.end" | wc -l; }
wait_until 20 eval 'test "$(ends)" -ge 6' || true
ELAPSED=$("$PY" -c "import time; print(round(time.time() - $T0, 1))")
check "all 6 tasks finish ($(ends) ended)" test "$(ends)" -ge 6
peak=$("$PY" -c 'import glob, sys
ev = []
for f in glob.glob(sys.argv[1] + "/iv.*.start"):
    e = f[:-len("start")] + "end"
    ev += [(float(open(f).read()), 1), (float(open(e).read()), -1)]
n = peak = 0
for _, d in sorted(ev, key=lambda x: (x[0], x[1])):
    n += d; peak = max(peak, n)
print(peak)' "$T")
check "never more than 1 of bob's tasks ran at once (peak $peak)" test "$peak" -le 1
check "  ... so they took >= 2.8 s ($ELAPSED s)" "$PY" -c "import sys; sys.exit(0 if $ELAPSED >= 2.8 else 1)"
check "alice, without a quota, is not held back (2 tasks at once)" \
    eval 'as "$TA" -X POST -d "$(sleeps 2 1 1)" "$H/v1/jobs" >/dev/null; J=$(job_of); wait_until 5 eval "as \"\$TA\" \"\$H/v1/jobs/$J\" >/dev/null; test \"\$(json_eval \"\$T/body\" \"sum(t[\\\"state\\\"] == \\\"running\\\" for t in d[\\\"tasks\\\"])\")\" = 2"'
capture "$LOOM" quota set --user carol --cpu-hours-per-day 0.0002 --state-dir "$D"
check "carol runs a job of 1 CPU for 1 s (201)" test "$(as "$TC" -X POST -d "$(sleeps 1 1 1)" "$H/v1/jobs")" = 201
JC=$(job_of)
check "  ... it finishes" wait_until 15 done_all "$TC" "$JC"
check "her CPU-hours for today (0.72 s) are used up: a new job is 429" \
    wait_until 5 eval 'test "$(as "$TC" -X POST -d "$(sleeps 1 0 1)" "$H/v1/jobs")" = 429'
check "  ... saying why" grep -q "CPU-hours for today" "$T/body"
capture "$LOOM" quota set --user carol --state-dir "$D"
check "a quota set with no limits is removed" eval '"$LOOM" quota show --user carol --state-dir "$D" | grep -q "no quota"'
check "  ... and carol may submit again (201)" test "$(as "$TC" -X POST -d "$(sleeps 1 0 1)" "$H/v1/jobs")" = 201
capture "$LOOM" quota set --user carol --kept-tasks 4 --stored-bytes 10 --state-dir "$D"
check "with kept-tasks 4, carol's next 3-task job is refused (429: she keeps 2)" \
    test "$(as "$TC" -X POST -d "$(sleeps 3 0 0.1)" "$H/v1/jobs")" = 429
check "  ... saying why" grep -q "tasks kept by the head" "$T/body"
check "with stored-bytes 10, carol may not upload a 20-byte model (429)" \
    eval 'printf "%020d" 0 >"$T/m20"; test "$(as "$TC" -X POST --data-binary @"$T/m20" "$H/v1/models/cm")" = 429'
check "  ... saying why" grep -q "stores 0 bytes of models (at most 10)" "$T/body"
capture "$LOOM" quota set --user carol --state-dir "$D"
check "quota set with a bad number is refused" eval '! "$LOOM" quota set --user x --cpus -1 --state-dir "$D" 2>/dev/null'

# ---- the audit log --------------------------------------------------------------------------
printf 'w' >"$T/art"
as "$TA" -X POST --data-binary @"$T/art" "$H/v1/models/am" >/dev/null
as "$TA" -X DELETE "$H/v1/jobs/$JA" >/dev/null
sleep 1.2
A=$D/audit.log
check "the audit log exists, mode 0600" test "$(stat -c %a "$A")" = 600
check "every line is a JSON object with time, actor, action, object" \
    "$PY" -c 'import json, sys
for line in open(sys.argv[1]):
    d = json.loads(line); assert set(d) == {"time", "actor", "action", "object", "detail"}, d' "$A"
has() { "$PY" -c 'import json, sys
actor, action, obj = sys.argv[2:5]
sys.exit(0 if any(d["actor"] == actor and d["action"] == action and obj in d["object"] + " " + d["detail"]
                  for d in map(json.loads, open(sys.argv[1]))) else 1)' "$A" "$@"; }
check "token creation is recorded (user=alice)" has cluster token.create user=alice
check "alice's job submission" has alice job.submit "$JA"
check "alice's job deletion" has alice job.delete "$JA"
check "bob's quota" has cluster quota.set "u/bob"
check "alice's model registration" has alice model.register "am:1"
check "the tokens themselves are not in it" eval '! grep -q -e "$TA" -e "$TB" "$A"'
capture "$LOOM" stop --state-dir "$D"
finish
