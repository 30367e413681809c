#!/bin/bash
# sys_py_examples.sh — the Python examples (examples/python/) give the right
# answers on a real cluster: a head and 2 more node daemons started with
# `loom start` (3 daemons), each example run with --address.  map_reduce.py
# and mixed_graph.py check their word counts against a plain Python count and
# exit non-zero on a mismatch; the test also checks map_reduce's totals
# against a count made here with tr/sort/uniq (runs of ASCII letters,
# lowercased), and param_server.py must reach 0.9 held-out accuracy.
# map_reduce.py runs once more with no --address (the local cluster that
# loom.init() starts and stops).  The daemons are started without the loom
# package on their PYTHONPATH: executors need only cloudpickle and NumPy.
# Skipped (" 1 skipped") where the Python package was not built
# (no libpython3-dev) or python3-sklearn / python3-cloudpickle / NumPy is missing.
set -euo pipefail
. "$(dirname "$0")/lib.sh" "$@"

EX=$SRC/examples/python
LIC=/usr/share/common-licenses
export TMPDIR=$T/tmp
mkdir -p "$TMPDIR"

if ! ls "$BUILD"/python/loom/_loom*.so >/dev/null 2>&1; then
    skip "the Python package was not built ($BUILD/python/loom; needs libpython3-dev)"
    finish
fi
if [ "${LOOM_SANITIZED:-0}" = 1 ]; then
    # The extension is ASan-instrumented and python3 is not: py_basic runs the
    # pytest suites with libasan preloaded and the interpreter's, NumPy's and
    # LMDB's own allocations suppressed; these examples also load
    # scikit-learn and SciPy, whose allocations the suppressions do not cover.
    skip "the examples under AddressSanitizer (scikit-learn and SciPy are not instrumented; py_basic covers the extension)"
    finish
fi
if ! "$PY" -c 'import sklearn, cloudpickle, numpy' 2>/dev/null; then
    skip "python3-sklearn, python3-cloudpickle or python3-numpy is not installed for $PY"
    finish
fi
# run_py ARGS...: an example with the build's package, into OUT/ERR/RC
run_py() { capture env PYTHONPATH="$BUILD/python" PYTHONDONTWRITEBYTECODE=1 "$PY" "$@"; }

# ---- the independent count -------------------------------------------------------
cat "$LIC"/* | tr -c 'A-Za-z' '\n' | tr 'A-Z' 'a-z' | grep -v '^$' | sort | uniq -c >"$T/expect.txt"
WANT_TOTAL=$(awk '{s += $1} END {print s}' "$T/expect.txt")
WANT_DISTINCT=$(wc -l <"$T/expect.txt")
WANT_FILES=$(ls "$LIC" | wc -l)
echo "# expected: $WANT_FILES files, $WANT_TOTAL words, $WANT_DISTINCT distinct"

# ---- a 3-daemon cluster -------------------------------------------------------------
D=$T/st
start_three_nodes "$D"

# ---- map_reduce.py ---------------------------------------------------------------------
run_py "$EX/map_reduce.py" --address "$ADDR"
echo "  $(grep '^map_reduce: [0-9]' <<<"$OUT" || true)"
check "map_reduce.py --address (3 daemons) exits 0" test "$RC" -eq 0
[ "$RC" -eq 0 ] || show_capture
check "  ... matches its plain Python count" grep -q "matches the plain Python count" <<<"$OUT"
check "  ... $WANT_FILES files, $WANT_TOTAL words, $WANT_DISTINCT distinct (as tr/sort/uniq count)" \
    grep -q "^map_reduce: $WANT_FILES files, .* $WANT_TOTAL words, $WANT_DISTINCT distinct" <<<"$OUT"
TOP=$(sort -k1,1nr -k2,2 "$T/expect.txt" | awk 'NR == 1 {printf "%8d %s", $1, $2}')
check "  ... top word '$TOP'" grep -qx -- "$TOP" <<<"$OUT"

# ---- param_server.py -------------------------------------------------------------------
run_py "$EX/param_server.py" --address "$ADDR" --workers 3 --steps 300
echo "  $(grep '^param_server:' <<<"$OUT" || true)"
check "param_server.py --address --workers 3 exits 0 (held-out accuracy >= 0.9)" test "$RC" -eq 0
[ "$RC" -eq 0 ] || show_capture
ACC=$(sed -nE 's/^param_server: .*held-out digits: ([0-9.]+)$/\1/p' <<<"$OUT")
check "  ... prints its accuracy ($ACC), at least 0.9" \
    "$PY" -c 'import sys; sys.exit(not float(sys.argv[1]) >= 0.9)' "${ACC:-0}"
check "  ... 300 updates of 3 gradients" grep -q "3 workers, 300 updates of 3 gradients" <<<"$OUT"

# ---- mixed_graph.py --------------------------------------------------------------------
run_py "$EX/mixed_graph.py" --address "$ADDR" --lib "$EXLIB"
printf '%s\n' "$OUT" | sed 's/^/  /'
check "mixed_graph.py --address exits 0" test "$RC" -eq 0
[ "$RC" -eq 0 ] || show_capture
check "  ... the C/Python sum of squares: 85344" grep -q "sum of i\*i for i < 64 = 85344 (a int from C)" <<<"$OUT"
check "  ... the C merge of Python maps: $WANT_TOTAL words, $WANT_DISTINCT distinct" \
    grep -q ": $WANT_TOTAL words, $WANT_DISTINCT distinct; top" <<<"$OUT"
check "  ... says correct" grep -qx "mixed_graph: correct" <<<"$OUT"

# ---- what the cluster saw ------------------------------------------------------------
status_json "$D" "$T/status.json"
check "the examples' tasks ran: $(json_eval "$T/status.json" 'd["total"]') in all" \
    test "$(json_eval "$T/status.json" 'd["total"]["finished"] >= 16 + 4 + 192 + 17 + 2')" = True
check "no task failed" test "$(json_eval "$T/status.json" 'd["total"]["failed"]')" = 0
check "3 nodes still alive" nodes_alive_eq 3 "$D"

# ---- the local cluster of loom.init() ------------------------------------------------
unset LOOM_SECRET_FILE
run_py "$EX/map_reduce.py" --maps 4 --reduces 2
check "map_reduce.py with no --address (a local cluster) exits 0" test "$RC" -eq 0
[ "$RC" -eq 0 ] || show_capture
check "  ... $WANT_TOTAL words, $WANT_DISTINCT distinct" \
    grep -q " $WANT_TOTAL words, $WANT_DISTINCT distinct" <<<"$OUT"
check "  ... its local cluster cleaned up its state" wait_until 10 eval 'test -z "$(ls -A "$TMPDIR")"'
check "  ... and left no process behind" wait_until 10 no_procs_of "$TMPDIR"

finish
