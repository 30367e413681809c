#!/usr/bin/env python3
"""examples/tune/branin.py — a command trial of a sweep (tune/README.md,
"Protocol of command trials") in plain Python 3, standard library only: the
Branin function of the config's x1 and x2, to be minimized,

    f(x1, x2) = (x2 - 5.1/(4 pi^2) x1^2 + 5/pi x1 - 6)^2
                + 10 (1 - 1/(8 pi)) cos(x1) + 10

(x1 in [-5, 10], x2 in [0, 15]; the minimum 0.397887 at (-pi, 12.275),
(pi, 2.275) and (9.42478, 2.475)).  It pretends to be an iterative trial: it
reports "value" at t = 1, 2, 3, coming down to f as a training loss does:
f plus a noise term, |N(0, 1)| * 10 at t = 1, half that at t = 2, none at
t = 3 (so the last one is f exactly); the draw comes from a generator seeded
with LOOM_TUNE_TRIAL, so a trial reports the same numbers every time it runs.

    {"metric": "value", "mode": "min",
     "space": {"x1": {"type": "uniform", "lower": -5, "upper": 10},
               "x2": {"type": "uniform", "lower": 0, "upper": 15}},
     "trial": {"command": ["python3", "examples/tune/branin.py"]}}

The config comes from LOOM_TUNE_CONFIG (a JSON object: x1, x2 numbers, and
optionally "sleep", seconds to wait before each report).  The results go:
  - over the socket LOOM_TUNE_SOCKET names when it is set: a JSON object per
    line, then one answer line read back for each, "continue", "stop" or
    "pause"; on "stop" and "pause" it exits 0 at once;
  - otherwise as lines `loom-tune {JSON}` on stdout, flushed (the runner
    suspends it after each until the scheduler has answered, and kills it on
    "stop" or "pause").
With LOOM_TUNE_CHECKPOINT_DIR set it also writes its state ({"t": t}) to
state.json there before each report and names it ("checkpoint"); resumed
with LOOM_TUNE_RESUME (a paused trial started again) it goes on from the
iteration after the one in that file.

Exit status: 0 when done or told to stop/pause, 1 when the socket fails or
answers something else, 2 when the config is missing or bad.
"""
import json
import math
import os
import random
import socket
import sys
import time

ITERATIONS = 3
NOISE = 10.0  # the scale of the noise at t = 1 (half of it at t = 2, none at t = 3)


def branin(x1, x2):
    b, c, t = 5.1 / (4 * math.pi ** 2), 5 / math.pi, 1 / (8 * math.pi)
    return (x2 - b * x1 * x1 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10


def fail(status, message):
    print("branin.py: " + message, file=sys.stderr)
    sys.exit(status)


def read_config():
    try:
        config = json.loads(os.environ["LOOM_TUNE_CONFIG"])
        x1, x2 = float(config["x1"]), float(config["x2"])
        sleep = float(config.get("sleep", 0))
    except (KeyError, ValueError, TypeError, AttributeError) as e:
        fail(2, "LOOM_TUNE_CONFIG must be a JSON object with numbers x1 and x2 (%s: %s)"
             % (type(e).__name__, e))
    return x1, x2, sleep


def resume_after():
    """The last t done, from the checkpoint of a resumed trial; 0 if fresh."""
    path = os.environ.get("LOOM_TUNE_RESUME")
    if not path:
        return 0
    try:
        with open(path) as f:
            return int(json.load(f)["t"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        fail(2, "bad checkpoint %s: %s" % (path, e))


def save_checkpoint(t):
    """state.json in LOOM_TUNE_CHECKPOINT_DIR, atomically; its name, or None."""
    ckdir = os.environ.get("LOOM_TUNE_CHECKPOINT_DIR")
    if not ckdir:
        return None
    tmp = os.path.join(ckdir, "state.json.tmp")
    with open(tmp, "w") as f:
        json.dump({"t": t}, f)
    os.replace(tmp, os.path.join(ckdir, "state.json"))
    return "state.json"


class Reporter:
    """Reports over LOOM_TUNE_SOCKET when it is set, else on stdout."""

    def __init__(self):
        path = os.environ.get("LOOM_TUNE_SOCKET")
        self.sock = self.answers = None
        if path:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(path)
            except OSError as e:
                fail(1, "cannot connect to LOOM_TUNE_SOCKET %s: %s" % (path, e))
            self.answers = self.sock.makefile("r", encoding="utf-8", newline="\n")

    def report(self, result):
        """Send one result; the scheduler's answer (always "continue" on stdout)."""
        line = json.dumps(result)
        if not self.sock:
            print("loom-tune " + line, flush=True)
            return "continue"
        try:
            self.sock.sendall((line + "\n").encode())
            answer = self.answers.readline()
        except OSError as e:
            fail(1, "LOOM_TUNE_SOCKET: %s" % e)
        if not answer:
            fail(1, "LOOM_TUNE_SOCKET closed before answering")
        answer = answer.strip()
        if answer not in ("continue", "stop", "pause"):
            fail(1, "unexpected answer %r" % answer)
        return answer


def main():
    x1, x2, sleep = read_config()
    f = branin(x1, x2)
    trial = int(os.environ.get("LOOM_TUNE_TRIAL", "0") or 0)
    rng = random.Random(trial)
    draw = abs(rng.gauss(0, 1))
    noise = [draw * NOISE * (ITERATIONS - t) / (ITERATIONS - 1) for t in range(1, ITERATIONS + 1)]
    reporter = Reporter()
    for t in range(resume_after() + 1, ITERATIONS + 1):
        if sleep > 0:
            time.sleep(sleep)
        result = {"t": t, "value": f + noise[t - 1]}
        checkpoint = save_checkpoint(t)
        if checkpoint:
            result["checkpoint"] = checkpoint
        print("branin.py: trial %d x1=%g x2=%g t=%d value=%.6f"
              % (trial, x1, x2, t, result["value"]), file=sys.stderr)
        if reporter.report(result) != "continue":
            return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
