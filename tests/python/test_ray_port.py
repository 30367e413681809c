"""tests/python/test_ray_port.py — Ray programs on a real 3-daemon cluster
(a head and three node daemons of 2 CPUs, one with a custom resource,
started with the loom CLI).

- ray_docs_program.py, a program in the shape of Ray's documentation with
  ``import loom as ray``, runs unchanged as a separate driver that joins the
  cluster through $LOOM_ADDRESS;
- placement groups (strategies, bundles, infeasible groups, removal) and
  scheduling strategies (SPREAD, node affinity hard and soft, custom
  resources), including the errors of bad options;
- calls from inside tasks and actors (a task submitting and getting tasks,
  an actor calling another), through the task's own client.

Every wait is bounded.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

import cloudpickle
import numpy as np
import pytest

import loom
from loom.util.placement_group import placement_group, placement_group_table, remove_placement_group
from loom.util.scheduling_strategies import NodeAffinitySchedulingStrategy, PlacementGroupSchedulingStrategy

from _cluster import Cluster

cloudpickle.register_pickle_by_value(sys.modules[__name__])

T = 30
HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("ray"), daemons=3, cpus=2,
                daemon_args=[[], ["--resources", "special_hardware=1"], []])
    loom.init(c.address, state_dir=c.state_dir)
    yield c
    loom.shutdown()
    c.stop()


@loom.remote
def node_of(seconds=0.0):
    time.sleep(seconds)
    return os.environ.get("LOOM_NODE_ID")


def test_ray_docs_program_runs_unchanged(cluster):
    env = dict(os.environ, LOOM_ADDRESS=cluster.address, LOOM_STATE_DIR=cluster.state_dir)
    p = subprocess.run([sys.executable, os.path.join(HERE, "ray_docs_program.py")], env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == "[0, 1, 4, 9]" and lines[1] == "[1, 1, 1, 1]"
    assert "`get` timed out." in lines
    assert lines[-1] == "RAY PORT OK"


# ---- placement groups ----------------------------------------------------------------

def test_placement_group_strict_spread_and_bundles(cluster):
    pg = placement_group([{"CPU": 1}, {"CPU": 1}, {"CPU": 1}], strategy="STRICT_SPREAD")
    assert loom.get(pg.ready(), timeout=T) is True
    assert pg.wait(5)
    table = placement_group_table(pg)
    assert table["state"] == "CREATED" and table["strategy"] == "STRICT_SPREAD"
    where = loom.get([node_of.options(scheduling_strategy=PlacementGroupSchedulingStrategy(pg, i)).remote()
                      for i in range(3)], timeout=T)
    assert [str(w) for w in where] == [table["bundles_to_node_id"][i] for i in range(3)]
    assert len(set(where)) == 3
    # the older option names place the same way
    assert loom.get(node_of.options(placement_group=pg, placement_group_bundle_index=1).remote(),
                    timeout=T) == where[1]
    remove_placement_group(pg)
    assert placement_group_table(pg)["state"] == "REMOVED"
    remove_placement_group(pg)   # twice: nothing left to free, no error


def test_placement_group_strict_pack_is_one_node(cluster):
    pg = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="STRICT_PACK")
    assert loom.get(pg.ready(), timeout=T)
    nodes = set(placement_group_table(pg)["bundles_to_node_id"].values())
    assert len(nodes) == 1
    remove_placement_group(pg)


def test_placement_group_reserves_resources(cluster):
    before = loom.available_resources()["CPU"]
    pg = placement_group([{"CPU": 2}], strategy="PACK")
    assert loom.get(pg.ready(), timeout=T)
    deadline = time.monotonic() + T
    while loom.available_resources()["CPU"] > before - 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert loom.available_resources()["CPU"] == before - 2
    remove_placement_group(pg)


def test_placement_group_infeasible_and_bad_input(cluster):
    pg = placement_group([{"CPU": 100}])
    with pytest.raises(loom.TaskError, match="infeasible"):
        loom.get(pg.ready(), timeout=T)
    with pytest.raises(ValueError, match="strategy"):
        placement_group([{"CPU": 1}], strategy="EVERYWHERE")
    with pytest.raises(ValueError, match="bundle"):
        placement_group([{"CPU": -1}])
    with pytest.raises(ValueError):
        placement_group([])
    with pytest.raises(ValueError, match="bundle"):
        placement_group([{}])
    with pytest.raises(TypeError):
        PlacementGroupSchedulingStrategy("not a group")


# ---- scheduling strategies -------------------------------------------------------------

def test_node_affinity_hard_and_soft(cluster):
    ids = [n["NodeID"] for n in loom.nodes() if n["Alive"]]
    assert len(ids) == 3
    for nid in ids:
        got = loom.get([node_of.options(scheduling_strategy=NodeAffinitySchedulingStrategy(nid, soft=False))
                        .remote() for _ in range(3)], timeout=T)
        assert set(got) == {nid}
    # soft affinity to a node that does not exist: runs elsewhere
    assert loom.get(node_of.options(scheduling_strategy=NodeAffinitySchedulingStrategy(999, soft=True))
                    .remote(), timeout=T) in ids
    with pytest.raises(ValueError, match="node id"):
        NodeAffinitySchedulingStrategy("node-one", soft=False)


def test_spread_uses_every_node(cluster):
    got = loom.get([node_of.options(scheduling_strategy="SPREAD").remote(0.5) for _ in range(3)], timeout=T)
    assert len(set(got)) == 3


def test_custom_resource_pins_to_its_node(cluster):
    got = {loom.get(node_of.options(resources={"special_hardware": 1}).remote(), timeout=T) for _ in range(3)}
    assert len(got) == 1
    with pytest.raises(ValueError, match="resources"):
        node_of.options(resources={"CPU": 1})
    with pytest.raises(ValueError, match="scheduling_strategy"):
        node_of.options(scheduling_strategy="EVERYWHERE")


# ---- calls from inside tasks and actors ----------------------------------------------------

@loom.remote
def square(x):
    return x * x


@loom.remote
def sum_of_squares(n):
    # a task that submits tasks and gets their results, as Ray tasks do
    return sum(loom.get([square.remote(i) for i in range(n)], timeout=T))


@loom.remote
def put_inside():
    ref = loom.put({"made": "inside"})
    return loom.get(ref)


@loom.remote
class Store:
    def __init__(self):
        self.items = []

    def add(self, x):
        self.items.append(x)
        return len(self.items)

    def items_(self):
        return list(self.items)


@loom.remote
class Producer:
    def __init__(self, store):
        self.store = store

    def produce(self, n):
        # an actor calling another actor, and a task, from inside its method
        return loom.get([self.store.add.remote(loom.get(square.remote(i), timeout=T)) for i in range(n)],
                        timeout=T)


def test_tasks_submit_tasks(cluster):
    assert loom.get(sum_of_squares.remote(5), timeout=T) == 30
    assert loom.get(put_inside.remote(), timeout=T) == {"made": "inside"}


def test_actor_calls_actor(cluster):
    store = Store.remote()
    producer = Producer.remote(store)
    assert loom.get(producer.produce.remote(4), timeout=T) == [1, 2, 3, 4]
    assert loom.get(store.items_.remote(), timeout=T) == [0, 1, 4, 9]


# ---- refs nested inside values -----------------------------------------------------------

@loom.remote
def total_of(d):
    # refs inside an argument arrive as refs (not resolved), as in Ray
    assert all(isinstance(r, loom.ObjectRef) for r in d["arrays"])
    return sum(int(loom.get(r, timeout=T).sum()) for r in d["arrays"])


@loom.remote
def make_refs(n):
    # refs made inside a task, returned inside its value
    return [loom.put(np.full(3, i)) for i in range(n)]


@loom.remote
class Holder:
    def __init__(self, refs):
        self.refs = refs

    def first(self):
        return loom.get(self.refs[0], timeout=T)


def test_nested_refs(cluster):
    import gc
    a, b = loom.put(np.arange(10)), loom.put("bee")
    outer = loom.put({"refs": [a, b]})
    del a, b
    gc.collect()   # the outer value's ref keeps the nested objects alive
    value = loom.get(outer, timeout=T)
    assert [type(r) for r in value["refs"]] == [loom.ObjectRef, loom.ObjectRef]
    assert loom.get(value["refs"][1], timeout=T) == "bee"
    assert int(loom.get(value["refs"][0], timeout=T).sum()) == 45

    arrays = [loom.put(np.arange(i + 1)) for i in range(4)]
    result = total_of.remote({"arrays": arrays})
    del arrays
    gc.collect()   # the call's result ref keeps its arguments' nested refs alive
    assert loom.get(result, timeout=T) == 0 + 1 + 3 + 6

    inner = loom.get(make_refs.remote(3), timeout=T)
    assert [int(loom.get(r, timeout=T)[0]) for r in inner] == [0, 1, 2]

    h = Holder.remote([loom.put("held")])
    gc.collect()
    assert loom.get(h.first.remote(), timeout=T) == "held"


# ---- Python tasks in the CLI ---------------------------------------------------------------

@loom.remote
def chatty(x):
    print("hello from chatty", x)
    print("on stderr", x, file=sys.stderr)
    return x


def test_cli_shows_python_tasks(cluster):
    before = cluster.status()["total"]["finished"]
    ref = chatty.remote(7)
    assert loom.get(ref, timeout=T) == 7
    p = cluster._run("logs", ref.hex())          # loom logs REF: the task's stdout, then stderr
    assert p.stdout == "hello from chatty 7\non stderr 7\n"
    assert cluster.status()["total"]["finished"] > before   # loom status counts it
