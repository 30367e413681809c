#!/usr/bin/python3
"""One graph of C and Python tasks, with `import loom`.

For a Ray user: ``loom.c_function(library, name)`` is a task function written
in C (``LOOM_TASK`` in a task library, here examples/tasks.c built as
libloom_examples.so); it has ``.remote()`` like a ``@loom.remote`` function,
and its ObjectRefs mix freely with those of Python tasks.  Plain values
(int, float, str, bytes, lists and dicts of those) travel as msgpack, which
C tasks read with loom/value.h, and C results read back in Python.

Two graphs:

1. **sum of squares**: C ``value(i)`` leaves -> Python ``square`` -> a tree
   of C ``add`` -> a Python ``describe``; checked against sum(i*i).
2. **word count with a C reduce**: Python map tasks count the words of each
   file of /usr/share/common-licenses (a dict str -> int, that is a msgpack
   map) -> C ``merge_counts`` adds the maps -> a Python task picks the top
   words; checked against a plain Python count.

Exit status 1 on a wrong result.

    PYTHONPATH=build/python /usr/bin/python3 examples/python/mixed_graph.py
    ... mixed_graph.py --address HOST:PORT [--lib build/lib/libloom_examples.so]
"""
from __future__ import annotations

import argparse
import collections
import os
import re
import sys
import time

import loom

WORD = re.compile(rb"[A-Za-z]+")


def count_words(text: bytes) -> dict:
    return dict(collections.Counter(w.lower().decode("ascii") for w in WORD.findall(text)))


@loom.remote
def square(x: int) -> int:
    return x * x


@loom.remote
def describe(total: int, leaves: int) -> str:
    return f"sum of i*i for i < {leaves} = {total} (a {type(total).__name__} from C)"


@loom.remote
def map_text(text: bytes) -> dict:
    return count_words(text)


@loom.remote
def top_words(counts: dict, k: int) -> list:
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:k]


def default_lib() -> str:
    """libloom_examples.so of the build that holds this loom package
    (BUILD/python/loom -> BUILD/lib), else build/lib of this checkout."""
    env = os.environ.get("LOOM_EXAMPLES_LIB")
    if env:
        return env
    here = os.path.dirname(os.path.abspath(loom.__file__))
    for cand in (os.path.join(here, "..", "..", "lib", "libloom_examples.so"),
                 os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "build", "lib",
                              "libloom_examples.so")):
        if os.path.exists(cand):
            return os.path.normpath(cand)
    return "build/lib/libloom_examples.so"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--address", help="HOST:PORT of a running cluster (default: $LOOM_ADDRESS, "
                    "else a local cluster for this run)")
    ap.add_argument("--lib", default=default_lib(), help="the example task library (default: %(default)s)")
    ap.add_argument("--leaves", type=int, default=64)
    ap.add_argument("--dir", default="/usr/share/common-licenses")
    a = ap.parse_args()
    if not os.path.exists(a.lib):
        print(f"mixed_graph: {a.lib} not found (build the tree, or pass --lib)", file=sys.stderr)
        return 2

    loom.init(address=a.address)
    c_value = loom.c_function(a.lib, "value")
    c_add = loom.c_function(a.lib, "add")
    c_merge = loom.c_function(a.lib, "merge_counts")
    ok = True

    # 1. C leaves -> Python squares -> a C tree of adds -> Python
    t0 = time.perf_counter()
    level = [square.remote(c_value.remote(i)) for i in range(a.leaves)]
    tasks = 2 * a.leaves
    while len(level) > 1:
        nxt = [c_add.remote(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        tasks += len(nxt)
        level = nxt + ([level[-1]] if len(level) % 2 else [])
    total_ref = level[0]
    text = loom.get(describe.remote(total_ref, a.leaves), timeout=60)
    total = loom.get(total_ref, timeout=60)
    want = sum(i * i for i in range(a.leaves))
    print(f"mixed_graph: {tasks + 1} tasks (C value, Python square, C add, Python describe) in "
          f"{time.perf_counter() - t0:.2f} s: {text}")
    if total != want or type(total) is not int:
        print(f"mixed_graph: sum of squares is {total!r}, want {want}", file=sys.stderr)
        ok = False

    # 2. Python maps -> C merge_counts -> Python top words
    t0 = time.perf_counter()
    files = sorted(os.path.join(a.dir, f) for f in os.listdir(a.dir)
                   if os.path.isfile(os.path.join(a.dir, f)))
    texts = [open(f, "rb").read() for f in files]
    maps = [map_text.remote(loom.put(t)) for t in texts]
    merged = c_merge.remote(*maps)
    top = loom.get(top_words.remote(merged, 5), timeout=60)
    counts = loom.get(merged, timeout=60)
    print(f"mixed_graph: word count of {len(files)} files, {len(files)} Python maps -> C merge_counts -> "
          f"Python top_words in {time.perf_counter() - t0:.2f} s: {sum(counts.values())} words, "
          f"{len(counts)} distinct; top {top}")
    plain: collections.Counter = collections.Counter()
    for t in texts:
        plain.update(count_words(t))
    if counts != dict(plain):
        print(f"mixed_graph: the C merge differs from a plain Python count "
              f"({sum(plain.values())} words, {len(plain)} distinct)", file=sys.stderr)
        ok = False
    loom.shutdown()
    print("mixed_graph: correct" if ok else "mixed_graph: WRONG")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
