#!/usr/bin/env bash
# bench/run.sh — run loom's microbenchmark (from C, and from Python through
# `import loom`), the Dask reference peer and the machine's limits in one go,
# and print one comparison table.
#
#   bash bench/run.sh [--json FILE] [--scale X] [--dask-scale X] [--no-dask]
#                     [--no-python] [--nodes K] [--cpus N]
#
#   --json FILE     also write everything as one JSON object to FILE
#   --scale X       workload scale for loom and Dask (default 1, like the peer)
#   --dask-scale X  workload scale for Dask only (default: --scale)
#   --no-dask       skip the peer
#   --no-python     skip bench/py_microbench.py (loom from Python)
#   --nodes/--cpus  loom's local cluster (default 1 node of 2 CPUs; the peer
#                   always runs 2 single-threaded worker processes)
#
# Environment: LOOM_BUILD_DIR (default <repo>/build), LOOM_DASK_PEER (the
# peer script; default <repo>/../shared/peers/dask_microbench.py), PYTHON
# (default /usr/bin/python3, the interpreter Debian's python3-distributed is
# installed for; it also runs bench/py_microbench.py, with PYTHONPATH set to
# the build's python/ folder).
#
# The programs run one after another, never at once: on a small machine they
# would compete for the same cores.  At scale 1 the whole run takes about 4
# minutes on 2 cores, most of it the Dask peer.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
build=${LOOM_BUILD_DIR:-$repo/build}
peer=${LOOM_DASK_PEER:-$repo/../shared/peers/dask_microbench.py}
python=${PYTHON:-/usr/bin/python3}

json_out="" scale=1 dask_scale="" run_dask=1 run_py=1 nodes=1 cpus=2
while [ $# -gt 0 ]; do
    case "$1" in
    --json) json_out=$2; shift 2 ;;
    --scale) scale=$2; shift 2 ;;
    --dask-scale) dask_scale=$2; shift 2 ;;
    --no-dask) run_dask=0; shift ;;
    --no-python) run_py=0; shift ;;
    --nodes) nodes=$2; shift 2 ;;
    --cpus) cpus=$2; shift 2 ;;
    -h|--help) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
dask_scale=${dask_scale:-$scale}

work=$(mktemp -d --suffix=.loom-bench)
trap 'rm -rf "$work"' EXIT

# ---- build -------------------------------------------------------------------
if [ ! -f "$build/CMakeCache.txt" ]; then
    echo "== configuring $build"
    cmake -S "$repo" -B "$build" >/dev/null
fi
echo "== building the benchmarks in $build"
cmake --build "$build" -j"$(nproc)" --target loom_microbench zmq_pingpong memcpy_bw >"$work/build.log" 2>&1 ||
    { cat "$work/build.log"; echo "run.sh: build failed" >&2; exit 1; }
bin=$build/bin
# the Python package (where libpython3-dev was found at configure time)
if [ "$run_py" = 1 ]; then
    cmake --build "$build" -j"$(nproc)" --target loom_ext loom_python loom_python_package loom_examples \
        >"$work/build_py.log" 2>&1 || true
fi

# ---- the machine's limits ------------------------------------------------------
echo "== machine limits"
"$bin/zmq_pingpong" 20000 64 ipc | tee "$work/zmq.txt"
"$bin/zmq_pingpong" 20000 64 tcp | tee "$work/zmq_tcp.txt"
"$bin/memcpy_bw" 256 | tee "$work/memcpy.txt"
rtt_us=$(awk '{print $2}' "$work/zmq.txt")
rtt_tcp_us=$(awk '{print $2}' "$work/zmq_tcp.txt")
memcpy_gbs=$(awk '$1 == "memcpy_gigabytes" {print $2}' "$work/memcpy.txt")
fresh_gbs=$(awk '$1 == "memcpy_fresh_shm_gigabytes" {print $2}' "$work/memcpy.txt")

# ---- loom ------------------------------------------------------------------------
echo "== loom (local cluster: $nodes node(s) x $cpus CPUs, scale $scale)"
t0=$(date +%s)
"$bin/loom_microbench" --nodes "$nodes" --cpus "$cpus" --scale "$scale" --json "$work/loom.json" ||
    echo "== loom_microbench reported failures (above); the table shows what it measured"
[ -f "$work/loom.json" ] || echo "{}" >"$work/loom.json"
echo "   ($(($(date +%s) - t0)) s)"

# run_timed NAME CMD...: run CMD (its stderr in $work/NAME.err) and print how
# long it took; when it fails, show the end of its stderr, drop
# $work/NAME.json and return 1
run_timed()
{
    local name=$1 t0
    shift
    t0=$(date +%s)
    if "$@" 2>"$work/$name.err"; then
        echo "   ($(($(date +%s) - t0)) s)"
        return 0
    fi
    tail -20 "$work/$name.err" >&2
    rm -f "$work/$name.json"
    return 1
}

# ---- loom from Python -------------------------------------------------------------
py_note=""
if [ "$run_py" = 0 ]; then
    py_note="loom from Python skipped (--no-python)"
elif ! ls "$build"/python/loom/_loom*.so >/dev/null 2>&1; then
    py_note="the Python package was not built in $build/python (needs libpython3-dev)"
else
    echo "== loom from Python: bench/py_microbench.py (local cluster: $nodes node(s) x $cpus CPUs, scale $scale)"
    run_timed py env PYTHONPATH="$build/python" LOOM_BIN="$bin/loom" \
        LOOM_EXAMPLES_LIB="$build/lib/libloom_examples.so" \
        "$python" "$here/py_microbench.py" --nodes "$nodes" --workers "$cpus" --scale "$scale" \
        --json "$work/py.json" || py_note="bench/py_microbench.py failed (stderr above)"
fi
[ -n "$py_note" ] && echo "== $py_note"
[ -f "$work/py.json" ] || echo "{}" >"$work/py.json"

# ---- Dask --------------------------------------------------------------------------
dask_note=""
if [ "$run_dask" = 0 ]; then
    dask_note="Dask peer skipped (--no-dask)"
elif [ ! -f "$peer" ]; then
    dask_note="Dask peer not found at $peer (set LOOM_DASK_PEER)"
elif ! "$python" -c 'import distributed, numpy' 2>/dev/null; then
    dask_note="Dask is not installed for $python: install it with  apt-get install -y python3-distributed"
else
    echo "== Dask distributed $("$python" -c 'import distributed; print(distributed.__version__)') (2 worker processes, scale $dask_scale)"
    run_timed dask "$python" "$peer" --workers 2 --scale "$dask_scale" --json "$work/dask.json" ||
        dask_note="the Dask peer failed (stderr above)"
fi
[ -n "$dask_note" ] && echo "== $dask_note: showing loom's figures alone"
[ -f "$work/dask.json" ] || echo "{}" >"$work/dask.json"

# ---- the table -------------------------------------------------------------------
# Both JSON files hold one "name": value pair per line (json.dump(indent=1)
# and loom_microbench --json), so awk reads them without a JSON parser.
echo
awk -v rtt="$rtt_us" -v rtt_tcp="$rtt_tcp_us" -v mbw="$memcpy_gbs" -v fbw="${fresh_gbs:-0}" -v json_out="$json_out" \
    -v when="$(date -u +%Y-%m-%dT%H:%M:%SZ)" -v host="$(hostname)" -v ncpu="$(nproc)" \
    -v mem_gib="$(awk '/MemTotal/ {printf "%.1f", $2 / 1048576}' /proc/meminfo)" \
    -v scale="$scale" -v dask_scale="$dask_scale" -v dask_note="$dask_note" -v py_note="$py_note" '
function unit(m) {
    if (m ~ /gigabytes$/) return "GB/s"
    if (m ~ /_us$/) return "us"
    return "per_s"
}
# The ceiling a metric can reach on this machine: one zmq round trip per
# request/reply call (a sync task needs at least one, however it is built), and
# one memcpy for a put.  Pipelined metrics (async, graphs, puts, which do not
# wait for the head) and cached gets are not bounded by a round trip: no limit
# is shown.
function limit(m) {
    if (m == "single_client_tasks_sync" || m == "single_client_c_tasks_sync" ||
        m == "single_client_get_calls_first" || m ~ /^1_1_actor_calls_sync/) return 1e6 / rtt
    if (m ~ /_p(50|99)_us$/) return rtt
    if (m == "single_client_put_gigabytes" || m == "single_client_get_gigabytes") return mbw
    return ""
}
function fmt(v) { return v == "" ? "-" : (v < 10 ? sprintf("%.2f", v) : sprintf("%.0f", v)) }
FNR == 1 { file++ }
/^ *"[^"]+": *[-0-9.eE+]+,?$/ {
    line = $0; gsub(/[ ",]/, "", line); split(line, kv, ":")
    if (file == 1) { if (!(kv[1] in loom)) order[n++] = kv[1]; loom[kv[1]] = kv[2] }
    else if (file == 2) { if (!(kv[1] in dask)) dorder[dn++] = kv[1]; dask[kv[1]] = kv[2] }
    else { if (!(kv[1] in py)) porder[pn++] = kv[1]; py[kv[1]] = kv[2] }
}
END {
    # the peer metrics first, in its order, then the extras
    split("single_client_tasks_sync single_client_tasks_async graph_tree_reduce_tasks " \
          "1_1_actor_calls_sync 1_1_actor_calls_async single_client_put_calls " \
          "single_client_get_calls single_client_put_gigabytes", peer, " ")
    for (i = 1; i <= 8; i++) { rows[nr++] = peer[i]; seen[peer[i]] = 1 }
    for (i = 0; i < n; i++) if (!(order[i] in seen)) { rows[nr++] = order[i]; seen[order[i]] = 1 }
    for (i = 0; i < pn; i++) if (!(porder[i] in seen)) { rows[nr++] = porder[i]; seen[porder[i]] = 1 }
    for (i = 0; i < dn; i++) if (!(dorder[i] in seen)) { rows[nr++] = dorder[i]; seen[dorder[i]] = 1 }
    hdr = sprintf("%-34s %16s %16s %12s %9s %9s %12s  %s", "metric", "loom (C)", "loom (Python)", "Dask",
                  "C/Dask", "Py/Dask", "limit", "unit")
    print hdr; gsub(/./, "-", hdr); print hdr
    # Dask answers every Future.result() with a round trip to its scheduler and
    # a worker; loom answers a ref it has seen from its own copy.  So the
    # round-trip figure of loom (get_calls_first) is compared with the Dask figure.
    peer_of["single_client_get_calls_first"] = "single_client_get_calls"
    for (i = 0; i < nr; i++) {
        m = rows[i]
        dm = (m in peer_of) ? peer_of[m] : m
        l = (m in loom) ? fmt(loom[m]) : "-"
        if (m == "single_client_get_calls" && (m in loom)) l = l " (a)"
        p = (m in py) ? fmt(py[m]) : "-"
        if (m == "single_client_get_calls" && (m in py)) p = p " (a)"
        d = "-"
        if (dm in dask) d = fmt(dask[dm])
        if ((dm in dask) && dm != m) d = d " (b)"
        r = (m in loom) && (dm in dask) && dask[dm] > 0 ? sprintf("%.2f", loom[m] / dask[dm]) : "-"
        pr = (m in py) && (dm in dask) && dask[dm] > 0 ? sprintf("%.2f", py[m] / dask[dm]) : "-"
        if (m == "single_client_get_calls" && r != "-") r = "(a)"
        if (m == "single_client_get_calls" && pr != "-") pr = "(a)"
        printf "%-34s %16s %16s %12s %9s %9s %12s  %s\n", m, l, p, d, r, pr, fmt(limit(m)), unit(m)
    }
    print ""
    printf "limits: zmq round trip between 2 processes (REQ/REP) %.1f us over ipc (= %.0f round trips/s), %.1f us over tcp; memcpy %.2f GB/s; memcpy into new /dev/shm pages %.2f GB/s\n", rtt, 1e6 / rtt, rtt_tcp, mbw, fbw
    print "(a) a get of a ref the client already got is served from the client'"'"'s copy: no round trip"
    print "(b) Dask'"'"'s single_client_get_calls, where every Future.result() is a round trip: compare with loom'"'"'s first gets"
    if (dask_note != "") print "note: " dask_note
    if (py_note != "") print "note: " py_note
    if (json_out == "") exit
    printf "{\n \"date\": \"%s\",\n \"machine\": {\"host\": \"%s\", \"cpus\": %d, \"memory_gib\": %s},\n", when, host, ncpu, mem_gib > json_out
    printf " \"scale\": {\"loom\": %s, \"dask\": %s},\n", scale, dask_scale > json_out
    printf " \"limits\": {\"zmq_ipc_round_trip_us\": %s, \"zmq_tcp_round_trip_us\": %s, \"memcpy_gigabytes\": %s, \"memcpy_fresh_shm_gigabytes\": %s},\n", rtt, rtt_tcp, mbw, fbw > json_out
    for (side = 0; side < 3; side++) {
        printf " \"%s\": {", side == 2 ? "dask" : (side ? "python" : "loom") > json_out
        sep = ""
        for (i = 0; i < nr; i++) {
            m = rows[i]
            if (side == 0 && (m in loom)) { printf "%s\n  \"%s\": %s", sep, m, loom[m] > json_out; sep = "," }
            if (side == 1 && (m in py)) { printf "%s\n  \"%s\": %s", sep, m, py[m] > json_out; sep = "," }
            if (side == 2 && (m in dask)) { printf "%s\n  \"%s\": %s", sep, m, dask[m] > json_out; sep = "," }
        }
        printf "%s}%s\n", sep == "" ? "" : "\n ", side == 2 ? "" : "," > json_out
    }
    printf "}\n" > json_out
    close(json_out)
    print "wrote " json_out
}' "$work/loom.json" "$work/dask.json" "$work/py.json"
