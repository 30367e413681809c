#!/usr/bin/python3
"""An actor-based parameter server training a digits classifier, with `import loom`.

For a Ray user: this is Ray's parameter-server example ("Parameter Server"
in Ray's documentation) with ``import loom`` in place of ``import ray``:

* ``ParameterServer`` is an actor holding the model (a softmax regression,
  64 pixels -> 10 classes, in NumPy); ``apply_gradients(*grads)`` averages
  the workers' gradients, takes an SGD step and returns the new weights;
* N ``DataWorker`` actors each hold one shard of scikit-learn's digits
  (``sklearn.datasets.load_digits``, 1,797 8x8 images) and compute the
  gradient of the loss on a minibatch of their shard for given weights;
* synchronous training: each step the workers' gradient refs go straight into
  the server's call (refs as arguments are resolved before the call runs, as
  in Ray); the driver only keeps refs, and fetches the weights at the end.

The driver holds out 20% of the digits and prints the accuracy on them; exit
status 1 when it is below --min-accuracy (default 0.9).  Arrays travel pickled.

    PYTHONPATH=build/python /usr/bin/python3 examples/python/param_server.py
    ... param_server.py --address HOST:PORT --workers 3 --steps 300

Needs NumPy and scikit-learn (Debian: python3-numpy python3-sklearn) on the
driver; the executors need NumPy.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import loom

CLASSES = 10


def softmax_grad(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Gradient of the mean cross-entropy of softmax(x1 @ w) (x1: x with a
    column of ones for the bias) with respect to w, with a little L2."""
    x1 = np.hstack([x, np.ones((len(x), 1))])
    z = x1 @ w
    z -= z.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(len(y)), y] -= 1.0
    return x1.T @ p / len(y) + 1e-4 * w


def predict(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    return (np.hstack([x, np.ones((len(x), 1))]) @ w).argmax(axis=1)


@loom.remote
class ParameterServer:
    def __init__(self, features: int, lr: float) -> None:
        self.w = np.zeros((features + 1, CLASSES))
        self.lr = lr
        self.updates = 0

    def apply_gradients(self, *grads: np.ndarray) -> np.ndarray:
        self.w -= self.lr * np.mean(grads, axis=0)
        self.updates += 1
        return self.w

    def get_weights(self) -> np.ndarray:
        return self.w

    def num_updates(self) -> int:
        return self.updates


@loom.remote
class DataWorker:
    def __init__(self, x: np.ndarray, y: np.ndarray, batch: int, seed: int) -> None:
        self.x, self.y, self.batch = x, y, batch
        self.rng = np.random.default_rng(seed)

    def compute_gradients(self, w: np.ndarray) -> np.ndarray:
        i = self.rng.choice(len(self.y), size=min(self.batch, len(self.y)), replace=False)
        return softmax_grad(w, self.x[i], self.y[i])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--address", help="HOST:PORT of a running cluster (default: $LOOM_ADDRESS, "
                    "else a local cluster for this run)")
    ap.add_argument("--workers", type=int, default=3, help="DataWorker actors (default 3)")
    ap.add_argument("--steps", type=int, default=300, help="synchronous steps (default 300)")
    ap.add_argument("--batch", type=int, default=64, help="minibatch per worker and step")
    ap.add_argument("--lr", type=float, default=0.5)
    ap.add_argument("--min-accuracy", type=float, default=0.9)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()

    from sklearn.datasets import load_digits
    digits = load_digits()
    x = digits.data / 16.0                      # pixels 0..16 -> 0..1
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(a.seed).permutation(len(y))
    cut = int(0.8 * len(y))
    train, test = order[:cut], order[cut:]

    loom.init(address=a.address)
    t0 = time.perf_counter()
    ps = ParameterServer.remote(x.shape[1], a.lr)
    shards = np.array_split(train, a.workers)
    workers = [DataWorker.remote(x[s], y[s], a.batch, a.seed + 1 + k) for k, s in enumerate(shards)]

    weights = ps.get_weights.remote()
    for step in range(a.steps):
        grads = [w.compute_gradients.remote(weights) for w in workers]
        weights = ps.apply_gradients.remote(*grads)
        if (step + 1) % 100 == 0:              # keep the pipeline a bounded depth
            w = loom.get(weights, timeout=120)
            acc = float((predict(w, x[test]) == y[test]).mean())
            print(f"step {step + 1:4d}: held-out accuracy {acc:.3f}")
    w = loom.get(weights, timeout=120)
    updates = loom.get(ps.num_updates.remote(), timeout=60)
    elapsed = time.perf_counter() - t0
    for h in workers + [ps]:
        loom.kill(h)
    loom.shutdown()

    acc = float((predict(w, x[test]) == y[test]).mean())
    print(f"param_server: {a.workers} workers, {updates} updates of {a.workers} gradients each, "
          f"{elapsed:.2f} s; accuracy on {len(test)} held-out digits: {acc:.4f}")
    if updates != a.steps:
        print(f"param_server: the server applied {updates} updates, not {a.steps}", file=sys.stderr)
        return 1
    if acc < a.min_accuracy:
        print(f"param_server: accuracy {acc:.4f} is below {a.min_accuracy}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
