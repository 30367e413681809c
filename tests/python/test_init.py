"""tests/python/test_init.py — loom.init's options for a local cluster
(num_cpus, num_gpus, num_nodes), what a second init does, and tasks asking
for GPUs on nodes that report them (simulated where the machine has none:
the runtime grants device indices, CUDA_VISIBLE_DEVICES names them)."""
from __future__ import annotations

import os
import sys

import cloudpickle
import pytest

import loom

cloudpickle.register_pickle_by_value(sys.modules[__name__])

T = 30


@loom.remote(num_gpus=1)
def visible_devices():
    return os.environ.get("CUDA_VISIBLE_DEVICES")


def test_local_cluster_with_gpus(tmp_path):
    with pytest.raises(ValueError):
        loom.init("local", num_gpus=5000, state_dir=str(tmp_path / "bad"))
    loom.init("local", num_cpus=2, num_gpus=2, num_nodes=2, state_dir=str(tmp_path / "st"))
    try:
        res = loom.cluster_resources()
        assert res["CPU"] == 4.0 and res["GPU"] == 4.0
        assert len(loom.nodes()) == 2
        with pytest.raises(RuntimeError, match="already"):
            loom.init("local")
        loom.init("local", ignore_reinit_error=True)   # no error, the same connection
        got = loom.get([visible_devices.remote() for _ in range(4)], timeout=T)
        assert all(g in ("0", "1") for g in got), got
    finally:
        loom.shutdown()
    assert not loom.is_initialized()
