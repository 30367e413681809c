"""tests/python/test_numpy.py — NumPy values: pickle 5 with out-of-band
buffers framed into one store object, read back zero-copy by loom.get on the
node (python/README.md, "Zero-copy NumPy").

One local cluster (2 CPUs, 1 GiB of store) for the module.  Every wait is
bounded.
"""
from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
import time

import cloudpickle
import pytest

np = pytest.importorskip("numpy")

import loom
from loom import _loom

cloudpickle.register_pickle_by_value(sys.modules[__name__])

T = 60


@pytest.fixture(scope="module", autouse=True)
def cluster(tmp_path_factory):
    state = tmp_path_factory.mktemp("loom") / "state"
    loom.init("local", num_cpus=2, state_dir=str(state), object_store_memory=1 << 30)
    yield
    loom.shutdown()


def value_buffer_of(arr):
    """The loom.ValueBuffer at the end of arr's base chain, or None."""
    o = arr
    for _ in range(8):
        if isinstance(o, _loom.ValueBuffer):
            return o
        o = o.base if isinstance(o, np.ndarray) else getattr(o, "obj", None)
        if o is None:
            return None
    return None


def mapping_of(addr):
    """The /proc/self/maps line of the mapping holding addr."""
    with open("/proc/self/maps") as f:
        for line in f:
            lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
            if lo <= addr < hi:
                return line.strip()
    return ""


@loom.remote
def scale(x, k):
    assert isinstance(x, np.ndarray)
    return x * k


@loom.remote
def stats(arrays):
    return {name: [str(a.dtype), list(a.shape), float(a.sum())] for name, a in arrays.items()}


DTYPES = ["int8", "uint16", "int32", "int64", "float32", "float64", "complex128", "bool"]


@pytest.mark.parametrize("dtype", DTYPES)
def test_round_trip_dtypes(dtype):
    rng = np.random.default_rng(7)
    a = (rng.random(100_000) * 100).astype(dtype)        # 100 kB to 1.6 MB: zero-copy
    b = loom.get(loom.put(a), timeout=T)
    assert b.dtype == a.dtype and b.shape == a.shape
    assert a.tobytes() == b.tobytes()


def test_round_trip_shapes_and_orders():
    base = np.arange(600 * 400, dtype=np.float64).reshape(600, 400)
    cases = {
        "non_contiguous": base[::3, 1::2],       # neither C nor F: pickled in-band
        "fortran": np.asfortranarray(base),
        "empty": np.zeros((0, 5), dtype=np.int32),
        "small": np.arange(5, dtype=np.int16),   # under the zero-copy threshold
        "scalar0d": np.array(3.5),
        "structured": np.array([(1, 2.0), (3, 4.0)] * 5000, dtype=[("a", "<i4"), ("b", "<f8")]),
    }
    for name, a in cases.items():
        b = loom.get(loom.put(a), timeout=T)
        assert b.dtype == a.dtype and b.shape == a.shape, name
        assert np.array_equal(a, b), name
        assert a.tobytes(order="A") == b.tobytes(order="A"), name
    # several arrays in one value: one frame, several buffers
    got = loom.get(loom.put(cases), timeout=T)
    for name, a in cases.items():
        assert np.array_equal(a, got[name]), name


def test_get_is_a_read_only_view_of_the_store():
    a = np.arange(1 << 20, dtype=np.float64)             # 8 MiB
    b = loom.get(loom.put(a), timeout=T)
    assert not b.flags.writeable
    with pytest.raises(ValueError):
        b[0] = 1.0
    vb = value_buffer_of(b)
    assert vb is not None, "the array's base chain does not reach a loom.ValueBuffer"
    lo = vb.address()
    assert lo <= b.ctypes.data and b.ctypes.data + b.nbytes <= lo + len(vb)
    line = mapping_of(b.ctypes.data)
    assert line.endswith("data.mdb"), f"not inside the store's LMDB map: {line!r}"
    assert np.array_equal(a, b)
    # the frame aligns big buffers to pages, relative to the value's start
    # (LMDB puts the value 16 bytes into its first page)
    assert (b.ctypes.data - lo) % 4096 == 0


def test_get_of_256_mib_costs_no_copy():
    a = np.arange(32 << 20, dtype=np.float64)            # 256 MiB
    ref = loom.put(a)
    times = []
    views = []
    for _ in range(2):
        t = time.perf_counter()
        views.append(loom.get(ref, timeout=T))
        times.append(time.perf_counter() - t)
    copies = []
    for _ in range(2):
        t = time.perf_counter()
        c = np.copy(a)
        copies.append(time.perf_counter() - t)
        del c
    copy_s = min(copies)
    print(f"\n256 MiB: get {times[0] * 1e3:.3f} ms, again {times[1] * 1e3:.3f} ms; "
          f"np.copy {copy_s * 1e3:.1f} ms")
    # a get that copied would take about as long as np.copy; zero-copy takes
    # well under a millisecond here
    assert max(times) < copy_s / 5, (times, copy_s)
    for v in views:
        assert value_buffer_of(v) is not None
        assert v[-1] == a[-1] and v[12345] == a[12345]
    assert np.array_equal(views[0], a)


def test_task_takes_and_returns_arrays():
    a = np.arange(300_000, dtype=np.int64).reshape(1000, 300)
    ref = loom.put(a)
    # an array by ref (resolved first) and by value (framed into the call)
    by_ref = loom.get(scale.remote(ref, 3), timeout=T)
    by_value = loom.get(scale.remote(a[:, ::2], 2), timeout=T)
    assert np.array_equal(by_ref, a * 3)
    assert np.array_equal(by_value, a[:, ::2] * 2)
    assert value_buffer_of(by_ref) is not None and not by_ref.flags.writeable
    # a task's result as the argument of another task
    twice = loom.get(scale.remote(scale.remote(ref, 2), 5), timeout=T)
    assert np.array_equal(twice, a * 10)
    got = loom.get(stats.remote({"x": a, "y": np.ones(70_000, dtype=np.float32)}), timeout=T)
    assert got == {"x": ["int64", [1000, 300], float(a.sum())], "y": ["float32", [70000], 70000.0]}


def test_view_keeps_the_value_alive():
    a = np.arange(4 << 20, dtype=np.float64)             # 32 MiB
    ref = loom.put(a)
    b = loom.get(ref, timeout=T)
    del ref
    gc.collect()
    # the ref's release reaches the head and the store may drop the object;
    # churn the store so that freed pages would be reused
    for i in range(6):
        r = loom.put(np.full(4 << 20, float(i)))
        assert loom.get(r, timeout=T)[0] == float(i)
        del r
    assert loom.get(scale.remote(np.ones(10), 1), timeout=T).sum() == 10.0  # a call into the client
    assert np.array_equal(a, b)


def test_views_survive_shutdown(tmp_path):
    """A view outlives loom.shutdown(): the connection stays open for it and
    closes with its last view."""
    script = textwrap.dedent(f"""
        import gc, numpy as np, loom
        loom.init("local", num_cpus=1, state_dir={str(tmp_path / "s")!r})
        a = np.arange(1 << 20, dtype=np.float64)
        b = loom.get(loom.put(a), timeout=30)
        loom.shutdown()
        assert np.array_equal(a, b)
        loom.init("local", num_cpus=1, state_dir={str(tmp_path / "s2")!r})
        c = loom.get(loom.put(a + 1), timeout=30)
        del b
        gc.collect()
        assert np.array_equal(a + 1, c)
        loom.shutdown()
        print("ok")
    """)
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(loom.__file__))))
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=T)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stdout + out.stderr
