"""tests/python/ray_docs_program.py — a Ray program in the shape of Ray's own
documentation (the Ray Core walkthrough: tasks, actors, objects, ray.wait,
timeouts, errors, named actors, resources, placement groups), with the one
change a Ray user makes: ``import ray`` became ``import loom as ray`` (and
``ray.util``/``ray.exceptions`` imports the same).  It calls ``ray.init()``
with no argument and so joins the cluster named by $LOOM_ADDRESS, as a Ray
program joins $RAY_ADDRESS.  test_ray_port.py runs it on a 3-daemon cluster.

Each section prints what Ray's docs say it prints and asserts it; the last
line is "RAY PORT OK".
"""
import time

import numpy as np

import loom as ray
from loom.exceptions import GetTimeoutError
from loom.util.placement_group import placement_group, placement_group_table, remove_placement_group
from loom.util.scheduling_strategies import PlacementGroupSchedulingStrategy

ray.init()

# ---- tasks --------------------------------------------------------------------------


@ray.remote
def f(x):
    return x * x


futures = [f.remote(i) for i in range(4)]
print(ray.get(futures))  # [0, 1, 4, 9]
assert ray.get(futures) == [0, 1, 4, 9]


@ray.remote
def my_function():
    return 1


@ray.remote
def function_with_an_argument(value):
    return value + 1


obj_ref1 = my_function.remote()
assert ray.get(obj_ref1) == 1
# an object ref as an argument: the task runs after my_function, with its value
obj_ref2 = function_with_an_argument.remote(obj_ref1)
assert ray.get(obj_ref2) == 2

# ---- actors -------------------------------------------------------------------------


@ray.remote
class Counter(object):
    def __init__(self):
        self.n = 0

    def increment(self):
        self.n += 1

    def read(self):
        return self.n


counters = [Counter.remote() for i in range(4)]
[c.increment.remote() for c in counters]
futures = [c.read.remote() for c in counters]
print(ray.get(futures))  # [1, 1, 1, 1]
assert ray.get(futures) == [1, 1, 1, 1]

# an actor handle passed to tasks


@ray.remote
def bump(counter):
    for _ in range(10):
        counter.increment.remote()


c = Counter.remote()
ray.get([bump.remote(c) for _ in range(3)])
time.sleep(0)  # the increments are sent by the tasks; read sees them in the actor's order
deadline = time.time() + 30
while ray.get(c.read.remote()) < 30 and time.time() < deadline:
    time.sleep(0.05)
assert ray.get(c.read.remote()) == 30

# a named, detached actor, found by name and killed
named = Counter.options(name="some_actor", lifetime="detached").remote()
ray.get(named.increment.remote())
same = ray.get_actor("some_actor")
assert ray.get(same.read.remote()) == 1
ray.kill(named)

# ---- objects ------------------------------------------------------------------------

y = 1
object_ref = ray.put(y)
assert ray.get(object_ref) == 1
assert ray.get([ray.put(i) for i in range(3)]) == [0, 1, 2]

a = np.arange(1_000_000, dtype=np.float64)
ref = ray.put(a)
back = ray.get(ref)
assert np.array_equal(back, a)


@ray.remote
def array_sum(arr):
    return float(arr.sum())


assert ray.get(array_sum.remote(ref)) == float(a.sum())

# ---- ray.wait and timeouts ----------------------------------------------------------


@ray.remote
def sleepy(seconds):
    time.sleep(seconds)
    return seconds


object_refs = [sleepy.remote(0.1), sleepy.remote(5)]
ready_refs, remaining_refs = ray.wait(object_refs, num_returns=1, timeout=None)
assert len(ready_refs) == 1 and len(remaining_refs) == 1
assert ray.get(ready_refs[0]) == 0.1


@ray.remote
def long_running_function():
    time.sleep(8)


obj_ref = long_running_function.remote()
try:
    ray.get(obj_ref, timeout=1)
    raise AssertionError("get should have timed out")
except GetTimeoutError:  # noqa: PERF203
    print("`get` timed out.")
ray.cancel(obj_ref, force=True)

# ---- errors -------------------------------------------------------------------------


class MyError(Exception):
    pass


@ray.remote
def broken():
    raise MyError("the remote side failed")


try:
    ray.get(broken.remote())
    raise AssertionError("broken() should raise")
except MyError as e:  # the user's own class, as Ray's RayTaskError also is
    assert "the remote side failed" in str(e)
    assert "in broken" in str(e), str(e)   # the remote traceback
    print("remote error:", type(e).__name__)

# ---- resources ----------------------------------------------------------------------

print(ray.cluster_resources())
assert ray.cluster_resources()["CPU"] == 6.0
assert ray.cluster_resources().get("special_hardware") == 1.0


@ray.remote(num_cpus=2)
def two_cpus():
    return "ok"


@ray.remote(resources={"special_hardware": 1})
def special():
    import os
    return os.environ.get("LOOM_NODE_ID")


assert ray.get(two_cpus.remote()) == "ok"
special_nodes = {ray.get(special.remote()) for _ in range(3)}
assert len(special_nodes) == 1, special_nodes   # only one node has it

# ---- placement groups ---------------------------------------------------------------

# one bundle per node: reserve 1 CPU on each of the three
pg = placement_group([{"CPU": 1}] * 3, strategy="STRICT_SPREAD")
ray.get(pg.ready(), timeout=10)
ready, unready = ray.wait([pg.ready()], timeout=10)
assert len(ready) == 1
table = placement_group_table(pg)
print(table["state"], table["strategy"])
assert table["state"] == "CREATED"
assert len(set(table["bundles_to_node_id"].values())) == 3


@ray.remote(num_cpus=1)
class Actor:
    def __init__(self):
        pass

    def ready(self):
        import os
        return os.environ.get("LOOM_NODE_ID")


actors = [Actor.options(scheduling_strategy=PlacementGroupSchedulingStrategy(
    placement_group=pg, placement_group_bundle_index=i)).remote() for i in range(3)]
actor_nodes = ray.get([a.ready.remote() for a in actors], timeout=30)
print("actors on nodes", sorted(actor_nodes))
assert len(set(actor_nodes)) == 3   # STRICT_SPREAD: each on its own node
remove_placement_group(pg)

ray.shutdown()
print("RAY PORT OK")
