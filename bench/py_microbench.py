#!/usr/bin/python3
"""bench/py_microbench.py — the workloads of the Dask reference peer
(../shared/peers/dask_microbench.py) through `import loom`, from Python.

    PYTHONPATH=build/python /usr/bin/python3 bench/py_microbench.py \\
        [--workers 2] [--nodes 1] [--scale X] [--json FILE] [--address HOST:PORT]
        [--only NAME,...] [--profile N]

Same metric names, same output (one line per metric: NAME VALUE UNIT; --json
writes {"metric": value, ...}), same sizes and the same timing as the peer:
each workload once as a warm-up, then 3 times, the median rate.  The driver
and the task code are Python on both sides; loom runs the tasks in executors
embedding CPython (libloom_python.so), Dask in its worker processes.

By default a local cluster of --nodes node(s) with --workers CPUs each (the
peer runs --workers single-threaded worker processes), with a store of 4x the
big object.  bench/run.sh runs it beside the C microbench and the Dask peer.

Workloads (n scaled by --scale):
  single_client_tasks_sync     500 x loom.get(noop.remote(i)), one at a time
  single_client_tasks_async    5000 x noop.remote(i), then loom.get(list)
  graph_tree_reduce_tasks      2048 leaves ident.remote(i) and pairwise
                               add.remote(a, b) on refs (4095 tasks); get the root
  1_1_actor_calls_sync         500 x loom.get(counter.incr.remote())
  1_1_actor_calls_async        2000 x counter.incr.remote(), then get each
  single_client_put_calls      500 x loom.put(b"x" * 100)
  single_client_get_calls      500 x loom.get(ref) of one put 100-byte object
  single_client_put_gigabytes  loom.put of a 256 MiB NumPy array (GB = 1e9 bytes)
Extra metrics (no peer figure):
  single_client_get_calls_first   500 x the first loom.get of a fresh put
                                  (a round trip; later gets of a ref are the
                                  client's copy, like the C client's)
  single_client_get_gigabytes     the first loom.get of a 256 MiB array put by
                                  this process (same node; only the get timed)
  single_client_task_p50_us/_p99_us   one sync task, submit + get
  single_client_c_tasks_sync      the sync workload with the C noop task of
                                  libloom_examples.so (loom.c_function): the
                                  same driver, no Python on the executor side

--profile N: instead of the benchmark, N sync Python tasks with the driver's
time split into .remote() and loom.get(), and a cProfile of the driver.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import statistics
import sys
import time

import numpy as np

import loom


@loom.remote
def noop(x=None):
    return b"ok"


@loom.remote
def ident(i):
    return i


@loom.remote
def add(a, b):
    return a + b


@loom.remote
class Counter:
    def __init__(self):
        self.n = 0

    def incr(self, k=1):
        self.n += k
        return self.n


def median_rate(fn, count, repeats=3):
    fn()  # warm-up
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        rates.append(count / (time.perf_counter() - t))
    return statistics.median(rates)


def examples_lib():
    env = os.environ.get("LOOM_EXAMPLES_LIB")
    if env:
        return env
    p = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(loom.__file__)), "..", "..", "lib",
                                      "libloom_examples.so"))
    return p if os.path.exists(p) else None


def profile(n):
    """Where a sync Python task's time goes, seen from the driver."""
    for _ in range(200):
        loom.get(noop.remote())                       # warm: executors, function shipped
    t_sub, t_get = [], []
    for i in range(n):
        t0 = time.perf_counter()
        ref = noop.remote(i)
        t1 = time.perf_counter()
        loom.get(ref)
        t2 = time.perf_counter()
        t_sub.append(t1 - t0)
        t_get.append(t2 - t1)
    us = lambda v: statistics.median(v) * 1e6
    print(f"profile: {n} sync Python tasks: median .remote() {us(t_sub):.1f} us, "
          f"loom.get {us(t_get):.1f} us, round trip {us([a + b for a, b in zip(t_sub, t_get)]):.1f} us")
    lib = examples_lib()
    if lib:
        c_noop = loom.c_function(lib, "noop")
        for _ in range(200):
            loom.get(c_noop.remote())
        t_rt = []
        for i in range(n):
            t0 = time.perf_counter()
            loom.get(c_noop.remote())
            t_rt.append(time.perf_counter() - t0)
        print(f"profile: {n} sync C noop tasks from the same driver: median round trip {us(t_rt):.1f} us")
    pr = cProfile.Profile()
    pr.enable()
    for i in range(n):
        loom.get(noop.remote(i))
    pr.disable()
    s = io.StringIO()
    pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(12)
    print(f"profile: cProfile of the driver, {n} sync Python tasks (tottime, top 12):")
    print("\n".join(line for line in s.getvalue().splitlines() if line.strip())[:4000])


def main():
    ap = argparse.ArgumentParser(description="the Dask peer's workloads through import loom")
    ap.add_argument("--workers", type=int, default=2, help="CPUs per node of the local cluster")
    ap.add_argument("--nodes", type=int, default=1, help="nodes of the local cluster")
    ap.add_argument("--address", help="a running cluster instead of a local one")
    ap.add_argument("--json")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply workload sizes")
    ap.add_argument("--only", help="comma-separated metric names (default: all)")
    ap.add_argument("--profile", type=int, metavar="N", help="profile N sync tasks instead")
    a = ap.parse_args()
    s = lambda n: max(1, int(n * a.scale))
    only = set(a.only.split(",")) if a.only else None
    want = lambda m: only is None or m in only

    size = int(s(256) * 2**20)
    if a.address:
        loom.init(address=a.address)
    else:
        loom.init("local", num_cpus=a.workers, num_nodes=a.nodes,
                  object_store_memory=max(1 << 30, 4 * size))
    if a.profile:
        profile(a.profile)
        loom.shutdown()
        return 0
    out = {}
    lat = []

    if want("single_client_tasks_sync"):
        n = s(500)
        def sync_tasks():
            for i in range(n):
                t = time.perf_counter()
                loom.get(noop.remote(i))
                lat.append(time.perf_counter() - t)
        out["single_client_tasks_sync"] = median_rate(sync_tasks, n)
        lat = lat[n:]                                  # not the warm-up's

    if want("single_client_tasks_async"):
        n = s(5000)
        out["single_client_tasks_async"] = median_rate(
            lambda: loom.get([noop.remote(i) for i in range(n)]), n)

    if want("graph_tree_reduce_tasks"):
        leaves = s(2048)
        def tree():
            level = [ident.remote(i) for i in range(leaves)]
            while len(level) > 1:
                nxt = [add.remote(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
                if len(level) % 2:
                    nxt.append(level[-1])
                level = nxt
            got = loom.get(level[0])
            assert got == leaves * (leaves - 1) // 2, got
        out["graph_tree_reduce_tasks"] = median_rate(tree, 2 * leaves - 1)

    if want("1_1_actor_calls_sync") or want("1_1_actor_calls_async"):
        actor = Counter.remote()
        loom.get(actor.incr.remote(0))
        if want("1_1_actor_calls_sync"):
            n = s(500)
            out["1_1_actor_calls_sync"] = median_rate(
                lambda: [loom.get(actor.incr.remote()) for _ in range(n)], n)
        if want("1_1_actor_calls_async"):
            n = s(2000)
            def actor_async():
                futs = [actor.incr.remote() for _ in range(n)]
                for f in futs:
                    loom.get(f)
            out["1_1_actor_calls_async"] = median_rate(actor_async, n)
        loom.kill(actor)

    n = s(500)
    if want("single_client_put_calls"):
        out["single_client_put_calls"] = median_rate(
            lambda: [loom.put(b"x" * 100) for _ in range(n)], n)
    if want("single_client_get_calls"):
        ref = loom.put(b"x" * 100)
        out["single_client_get_calls"] = median_rate(lambda: [loom.get(ref) for _ in range(n)], n)

    if want("single_client_put_gigabytes") or want("single_client_get_gigabytes"):
        arr = np.ones(size, dtype=np.uint8)
        def put_gb():
            ref = loom.put(arr)
            loom.wait([ref], num_returns=1)
            del ref
        if want("single_client_put_gigabytes"):
            out["single_client_put_gigabytes"] = median_rate(put_gb, size / 1e9)
        if want("single_client_get_gigabytes"):
            # the first get of a fresh put each time (a later get of the same
            # ref may be the client's copy): only the get is timed
            def get_gb():
                ref = loom.put(arr)
                loom.wait([ref], num_returns=1)
                t = time.perf_counter()
                got = loom.get(ref)
                took = time.perf_counter() - t
                assert got.nbytes == size and got[-1] == 1
                del got, ref
                return took
            get_gb()
            out["single_client_get_gigabytes"] = statistics.median(size / 1e9 / get_gb() for _ in range(3))
        del arr

    if want("single_client_get_calls_first"):
        n = s(500)
        def first_gets():
            refs = [loom.put(b"x" * 100) for _ in range(n)]
            t = time.perf_counter()
            for r in refs:
                loom.get(r)
            return time.perf_counter() - t
        first_gets()
        out["single_client_get_calls_first"] = statistics.median(n / first_gets() for _ in range(3))

    if lat:
        lat.sort()
        out["single_client_task_p50_us"] = lat[len(lat) // 2] * 1e6
        out["single_client_task_p99_us"] = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1e6

    lib = examples_lib()
    if want("single_client_c_tasks_sync") and lib:
        c_noop = loom.c_function(lib, "noop")
        n = s(500)
        out["single_client_c_tasks_sync"] = median_rate(
            lambda: [loom.get(c_noop.remote()) for _ in range(n)], n)

    for k, v in out.items():
        unit = "GB/s" if k.endswith("gigabytes") else ("us" if k.endswith("_us") else "per_s")
        print(f"{k} {v:.1f} {unit}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)
    loom.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
