#!/bin/bash
# sys_cli.sh — the `loom` command end to end: start a head and node daemons in
# the background, look at status, submit graphs (functions from the example
# library and a command task), read results, output files and logs, cancel and
# delete jobs, report bad input clearly, and stop everything.
set -euo pipefail
. "$(dirname "$0")/lib.sh" "$@"

D=$T/st
use_state_dir "$D"
LIC=/usr/share/common-licenses

# ---- start ---------------------------------------------------------------
capture "$LOOM" start --head --port 0 --state-dir "$D" --num-cpus 2
if [ "$RC" -eq 0 ]; then ok "loom start --head"; else bad "loom start --head"; show_capture; finish; exit 1; fi
check "start prints the head address" grep -q "head listening on 127.0.0.1:" <<<"$OUT"
check "the address file exists" test -s "$D/address"
ADDR=$(cat "$D/address")
check "the address is 127.0.0.1:PORT with a real port" grep -Eq '^127\.0\.0\.1:[1-9][0-9]*$' <<<"$ADDR"
check "the secret file exists" test -s "$D/secret"
check "the secret file is mode 0600" test "$(stat -c %a "$D/secret")" = 600
check "the secret is 64 hex characters" grep -Eq '^[0-9a-f]{64}$' "$D/secret"
check "the state dir is mode 0700" test "$(stat -c %a "$D")" = 700
check "pids of head and node daemon recorded" test "$(state_pids "$D" | wc -l)" -eq 2

capture "$LOOM" status --state-dir "$D"
check "loom status succeeds" test "$RC" -eq 0
check "loom status shows a table with the node" eval 'grep -q "alive" <<<"$OUT" && grep -q "127.0.0.1:" <<<"$OUT"'
capture "$LOOM" status --json --state-dir "$D"
printf '%s\n' "$OUT" >"$T/status1.json"
check "loom status --json succeeds" test "$RC" -eq 0
check "status is JSON" eval 'json_eval "$T/status1.json" "len(d[\"nodes\"])" >/dev/null'
check "status: 1 alive node" test "$(json_eval "$T/status1.json" 'sum(1 for n in d["nodes"] if n["state"]=="alive")')" = 1
check "status: the node has 2 CPUs" test "$(json_eval "$T/status1.json" 'd["nodes"][0]["cpus"]')" = 2.0
check "status: the node has a data address" grep -Eq '^127\.0\.0\.1:[0-9]+$' <<<"$(json_eval "$T/status1.json" 'd["nodes"][0]["address"]')"

capture "$LOOM" start --address "$ADDR" --state-dir "$D" --num-cpus 1
check "loom start --address adds a node" test "$RC" -eq 0
[ "$RC" -eq 0 ] || show_capture
check "status: 2 alive nodes" wait_until 10 nodes_alive_eq 2 "$D"
status_json "$D" "$T/status2.json" || true
check "status: 3 CPUs in all" test "$(json_eval "$T/status2.json" 'sum(n["cpus"] for n in d["nodes"])')" = 3.0

capture "$LOOM" start --head --port 0 --state-dir "$D" --num-cpus 1
check "a second head on the same state dir is refused" test "$RC" -ne 0
check "  ... saying one is running: $(head -1 <<<"$ERR")" grep -q "already running" <<<"$ERR"
check "  ... the address file still names the first head" test "$(cat "$D/address")" = "$ADDR"
check "  ... and no process was added (head + 2 nodes)" test "$(state_pids "$D" | wc -l)" -eq 3

# ---- submit and results --------------------------------------------------
cat >"$T/graph.json" <<EOF
{"name": "cli-test", "library": "$EXLIB", "tasks": [
  {"name": "c0", "function": "count_words", "args": [{"file": "$LIC/GPL-3"}]},
  {"name": "c1", "function": "count_words", "args": [{"file": "$LIC/Apache-2.0"}]},
  {"name": "c2", "function": "count_words", "args": [{"file": "$LIC/BSD"}]},
  {"name": "merge", "function": "merge_counts", "args": [{"ref": "c0"}, {"ref": "c1"}, {"ref": "c2"}]},
  {"name": "sum", "function": "add", "args": [{"msgpack": 40}, {"msgpack": 2}]},
  {"name": "sh", "command": ["sh", "-c", "echo to-stdout; echo to-stderr >&2; printf 'file-content %s\\\\n' \$(cat \"\$LOOM_ARG_0\" | wc -c) > out.txt"],
   "args": ["12345"], "outputs": ["out.txt"]}
]}
EOF
capture "$LOOM" submit "$T/graph.json" --wait --timeout 60 --state-dir "$D"
check "loom submit --wait succeeds" test "$RC" -eq 0
[ "$RC" -eq 0 ] || show_capture
JOB=$(head -1 <<<"$OUT")
check "submit prints a job id" grep -Eq '^[0-9a-f]{16}$' <<<"$JOB"
check "submit --wait says all tasks finished" grep -q "all 6 tasks finished" <<<"$ERR"

capture "$LOOM" job "$JOB" --state-dir "$D"
printf '%s\n' "$OUT" >"$T/job.json"
check "loom job succeeds" test "$RC" -eq 0
check "loom job: the job's name" test "$(json_eval "$T/job.json" 'd["name"]')" = cli-test
check "loom job: 6 tasks, all finished" \
    test "$(json_eval "$T/job.json" 'sorted(set(t["state"] for t in d["tasks"])), len(d["tasks"])')" = "(['finished'], 6)"

capture "$LOOM" get "$JOB" sum --json --state-dir "$D"
check "loom get JOB sum --json prints 42" test "$RC:$OUT" = "0:42"

capture "$LOOM" get "$JOB" merge --json --state-dir "$D"
printf '%s\n' "$OUT" >"$T/merge.json"
cat "$LIC/GPL-3" "$LIC/Apache-2.0" "$LIC/BSD" | tr -c 'A-Za-z' '\n' | tr 'A-Z' 'a-z' | grep -v '^$' |
    sort | uniq -c >"$T/expect_counts.txt"
check "loom get JOB merge --json: every word count right" "$PY" -c '
import json, sys
got = json.load(open(sys.argv[1]))
want = {w: int(n) for n, w in (l.split() for l in open(sys.argv[2]))}
if got != want:
    diff = [(w, got.get(w), want.get(w)) for w in set(got) | set(want) if got.get(w) != want.get(w)]
    print("  differences:", sorted(diff)[:10]); sys.exit(1)
' "$T/merge.json" "$T/expect_counts.txt"

capture "$LOOM" get "$JOB" sh:1 --state-dir "$D"
check "loom get JOB sh:1 prints the output file" test "$RC:$OUT" = "0:file-content 5"
capture "$LOOM" get "$JOB" sh --json --state-dir "$D"
check "loom get JOB sh --json prints the exit status 0" test "$RC:$OUT" = "0:0"
capture "$LOOM" get "$JOB" sh:2 --state-dir "$D"
check "loom get JOB sh:2 (no such output) fails" test "$RC" -ne 0
capture "$LOOM" logs "$JOB" sh --state-dir "$D"
check "loom logs prints the command's stdout" grep -qx "to-stdout" <<<"$OUT"
check "loom logs prints the command's stderr" grep -qx "to-stderr" <<<"$OUT"
capture "$LOOM" get "$JOB" nosuchtask --state-dir "$D"
check "loom get of an unknown task fails" test "$RC" -ne 0
check "  ... with a message" test -n "$ERR"
REF=$(json_eval "$T/job.json" '[t["ref"] for t in d["tasks"] if t["name"]=="sum"][0]')
capture "$LOOM" get "$REF" --json --state-dir "$D"
check "loom get REF --json (40 hex) prints 42" test "$RC:$OUT" = "0:42"

# a failing task
cat >"$T/fail.json" <<EOF
{"library": "$EXLIB", "tasks": [{"name": "bad", "function": "fail"},
  {"name": "after", "function": "add", "args": [{"ref": "bad"}, {"msgpack": 1}]}]}
EOF
capture "$LOOM" submit "$T/fail.json" --wait --timeout 60 --state-dir "$D"
check "submit --wait of a failing task exits non-zero" test "$RC" -ne 0
check "  ... and shows the task's message" grep -q "fails on purpose" <<<"$ERR"
FJOB=$(head -1 <<<"$OUT")
capture "$LOOM" get "$FJOB" after --state-dir "$D"
check "get of a dependent of a failed task fails" test "$RC" -ne 0
check "  ... naming the failed dependency" grep -q "bad" <<<"$ERR"

# a failing command: its exit status and output reach the user
cat >"$T/failcmd.json" <<EOF
{"tasks": [{"name": "oops", "command": ["sh", "-c", "echo oops-out; echo oops-err >&2; exit 3"]}]}
EOF
capture "$LOOM" submit "$T/failcmd.json" --wait --timeout 60 --state-dir "$D"
check "a command exiting 3 fails the submit" test "$RC" -ne 0
check "  ... the message has the exit status" grep -q "exited with status 3" <<<"$ERR"
check "  ... and the tail of its output" grep -q "oops-out" <<<"$ERR"
CJOB=$(head -1 <<<"$OUT")
capture "$LOOM" logs "$CJOB" oops --state-dir "$D"
check "loom logs of the failed command shows its output" eval 'grep -qx oops-out <<<"$OUT" && grep -qx oops-err <<<"$OUT"'
timeout -k 5 30 "$LOOM" delete "$CJOB" --state-dir "$D" >/dev/null 2>&1 || true

# ---- cancel and delete ---------------------------------------------------
MARK="31.$$"   # a sleep duration unique to this test, to find its process
cat >"$T/long.json" <<EOF
{"library": "$EXLIB", "tasks": [
  {"name": "long", "function": "sleep_ms", "args": [{"msgpack": 30000}]},
  {"name": "after", "function": "add", "args": [{"ref": "long"}, {"msgpack": 1}]},
  {"name": "cmd", "command": ["sleep", "$MARK"]}
]}
EOF
capture "$LOOM" submit "$T/long.json" --state-dir "$D"
check "submit without --wait returns at once" test "$RC" -eq 0
LJOB=$(head -1 <<<"$OUT")
task_state() {
    timeout -k 5 30 "$LOOM" job "$LJOB" --state-dir "$D" >"$T/ljob.json" 2>/dev/null || return 1
    json_eval "$T/ljob.json" '[t["state"] for t in d["tasks"] if t["name"]==sys.argv[3]][0]' "$1" 2>/dev/null
}
task_state_is() { [ "$(task_state "$1")" = "$2" ]; }
check "the long task runs" wait_until 15 task_state_is long running
check "the command task runs" wait_until 15 has_proc "sleep $MARK"
SECONDS=0
capture "$LOOM" get "$LJOB" long --timeout 1 --state-dir "$D"
check "get --timeout 1 of a running task gives up in time (${SECONDS}s)" eval '[ "$RC" -ne 0 ] && [ "$SECONDS" -le 5 ]'
check "  ... saying so: $(head -1 <<<"$ERR")" grep -qi "time" <<<"$ERR"
capture "$LOOM" cancel "$LJOB" long --state-dir "$D"
check "loom cancel JOB TASK succeeds" test "$RC" -eq 0
check "the cancelled task is failed" wait_until 10 task_state_is long failed
check "its dependent failed too" wait_until 10 task_state_is after failed
check "the command still runs" task_state_is cmd running
capture "$LOOM" get "$LJOB" long --state-dir "$D" --timeout 5
check "get of the cancelled task fails" test "$RC" -ne 0
check "  ... saying it was cancelled" grep -qi "cancel" <<<"$ERR"
capture "$LOOM" cancel "$LJOB" --state-dir "$D"
check "loom cancel JOB succeeds" test "$RC" -eq 0
check "the command task is failed after cancel JOB" wait_until 10 task_state_is cmd failed
check "the cancelled command's process is gone" wait_until 10 eval '! has_proc "sleep $MARK"'
capture "$LOOM" job "$LJOB" --state-dir "$D"
check "loom job still shows a cancelled job" test "$RC" -eq 0
capture "$LOOM" cancel 0123456789abcdef --state-dir "$D"
check "cancel of an unknown job fails" test "$RC" -ne 0

capture "$LOOM" delete "$JOB" --state-dir "$D"
check "loom delete succeeds" test "$RC" -eq 0
capture "$LOOM" job "$JOB" --state-dir "$D"
check "a deleted job is gone" test "$RC" -ne 0
check "  ... 'no such job'" grep -q "no such job" <<<"$ERR"
capture "$LOOM" get "$JOB" sum --state-dir "$D"
check "get from a deleted job fails" test "$RC" -ne 0
capture "$LOOM" delete "$JOB" --state-dir "$D"
check "deleting it twice fails" test "$RC" -ne 0
timeout -k 5 30 "$LOOM" delete "$LJOB" --state-dir "$D" >/dev/null 2>&1 || true
timeout -k 5 30 "$LOOM" delete "$FJOB" --state-dir "$D" >/dev/null 2>&1 || true

# ---- bad input -----------------------------------------------------------
# expect_bad_graph NAME JSON PATTERN: submit fails, the message names the problem
expect_bad_graph()
{
    printf '%s\n' "$2" >"$T/$1.json"
    capture "$LOOM" submit "$T/$1.json" --state-dir "$D"
    if [ "$RC" -ne 0 ] && grep -q -- "$3" <<<"$ERR" && grep -q "$1.json" <<<"$ERR"; then
        ok "bad graph '$1' is refused: $(head -1 <<<"$ERR")"
    else
        bad "bad graph '$1' (want exit != 0 and '$3')"
        show_capture
    fi
}
expect_bad_graph syntax '{"tasks": [{"name": "a", "command": ["true"]' "line"
expect_bad_graph notobject '[1, 2]' "object"
expect_bad_graph notasks '{"name": "x"}' "tasks"
expect_bad_graph unknownkey '{"tasks": [{"name": "a", "command": ["true"], "bogus": 1}]}' "unknown key 'bogus'"
expect_bad_graph unknownref '{"tasks": [{"name": "a", "command": ["true"], "args": [{"ref": "nope"}]}]}' "unknown task 'nope'"
expect_bad_graph cycle '{"tasks": [{"name": "a", "command": ["true"], "args": [{"ref": "b"}]}, {"name": "b", "command": ["true"], "args": [{"ref": "a"}]}]}' "cycle"
expect_bad_graph dupname '{"tasks": [{"name": "a", "command": ["true"]}, {"name": "a", "command": ["true"]}]}' "duplicate"
expect_bad_graph both '{"tasks": [{"name": "a", "command": ["true"], "function": "f"}]}' "exactly one"
expect_bad_graph nolib '{"tasks": [{"name": "a", "function": "add"}]}' "library"
expect_bad_graph badlib '{"library": "/nonexistent/lib.so", "tasks": [{"name": "a", "function": "add"}]}' "nonexistent"
expect_bad_graph badcpus '{"tasks": [{"name": "a", "command": ["true"], "num_cpus": -1}]}' "num_cpus"
expect_bad_graph badoutput '{"tasks": [{"name": "a", "command": ["true"], "outputs": ["../x"]}]}' "outputs"
expect_bad_graph badoutref '{"tasks": [{"name": "a", "command": ["true"]}, {"name": "b", "command": ["true"], "args": [{"ref": "a", "output": 3}]}]}' "no output 3"
expect_bad_graph nofile '{"tasks": [{"name": "a", "command": ["cat"], "args": [{"file": "/nonexistent/input"}]}]}' "nonexistent"
capture "$LOOM" submit "$T/does-not-exist.json" --state-dir "$D"
check "submit of a missing file fails naming it" eval '[ "$RC" -ne 0 ] && grep -q "does-not-exist.json" <<<"$ERR"'

capture "$LOOM" frobnicate
check "an unknown command exits 2" test "$RC" -eq 2
check "  ... naming it" grep -q "unknown command 'frobnicate'" <<<"$ERR"
check "  ... and shows the usage" grep -q "^usage: loom" <<<"$ERR"
capture "$LOOM"
check "no command: usage, exit 2" eval '[ "$RC" -eq 2 ] && grep -q "^usage: loom" <<<"$ERR"'
capture "$LOOM" submit --state-dir "$D"
check "submit without a file: usage, exit 2" eval '[ "$RC" -eq 2 ] && grep -q "^usage: loom" <<<"$ERR"'
capture "$LOOM" get --state-dir "$D"
check "get without arguments: usage, exit 2" test "$RC" -eq 2
capture "$LOOM" job --state-dir "$D"
check "job without arguments: usage, exit 2" test "$RC" -eq 2
capture "$LOOM" start --state-dir "$T/other"
check "start without --head or --address: usage, exit 2" test "$RC" -eq 2
capture "$LOOM" --help
check "loom --help prints the usage, exit 0" eval '[ "$RC" -eq 0 ] && grep -q "^usage: loom" <<<"$OUT"'
capture "$LOOM" status --state-dir "$T/no-cluster-here"
check "status without a cluster fails clearly" eval '[ "$RC" -ne 0 ] && grep -q "no cluster is running" <<<"$ERR"'

# ---- the cluster still serves, then stop ---------------------------------
check "status: still 2 alive nodes" nodes_alive_eq 2 "$D"
check "processes of this state dir are running" test -n "$(procs_of "$D")"
capture "$LOOM" stop --state-dir "$D"
check "loom stop succeeds" test "$RC" -eq 0
check "loom stop names what it stopped" test "$(grep -c "stopped" <<<"$OUT")" -eq 3
check "no loom process of this state dir is left" wait_until 10 no_procs_of "$D"
check "the address file is removed" test ! -e "$D/address"
capture "$LOOM" status --state-dir "$D"
check "status after stop fails clearly" eval '[ "$RC" -ne 0 ] && grep -q "no cluster is running" <<<"$ERR"'
capture "$LOOM" stop --state-dir "$D"
check "a second stop is harmless" test "$RC" -eq 0

finish
