#!/usr/bin/python3
"""tests/shard_data.py — data and reference for the batch-inference tests and
benchmark (tests/sys_shard.sh, bench/shard_bench.sh), with NumPy (Debian's
python3-numpy):

  shard_data.py model OUT.safetensors --widths 64,1024,1024,10 [--seed 1]
      a ReLU MLP with random weights in serve/mlp.h's safetensors layout
  shard_data.py data OUT.npy --rows N [--cols 64] [--seed 2]
      rows of digit-like pixels (0..16) as float32
  shard_data.py formats SRC.npy DIR --rows N
      the first N rows as DIR/part.csv, DIR/part.jsonl, and DIR/parts/ (three
      .npy files, for a directory input)
  shard_data.py check MODEL.safetensors DATA OUTDIR
      the outputs of `loom infer` against a float64 forward pass done here:
      prints {"rows", "max_abs_diff", "label_mismatches", "complete"}
"""
import json
import os
import struct
import sys

import numpy as np


def write_safetensors(path, tensors, meta):
    header, blobs, off = {"__metadata__": meta}, [], 0
    for name, arr in tensors:
        b = np.ascontiguousarray(arr, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    out = {}
    for name, d in header.items():
        if name == "__metadata__":
            continue
        a, b = d["data_offsets"]
        out[name] = np.frombuffer(raw[8 + n + a:8 + n + b], dtype="<f4").reshape(d["shape"])
    return out


def cmd_model(args):
    out, widths, seed = args[0], [64, 1024, 1024, 10], 1
    if "--widths" in args:
        widths = [int(w) for w in args[args.index("--widths") + 1].split(",")]
    if "--seed" in args:
        seed = int(args[args.index("--seed") + 1])
    rng = np.random.default_rng(seed)
    tensors = []
    for i in range(len(widths) - 1):
        fan_in = widths[i]
        w = rng.normal(0, np.sqrt(2.0 / fan_in), size=(widths[i + 1], fan_in)) / (16.0 if i == 0 else 1.0)
        tensors.append(("layers.%d.weight" % i, w.astype(np.float32)))
        tensors.append(("layers.%d.bias" % i, rng.normal(0, 0.01, size=widths[i + 1]).astype(np.float32)))
    write_safetensors(out, tensors, {"activation": "relu", "name": "wide-mlp",
                                     "widths": ",".join(map(str, widths))})


def cmd_data(args):
    out, rows, cols, seed = args[0], 1000, 64, 2
    if "--rows" in args:
        rows = int(args[args.index("--rows") + 1])
    if "--cols" in args:
        cols = int(args[args.index("--cols") + 1])
    if "--seed" in args:
        seed = int(args[args.index("--seed") + 1])
    rng = np.random.default_rng(seed)
    np.save(out, rng.integers(0, 17, size=(rows, cols)).astype(np.float32))


def cmd_formats(args):
    src, d, rows = args[0], args[1], int(args[args.index("--rows") + 1])
    x = np.load(src)[:rows]
    os.makedirs(os.path.join(d, "parts"), exist_ok=True)
    with open(os.path.join(d, "part.csv"), "w") as f:
        f.write(",".join("p%d" % i for i in range(x.shape[1])) + "\n")
        for r in x:
            f.write(",".join("%g" % v for v in r) + "\n")
    with open(os.path.join(d, "part.jsonl"), "w") as f:
        for i, r in enumerate(x):
            row = [float(v) for v in r]
            f.write(json.dumps({"input": row} if i % 2 else row) + "\n")
    cuts = [0, rows // 3, 2 * rows // 3, rows]
    for k in range(3):
        np.save(os.path.join(d, "parts", "part-%d.npy" % k), x[cuts[k]:cuts[k + 1]])


def forward(weights, x):
    n = len([k for k in weights if k.endswith(".weight")])
    h = x.astype(np.float64)
    for i in range(n):
        h = h @ weights["layers.%d.weight" % i].astype(np.float64).T + weights["layers.%d.bias" % i]
        if i < n - 1:
            h = np.maximum(h, 0)
    h -= h.max(axis=1, keepdims=True)
    e = np.exp(h)
    return e / e.sum(axis=1, keepdims=True)


def load_input(path):
    if os.path.isdir(path):
        names = sorted(f for f in os.listdir(path) if f.endswith(".npy"))
        return np.concatenate([np.load(os.path.join(path, f)) for f in names])
    if path.endswith(".npy"):
        return np.load(path)
    if path.endswith(".csv"):
        return np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float32, ndmin=2)
    rows = []
    for line in open(path):
        v = json.loads(line)
        rows.append(v["input"] if isinstance(v, dict) else v)
    return np.array(rows, dtype=np.float32)


def cmd_check(args):
    weights, x, outdir = read_safetensors(args[0]), load_input(args[1]), args[2]
    m = json.load(open(os.path.join(outdir, "manifest.json")))
    shards = sorted(m["shards"], key=lambda s: s["index"])
    complete = m["complete"] and all("output" in s for s in shards)
    probs = np.concatenate([np.load(os.path.join(outdir, s["output"])) for s in shards]) if complete else None
    labels = np.concatenate([np.load(os.path.join(outdir, s["labels"])) for s in shards]) if complete else None
    res = {"rows": int(x.shape[0]), "complete": bool(complete)}
    if complete:
        ref = np.concatenate([forward(weights, x[i:i + 4096]) for i in range(0, len(x), 4096)])
        res["max_abs_diff"] = float(np.abs(ref - probs).max())
        top2 = np.sort(ref, axis=1)[:, -2:]
        clear = (top2[:, 1] - top2[:, 0]) > 1e-4  # rows whose best class is not a near tie
        res["label_mismatches"] = int(((labels != ref.argmax(axis=1)) & clear).sum())
        res["rows_out"] = int(len(labels))
    print(json.dumps(res))


if __name__ == "__main__":
    cmd = {"model": cmd_model, "data": cmd_data, "formats": cmd_formats, "check": cmd_check}.get(
        sys.argv[1] if len(sys.argv) > 1 else "")
    if not cmd:
        sys.exit(__doc__)
    cmd(sys.argv[2:])
