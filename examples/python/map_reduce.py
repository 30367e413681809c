#!/usr/bin/python3
"""Map-reduce word count over /usr/share/common-licenses, with `import loom`.

For a Ray user: this is Ray's word-count pattern with ``import loom`` in place
of ``import ray`` (``loom.init``, ``@loom.remote``, ``.remote()``,
``loom.put``, ``loom.get``, ``loom.wait``).

* the driver reads the files, cuts the text into chunks of whole lines and
  ``loom.put``s each chunk;
* a **map** task per chunk counts its words and splits the counts into R
  partitions by a stable hash of the word (crc32: Python's own ``hash`` of a
  str differs from process to process);
* R **reduce** tasks each take every map result (ObjectRefs passed as
  arguments are resolved before the task runs, as in Ray) and add up their
  own partition;
* the driver joins the partitions and checks them against a plain Python
  count of the same text.  Exit status 1 on any difference.

A word is a run of ASCII letters, lowercased (as examples/wordcount.c).

    PYTHONPATH=build/python /usr/bin/python3 examples/python/map_reduce.py
    ... map_reduce.py --address HOST:PORT     # a running cluster (loom start)

Without --address: $LOOM_ADDRESS if set, else a local cluster started for the
run and stopped at its end.
"""
from __future__ import annotations

import argparse
import collections
import os
import re
import sys
import time
import zlib

import loom

WORD = re.compile(rb"[A-Za-z]+")


def count_words(text: bytes) -> collections.Counter:
    return collections.Counter(w.lower().decode("ascii") for w in WORD.findall(text))


@loom.remote
def map_chunk(text: bytes, partitions: int) -> list:
    """Count one chunk's words; return the counts cut into partitions."""
    parts = [dict() for _ in range(partitions)]
    for word, n in count_words(text).items():
        parts[zlib.crc32(word.encode()) % partitions][word] = n
    return parts


@loom.remote
def reduce_partition(index: int, *mapped: list) -> dict:
    """Add up partition `index` of every map result."""
    total: collections.Counter = collections.Counter()
    for parts in mapped:
        total.update(parts[index])
    return dict(total)


def chunks(data: bytes, n: int) -> list:
    """data cut into about n pieces, each ending at a newline."""
    size = max(1, len(data) // n)
    out, start = [], 0
    while start < len(data):
        end = data.find(b"\n", min(len(data), start + size))
        end = len(data) if end < 0 else end + 1
        out.append(data[start:end])
        start = end
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--address", help="HOST:PORT of a running cluster (default: $LOOM_ADDRESS, "
                    "else a local cluster for this run)")
    ap.add_argument("--dir", default="/usr/share/common-licenses", help="the files to count")
    ap.add_argument("--maps", type=int, default=16, help="map tasks (default 16)")
    ap.add_argument("--reduces", type=int, default=4, help="reduce tasks (default 4)")
    ap.add_argument("--top", type=int, default=10, help="words to print")
    a = ap.parse_args()

    files = sorted(os.path.join(a.dir, f) for f in os.listdir(a.dir)
                   if os.path.isfile(os.path.join(a.dir, f)))
    # a newline after each file, so no word runs across two files
    data = b"".join(open(f, "rb").read() + b"\n" for f in files)

    loom.init(address=a.address)
    t0 = time.perf_counter()
    pieces = [loom.put(c) for c in chunks(data, a.maps)]
    mapped = [map_chunk.remote(p, a.reduces) for p in pieces]
    reduced = [reduce_partition.remote(r, *mapped) for r in range(a.reduces)]
    ready, _ = loom.wait(reduced, num_returns=len(reduced), timeout=120)
    if len(ready) != len(reduced):
        print("map_reduce: the reduces did not finish in 120 s", file=sys.stderr)
        return 1
    counts: dict = {}
    for part in loom.get(reduced):
        counts.update(part)                    # partitions hold disjoint words
    elapsed = time.perf_counter() - t0
    loom.shutdown()

    want = count_words(data)
    total = sum(counts.values())
    print(f"map_reduce: {len(files)} files, {len(data)} bytes, {len(pieces)} maps, {a.reduces} reduces: "
          f"{total} words, {len(counts)} distinct, in {elapsed:.2f} s")
    for word, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:a.top]:
        print(f"{n:8d} {word}")
    if counts != dict(want):
        diff = set(counts.items()) ^ set(want.items())
        print(f"map_reduce: MISMATCH with the plain Python count ({sum(want.values())} words, "
              f"{len(want)} distinct; {len(diff)} entries differ, e.g. {sorted(diff)[:5]})", file=sys.stderr)
        return 1
    print("map_reduce: matches the plain Python count")
    return 0


if __name__ == "__main__":
    sys.exit(main())
