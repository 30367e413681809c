"""tests/python/test_basic.py — `import loom` against a real local cluster.

One local cluster (2 CPUs, its own state dir) for the module, stopped at the
end.  Functions of this module travel by value (cloudpickle), as a user's
would through working_dir.  Every wait is bounded.
"""
from __future__ import annotations

import os
import signal
import sys
import time

import cloudpickle
import pytest

import loom

cloudpickle.register_pickle_by_value(sys.modules[__name__])

T = 30  # seconds: the bound of every get in this file
EXAMPLES_LIB = os.environ.get("LOOM_EXAMPLES_LIB", "")


@pytest.fixture(scope="module", autouse=True)
def cluster(tmp_path_factory):
    state = tmp_path_factory.mktemp("loom") / "state"
    loom.init("local", num_cpus=2, state_dir=str(state))
    yield
    loom.shutdown()


class Boom(Exception):
    """An exception class of the user's."""


@loom.remote
def square(x):
    return x * x


@loom.remote
def add(a, b=0):
    return a + b


@loom.remote
def describe(value):
    return {"type": type(value).__name__, "value": value}


@loom.remote
def pid_and_count():
    import builtins
    builtins._loom_test_calls = getattr(builtins, "_loom_test_calls", 0) + 1
    return [os.getpid(), builtins._loom_test_calls]


@loom.remote
def sleep_then(seconds, value=None):
    time.sleep(seconds)
    return value


def inner_failure(n):
    raise Boom(f"bad input {n}")


@loom.remote
def fails(n):
    inner_failure(n)


@loom.remote
def raises_key_error():
    return {}["missing"]


@loom.remote(max_retries=2)
def crash_once(marker):
    """First run: note the executor's pid and wait to be killed; a retry
    finds the note and returns."""
    if os.path.exists(marker):
        return ["retried", os.getpid()]
    with open(marker + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.rename(marker + ".tmp", marker)
    time.sleep(60)
    return ["not killed", os.getpid()]


@loom.remote
class Counter:
    def __init__(self, start=0):
        self.n = start
        self.log = []

    def add(self, k=1):
        self.n += k
        self.log.append(k)
        return self.n

    def history(self):
        return self.log

    def fail(self):
        raise ValueError("actor method failed")


def test_remote_function_and_kwargs():
    assert loom.get(square.remote(7), timeout=T) == 49
    assert loom.get(add.remote(2, b=5), timeout=T) == 7
    assert loom.get([square.remote(i) for i in range(10)], timeout=T) == [i * i for i in range(10)]


def test_values_round_trip():
    values = [None, True, 3, -2**63, 2**64 - 1, 2**70, 1.5, "héllo", b"\x00\xc1bytes",
              [1, [2, [3, {"k": [None, 4.5]}]]], {"a": {"b": [b"x", "y"]}}, (1, 2), {1, 2},
              {(1, 2): "tuple key"}, []]
    for v in values:
        assert loom.get(loom.put(v), timeout=T) == v
        got = loom.get(describe.remote(v), timeout=T)
        assert got == {"type": type(v).__name__, "value": v}


def test_ref_args_resolved():
    a = square.remote(3)
    b = loom.put(10)
    c = add.remote(a, b=b)
    d = add.remote(c, square.remote(c))
    assert loom.get(c, timeout=T) == 19
    assert loom.get(d, timeout=T) == 19 + 361


def test_wait_and_timeouts():
    fast = [square.remote(i) for i in range(3)]
    slow = sleep_then.remote(20, "late")
    ready, not_ready = loom.wait(fast + [slow], num_returns=3, timeout=T)
    assert sorted(loom.get(ready, timeout=T)) == [0, 1, 4]
    assert not_ready == [slow]
    ready, not_ready = loom.wait([slow], num_returns=1, timeout=0.2)
    assert ready == [] and not_ready == [slow]
    t = time.monotonic()
    with pytest.raises(loom.GetTimeoutError):
        loom.get(slow, timeout=0.3)
    assert time.monotonic() - t < 5
    with pytest.raises(TimeoutError):  # Ray's GetTimeoutError is a TimeoutError too
        loom.get(slow, timeout=0)
    loom.cancel(slow)
    with pytest.raises(loom.TaskCancelledError):
        loom.get(slow, timeout=T)


def test_exception_carries_class_and_remote_traceback():
    with pytest.raises(Boom) as info:
        loom.get(fails.remote(42), timeout=T)
    err = info.value
    assert isinstance(err, loom.TaskError)
    assert isinstance(err.cause, Boom) and str(err.cause) == "bad input 42"
    assert "inner_failure" in str(err) and "bad input 42" in str(err)
    with pytest.raises(KeyError):
        loom.get(raises_key_error.remote(), timeout=T)
    # a task depending on a failed one fails with the same error
    with pytest.raises(Boom):
        loom.get(add.remote(fails.remote(1), 1), timeout=T)


def test_actor_state_order_and_errors():
    c = Counter.remote(10)
    refs = [c.add.remote(k) for k in range(1, 21)]
    assert loom.get(refs, timeout=T) == [10 + k * (k + 1) // 2 for k in range(1, 21)]
    assert loom.get(c.history.remote(), timeout=T) == list(range(1, 21))
    with pytest.raises(ValueError, match="actor method failed"):
        loom.get(c.fail.remote(), timeout=T)
    assert loom.get(c.add.remote(0), timeout=T) == 220  # the failure kept the state
    with pytest.raises(AttributeError):
        c.no_such_method


def test_named_actor_and_kill():
    c = Counter.options(name="py-counter").remote(5)
    assert loom.get(c.add.remote(1), timeout=T) == 6
    same = loom.get_actor("py-counter")
    assert loom.get(same.add.remote(2), timeout=T) == 8
    loom.kill(c)
    with pytest.raises(loom.ActorDiedError):
        loom.get(c.add.remote(1), timeout=T)
    with pytest.raises(ValueError):
        loom.get_actor("py-counter")


def test_kv():
    loom.kv.put("py/key", b"value")
    assert loom.kv.get("py/key") == b"value"
    loom.kv.delete("py/key")
    assert loom.kv.get("py/key") is None


def test_cluster_state():
    assert loom.is_initialized()
    assert loom.cluster_resources()["CPU"] == 2.0
    nodes = loom.nodes()
    assert len(nodes) == 1 and nodes[0]["Alive"]


@pytest.mark.skipif(not os.path.exists(EXAMPLES_LIB), reason="LOOM_EXAMPLES_LIB not built")
def test_mixed_c_and_python_graph():
    c_add = loom.c_function(EXAMPLES_LIB, "add")
    five = c_add.remote(2, 3)                 # C task, msgpack result
    assert loom.get(describe.remote(five), timeout=T) == {"type": "int", "value": 5}
    seven = add.remote(five, 2)               # Python task reading the C result
    assert loom.get(c_add.remote(seven, 1), timeout=T) == 8   # C task reading Python's
    raw = loom.c_function(EXAMPLES_LIB, "noop").remote()      # raw bytes, not msgpack
    assert loom.get(raw, timeout=T) == b"ok"


def test_executor_stays_warm():
    loom.get([pid_and_count.remote() for _ in range(4)], timeout=T)  # interpreters started
    n = 200
    t = time.monotonic()
    results = loom.get([pid_and_count.remote() for _ in range(n)], timeout=60)
    elapsed = time.monotonic() - t
    pids = {pid for pid, _ in results}
    rate = n / elapsed
    print(f"\n{n} Python tasks in {elapsed:.2f} s ({rate:.0f} tasks/s) on {len(pids)} executor(s)")
    # a node of 2 CPUs runs them on a couple of executors, each of which has
    # run many calls in the same interpreter (its module state survives)
    assert len(pids) <= 4
    assert max(count for _, count in results) >= n // 4
    # an interpreter start (with cloudpickle) costs tens of ms: per-task
    # starts could not reach this rate on two CPUs
    assert rate > 40, f"{rate:.1f} tasks/s"


def test_retry_after_executor_killed(tmp_path):
    marker = str(tmp_path / "pid")
    ref = crash_once.remote(marker)
    deadline = time.monotonic() + T
    while not os.path.exists(marker):
        assert time.monotonic() < deadline, "the task did not start"
        time.sleep(0.05)
    pid = int(open(marker).read())
    os.kill(pid, signal.SIGKILL)
    status, new_pid = loom.get(ref, timeout=T)
    assert status == "retried" and new_pid != pid


@loom.remote
class Gate:
    """Two calls must overlap: only a concurrent actor lets wait() return."""

    def __init__(self):
        import threading
        self.event = threading.Event()

    def wait(self):
        return self.event.wait(20)

    def open(self):
        self.event.set()
        return True


@loom.remote
def deep_failure(n, message):
    def recurse(k):
        if k == 0:
            raise RuntimeError(message)
        return recurse(k - 1)
    recurse(n)


def test_concurrent_actor_calls():
    g = Gate.options(max_concurrency=2).remote()
    waiting = g.wait.remote()
    assert loom.get(g.open.remote(), timeout=T) is True
    assert loom.get(waiting, timeout=T) is True


def test_long_traceback_is_bounded():
    with pytest.raises(RuntimeError) as info:       # the class survives a deep stack
        loom.get(deep_failure.remote(200, "deep"), timeout=T)
    text = str(info.value)
    assert "in recurse" in text and "RuntimeError: deep" in text and len(text) < 2100
    with pytest.raises(loom.TaskError) as info:     # too big to send back: the text only
        loom.get(deep_failure.remote(3, "x" * 5000), timeout=T)
    assert not isinstance(info.value, RuntimeError)
    assert "in recurse" in str(info.value) and "RuntimeError: xxx" in str(info.value)
