#!/usr/bin/python3
"""bench/tune_peer_optuna.py — the reference peer of bench/tune_bench.sh:
Optuna's RandomSampler and TPESampler (Debian's python3-optuna) on the same
test functions, budgets and seeds as bench/tune_search_bench.c.  Prints one
JSON line per (function, algorithm), as the loom side does.

    tune_peer_optuna.py [--seeds N (40)] [--trials N (60)]
"""
import argparse
import json
import math
import statistics
import time

import optuna


def branin(t):
    x1 = t.suggest_float("x1", -5, 10)
    x2 = t.suggest_float("x2", 0, 15)
    q = x2 - 5.1 / (4 * math.pi ** 2) * x1 ** 2 + 5 / math.pi * x1 - 6
    return q * q + 10 * (1 - 1 / (8 * math.pi)) * math.cos(x1) + 10


A = [[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14],
     [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]]
P = [[1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
     [2348, 1451, 3522, 2883, 3047, 6650], [4047, 8828, 8732, 5743, 1091, 381]]
ALPHA = [1.0, 1.2, 3.0, 3.2]


def hartmann6(t):
    x = [t.suggest_float("x%d" % (j + 1), 0, 1) for j in range(6)]
    return -sum(ALPHA[i] * math.exp(-sum(A[i][j] * (x[j] - P[i][j] * 1e-4) ** 2 for j in range(6)))
                for i in range(4))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=40)
    ap.add_argument("--trials", type=int, default=60)
    a = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for name, f in (("branin", branin), ("hartmann6", hartmann6)):
        for algo in ("random", "tpe"):
            bests, t0 = [], time.monotonic()
            for seed in range(1, a.seeds + 1):
                sampler = (optuna.samplers.RandomSampler(seed=seed) if algo == "random"
                           else optuna.samplers.TPESampler(seed=seed))
                study = optuna.create_study(sampler=sampler)
                study.optimize(f, n_trials=a.trials)
                bests.append(study.best_value)
            ms = (time.monotonic() - t0) * 1e3 / (a.seeds * a.trials)
            print(json.dumps({"impl": "optuna " + optuna.__version__, "function": name, "algorithm": algo,
                              "seeds": a.seeds, "trials": a.trials,
                              "mean_best": round(statistics.mean(bests), 6),
                              "median_best": round(statistics.median(bests), 6),
                              "suggest_ms": round(ms, 4)}), flush=True)


if __name__ == "__main__":
    main()
