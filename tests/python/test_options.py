"""tests/python/test_options.py — num_returns, runtime_env and placement
groups of `import loom`, against a real local cluster (2 nodes of 2 CPUs,
for the module).  Every wait is bounded.
"""
from __future__ import annotations

import gc
import sys

import cloudpickle
import pytest

import loom

cloudpickle.register_pickle_by_value(sys.modules[__name__])

T = 30


@pytest.fixture(scope="module", autouse=True)
def cluster(tmp_path_factory):
    state = tmp_path_factory.mktemp("loom") / "state"
    loom.init("local", num_cpus=2, num_nodes=2, state_dir=str(state))
    yield
    loom.shutdown()


# ---- num_returns ---------------------------------------------------------------

@loom.remote(num_returns=3)
def three(x):
    return x, [x, x + 1], {"x": (x,)}


@loom.remote
def pair(a, b):
    return (b, a)


@loom.remote
def add(a, b):
    return a + b


def test_num_returns_gives_one_ref_per_value():
    a, b, c = three.remote(5)
    assert loom.get(a, timeout=T) == 5
    assert loom.get([b, c], timeout=T) == [[5, 6], {"x": (5,)}]
    # through .options, and each output as an argument of another task
    x, y = pair.options(num_returns=2).remote("left", "right")
    del_ref = loom.get(add.remote(x, y), timeout=T)
    assert del_ref == "rightleft"
    ready, _ = loom.wait([x, y], num_returns=2, timeout=T)
    assert len(ready) == 2


def test_num_returns_outputs_outlive_each_other():
    refs = three.remote(1)
    first = refs[0]
    del refs
    gc.collect()
    assert loom.get(first, timeout=T) == 1


def test_num_returns_wrong_count_and_errors():
    a, b = pair.options(num_returns=2).remote(1, 2)
    assert loom.get([a, b], timeout=T) == [2, 1]
    bad = three.options(num_returns=2).remote(0)
    with pytest.raises(loom.TaskError) as e:
        loom.get(bad[1], timeout=T)
    assert "num_returns=2" in str(e.value)
    assert isinstance(e.value, ValueError)
    with pytest.raises(ValueError):
        pair.options(num_returns=0)
    with pytest.raises(ValueError):
        loom.c_function("/nonexistent.so", "f", num_returns=2)
