"""tests/python/test_faults.py — fault tolerance under Python workloads, on a
real multi-process cluster (a head and node daemons started with the `loom`
CLI, tests/python/_cluster.py): killing executors and a daemon under a
Python workload loses no result, lost objects are rebuilt by lineage, actors
restart up to max_restarts (and then die with ActorDiedError), and a head
restart under a workload loses neither results nor a named actor.

Tasks note each attempt as an empty file in a marks directory named
``INDEX.PID.PPID.start`` / ``.done`` (PID: the executor, PPID: its daemon),
so the test knows what runs where, kills processes only while they run a
task, and checks afterwards that the killed attempts ran again elsewhere.
Every kill is SIGKILL (as a crash or the OOM killer would); every wait is
bounded.
"""
from __future__ import annotations

import os
import sys
import time

import cloudpickle
import numpy as np
import pytest

import loom

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _cluster import Cluster  # noqa: E402

cloudpickle.register_pickle_by_value(sys.modules[__name__])

T = 60       # seconds: the bound of every get in this file
POLL = 0.02  # seconds between two looks at an observable condition


# ---- tasks and actors ----------------------------------------------------------------

def _mark(marks, name):
    open(os.path.join(marks, name), "w").close()


@loom.remote
def work(i, marks, seconds=0.3):
    """An attempt of task i: marks its start, sleeps, sums with NumPy."""
    import numpy as np
    me = f"{i}.{os.getpid()}.{os.getppid()}"
    _mark(marks, me + ".start")
    time.sleep(seconds)
    value = int(np.arange(i * 1000, dtype=np.int64).sum())
    _mark(marks, me + ".done")
    return value


def work_value(i):
    n = i * 1000
    return n * (n - 1) // 2


@loom.remote
def produce(i, marks, seconds=0.3):
    """An object too big to travel inline (800 KB > LOOM_INLINE_MAX): it lives
    only in the store of the node that made it."""
    import numpy as np
    me = f"{i}.{os.getpid()}.{os.getppid()}"
    _mark(marks, me + ".start")
    time.sleep(seconds)
    _mark(marks, me + ".done")
    return np.arange(100_000, dtype=np.float64) * (i + 1)


@loom.remote
def double(arr, i, marks):
    me = f"{i}.{os.getpid()}.{os.getppid()}"
    _mark(marks, me + ".start")
    _mark(marks, me + ".done")
    return arr * 2


@loom.remote(num_returns=2)
def split_once(marker, n):
    """Two results; the first attempt notes its pid and waits to be killed."""
    if not os.path.exists(marker):
        with open(marker + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.rename(marker + ".tmp", marker)
        time.sleep(T)
    return list(range(n)), {"n": n, "pid": os.getpid()}


@loom.remote
def total(arr):
    return float(arr.sum())


@loom.remote
class Counter:
    def __init__(self, start=0):
        self.n = start

    def add(self, k=1):
        self.n += k
        return self.n

    def pid(self):
        return os.getpid()

    def add_slowly(self, k, seconds, marker, mark_done=False):
        """Marks its start, sleeps, adds; with mark_done, marks marker.done
        once the sum is made."""
        _mark(os.path.dirname(marker), os.path.basename(marker))
        time.sleep(seconds)
        self.n += k
        if mark_done:
            _mark(os.path.dirname(marker), os.path.basename(marker) + ".done")
        return self.n

    def hang_once(self, marker):
        """First call: note the actor's pid and wait to be killed; the call
        sent again to the restarted actor finds the note and returns."""
        if os.path.exists(marker):
            return ["retried", os.getpid(), self.n]
        with open(marker + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.rename(marker + ".tmp", marker)
        time.sleep(T)
        return ["not killed", os.getpid(), self.n]


# ---- helpers --------------------------------------------------------------------------

def attempts(marks):
    """{(index, pid, ppid): set of "start"/"done"} for every attempt noted."""
    out = {}
    for name in os.listdir(marks):
        i, pid, ppid, what = name.split(".")
        out.setdefault((int(i), int(pid), int(ppid)), set()).add(what)
    return out


def running(marks):
    """Attempts started and not done: (index, pid, ppid)."""
    return [k for k, v in attempts(marks).items() if v == {"start"}]


def wait_for(what, cond, timeout=30.0):
    """cond() polled until it is truthy (its value is returned), at most timeout s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(POLL)
    raise TimeoutError(f"not within {timeout} s: {what}")


def pid_gone(pid):
    return not os.path.exists(f"/proc/{pid}") or _zombie(pid)


def _zombie(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def parent(pid):
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def assert_rerun(marks, killed):
    """Every attempt that a kill cut short (started, never done) has a done
    attempt of the same task in another executor."""
    a = attempts(marks)
    cut = [k for k in a if a[k] == {"start"} and (k[1] in killed or k[2] in killed)]
    assert cut, f"no attempt was cut short by the kills of {sorted(killed)}"
    for i, pid, _ in cut:
        redone = [k for k in a if k[0] == i and k[1] != pid and "done" in a[k]]
        assert redone, f"task {i} killed in executor {pid} was not run again"
    return cut


def new_marks(tmp_path, name="marks"):
    d = tmp_path / name
    d.mkdir()
    return str(d)


@pytest.fixture
def connect():
    """loom.init to a cluster; loom.shutdown and cluster stop at the end."""
    clusters = []

    def _connect(c):
        clusters.append(c)
        loom.init(c.address, state_dir=c.state_dir)
        return c

    yield _connect
    if loom.is_initialized():
        loom.shutdown()
    for c in clusters:
        c.stop()


@pytest.fixture(scope="module")
def shared_cluster(tmp_path_factory):
    """3 daemons x 1 CPU for the tests that kill executors only (their
    cluster stays whole)."""
    c = Cluster(tmp_path_factory.mktemp("shared"), daemons=3, cpus=1)
    yield c
    c.stop()


@pytest.fixture
def shared(shared_cluster):
    """The shared cluster, connected for one test."""
    loom.init(shared_cluster.address, state_dir=shared_cluster.state_dir)
    yield shared_cluster
    loom.shutdown()


# ---- executors killed ----------------------------------------------------------------

def test_executors_killed_under_tasks(shared, tmp_path):
    """40 tasks on 3 x 1 CPU; 4 executors killed while they run a task (each a
    different task, so the default 3 retries are enough): every result right."""
    c, marks = shared, new_marks(tmp_path)
    refs = [work.remote(i, marks, 0.25) for i in range(40)]
    killed, killed_tasks = set(), set()
    deadline = time.monotonic() + 30
    while len(killed) < 4 and time.monotonic() < deadline:
        live = set(c.executor_pids())
        victims = [k for k in running(marks)
                   if k[1] in live and k[1] not in killed and k[0] not in killed_tasks]
        if not victims:
            time.sleep(POLL)
            continue
        i, pid, _ = victims[0]
        c.kill(pid)
        killed.add(pid)
        killed_tasks.add(i)
        # the next kill is of another executor: wait until this one is gone
        wait_for(f"executor {pid} gone", lambda: pid_gone(pid), 10)
    assert len(killed) == 4, f"only {len(killed)} executors killed while tasks ran"
    assert loom.get(refs, timeout=T) == [work_value(i) for i in range(40)]
    assert_rerun(marks, killed)
    # the daemons replaced their executors
    wait_for("each daemon has an executor again", lambda: all(
        c.executor_pids(d) for d in c.daemon_pids()), 10)
    assert loom.get(work.remote(7, marks, 0), timeout=T) == work_value(7)


def test_no_retry_task_fails_with_worker_crashed(shared, tmp_path):
    """max_retries=0: the executor killed under the task fails it with
    WorkerCrashedError, promptly (not a hang, not a retry)."""
    c, marks = shared, new_marks(tmp_path)
    ref = work.options(max_retries=0).remote(1, marks, T)
    (i, pid, _), = wait_for("the task started", lambda: running(marks))
    c.kill(pid)
    t = time.monotonic()
    with pytest.raises(loom.WorkerCrashedError):
        loom.get(ref, timeout=T)
    assert time.monotonic() - t < 15
    assert len(attempts(marks)) == 1, "a max_retries=0 task ran again"


def test_killed_task_with_two_returns(shared, tmp_path):
    """num_returns=2: the executor killed under the first attempt; the retry's
    two results both come back."""
    c, marker = shared, str(tmp_path / "split_once")
    first, second = split_once.remote(marker, 5)
    wait_for("the task started", lambda: os.path.exists(marker))
    pid = int(open(marker).read())
    c.kill(pid)
    assert loom.get(first, timeout=T) == [0, 1, 2, 3, 4]
    got = loom.get(second, timeout=T)
    assert got["n"] == 5 and got["pid"] != pid


# ---- actors --------------------------------------------------------------------------

def test_actor_restarts_then_dies(shared, tmp_path):
    """max_restarts=1, max_task_retries=1: the actor's process killed under a
    call; the call is sent again to the restarted actor (new process, state
    from __init__ again) and later calls work; killed a second time, it is
    out of restarts: calls fail with ActorDiedError."""
    c = shared
    a = Counter.options(max_restarts=1, max_task_retries=1).remote(100)
    assert loom.get(a.add.remote(5), timeout=T) == 105
    pid1 = loom.get(a.pid.remote(), timeout=T)
    assert pid1 in c.executor_pids()
    marker = str(tmp_path / "hang_once")
    inflight = a.hang_once.remote(marker)
    wait_for("the call started", lambda: os.path.exists(marker))
    assert open(marker).read() == str(pid1)
    c.kill(pid1)
    how, pid2, n = loom.get(inflight, timeout=T)
    assert how == "retried" and pid2 != pid1
    assert n == 100, "the restarted actor runs __init__ again with the same arguments"
    assert loom.get(a.add.remote(1), timeout=T) == 101
    assert loom.get(a.pid.remote(), timeout=T) == pid2
    c.kill(pid2)
    with pytest.raises(loom.ActorDiedError):
        loom.get(a.add.remote(1), timeout=T)


def test_actor_restarts_without_task_retries(shared, tmp_path):
    """max_restarts=1, max_task_retries=0: the call in flight when the process
    is killed fails with ActorDiedError; the actor restarts and later calls
    work."""
    c = shared
    a = Counter.options(max_restarts=1).remote(7)
    pid1 = loom.get(a.pid.remote(), timeout=T)
    marker = str(tmp_path / "hang_once")
    inflight = a.hang_once.remote(marker)
    wait_for("the call started", lambda: os.path.exists(marker))
    c.kill(pid1)
    with pytest.raises(loom.ActorDiedError):
        loom.get(inflight, timeout=T)
    assert loom.get(a.add.remote(1), timeout=T) == 8
    assert loom.get(a.pid.remote(), timeout=T) not in (pid1, None)
    loom.kill(a)


def test_actor_without_restarts_dies(shared):
    """max_restarts=0 (the default): its process killed, calls fail with
    ActorDiedError instead of hanging."""
    c = shared
    a = Counter.remote(0)
    assert loom.get(a.add.remote(2), timeout=T) == 2
    pid = loom.get(a.pid.remote(), timeout=T)
    c.kill(pid)
    t = time.monotonic()
    with pytest.raises(loom.ActorDiedError):
        loom.get(a.add.remote(1), timeout=T)
    assert time.monotonic() - t < 15


# ---- a daemon killed -----------------------------------------------------------------

def test_daemon_killed_under_tasks(tmp_path, connect):
    """3 daemons x 2 CPUs; a whole daemon SIGKILLed while it runs one of 30
    tasks, a max_retries=0 task and a restartable actor's call: it is declared
    dead (2 s heartbeat timeout) and its executors end with it; its tasks run
    again on the others and every result is right; the max_retries=0 task
    fails with WorkerCrashedError; the actor restarts on another node and the
    call in flight is sent to it again."""
    c = connect(Cluster(tmp_path, daemons=3, cpus=2))
    marks, lone = new_marks(tmp_path), new_marks(tmp_path, "lone")
    actor = Counter.options(max_restarts=1, max_task_retries=1).remote(100)
    actor_pid = loom.get(actor.pid.remote(), timeout=T)
    victim = parent(actor_pid)
    assert victim in c.daemon_pids()
    # 6 max_retries=0 tasks fill the 6 CPUs: two run on each daemon; all but
    # one of the victim's are cancelled, so the workload runs beside it
    hangs = [work.options(max_retries=0).remote(i, lone, T) for i in range(6)]
    wait_for("6 tasks running", lambda: len(running(lone)) == 6)
    on_victim = [i for i, _, ppid in running(lone) if ppid == victim]
    assert len(on_victim) == 2
    doomed = hangs[on_victim[0]]
    for i, ref in enumerate(hangs):
        if i != on_victim[0]:
            loom.cancel(ref)
    refs = [work.remote(i, marks, 0.3) for i in range(30)]
    marker = str(tmp_path / "hang_once")
    inflight = actor.hang_once.remote(marker)
    wait_for("the actor's call started", lambda: os.path.exists(marker))
    wait_for(f"a task runs on daemon {victim}",
             lambda: [k for k in running(marks) if k[2] == victim])
    executors = c.executor_pids(victim)
    assert actor_pid in executors
    c.kill(victim)
    wait_for("the killed daemon's executors end with it",
             lambda: all(pid_gone(p) for p in executors), 10)
    c.wait_nodes(2)
    assert loom.get(refs, timeout=T) == [work_value(i) for i in range(30)]
    cut = assert_rerun(marks, {victim})
    assert all(k[2] == victim for k in cut)
    with pytest.raises(loom.WorkerCrashedError):
        loom.get(doomed, timeout=T)
    assert sum(1 for k in attempts(lone) if k[0] == on_victim[0]) == 1, \
        "a max_retries=0 task ran again"
    how, pid2, n = loom.get(inflight, timeout=T)
    assert how == "retried" and n == 100
    assert parent(pid2) in c.daemon_pids() and parent(pid2) != victim
    assert loom.get(actor.add.remote(1), timeout=T) == 101
    # a new daemon brings the capacity back and takes work: 6 tasks for 6 CPUs
    before = set(c.daemon_pids())
    c.add_daemon()
    c.wait_nodes(3)
    newcomer, = set(c.daemon_pids()) - before
    after = new_marks(tmp_path, "after")
    assert loom.get([work.remote(i, after, 0.3) for i in range(6)], timeout=T) == \
        [work_value(i) for i in range(6)]
    assert any(k[2] == newcomer for k in attempts(after)), "the new daemon took no task"


# ---- lineage reconstruction ----------------------------------------------------------

def test_lost_objects_rebuilt_by_lineage(tmp_path, connect):
    """Objects (800 KB NumPy arrays, so in a node's store, not inline at the
    head) made on 3 nodes, and one made from another; the daemon holding the
    first is killed; get of the lost objects, and a task taking one, return
    the right values by running their tasks again (recursively for a chain)."""
    c = connect(Cluster(tmp_path, daemons=3, cpus=1))
    marks = new_marks(tmp_path)
    objs = [produce.remote(i, marks) for i in range(3)]
    chained = double.remote(objs[0], 10, marks)   # placed by data locality, near objs[0]
    ready, _ = loom.wait(objs + [chained], num_returns=4, timeout=T)
    assert len(ready) == 4
    made = attempts(marks)
    where = {i: ppid for (i, _, ppid), v in made.items() if "done" in v}
    assert len(made) == 4 and len(where) == 4
    victim = where[0]
    lost = sorted(i for i, ppid in where.items() if ppid == victim)
    c.kill(victim)
    c.wait_nodes(2)

    assert loom.get(total.remote(objs[0]), timeout=T) == float(np.arange(100_000).sum())
    for i in range(3):
        got = loom.get(objs[i], timeout=T)
        assert np.array_equal(got, np.arange(100_000, dtype=np.float64) * (i + 1))
    got = loom.get(chained, timeout=T)
    assert np.array_equal(got, np.arange(100_000, dtype=np.float64) * 2)

    runs = attempts(marks)
    for i in where:
        n = sum(1 for k in runs if k[0] == i)
        if i in lost:   # made again, on a live node
            assert n == 2, f"lost object {i} (node of daemon {victim}) made {n} times"
            assert any(k[0] == i and k[2] != victim and "done" in runs[k] for k in runs)
        else:           # not lost: not made again
            assert n == 1, f"object {i}, not lost, was made {n} times"


# ---- head restart --------------------------------------------------------------------

def test_head_restart_under_tasks_and_named_actor(tmp_path, connect):
    """The head killed and started again (same state dir and port) while 20
    tasks run: every result comes back; a named actor is found again by name
    after the restart, in the same process with its state (its daemon
    confirms it), and calls to it work."""
    c = connect(Cluster(tmp_path, daemons=2, cpus=1))
    marks = new_marks(tmp_path)
    a = Counter.options(name="survivor", max_restarts=1, max_task_retries=1).remote(10)
    assert loom.get(a.add.remote(1), timeout=T) == 11
    pid = loom.get(a.pid.remote(), timeout=T)
    refs = [work.remote(i, marks, 0.3) for i in range(20)]
    marker = str(tmp_path / "add_slowly")
    slow = a.add_slowly.remote(100, 1.0, marker)   # running in the actor across the restart
    wait_for("tasks and the actor's call run",
             lambda: len(running(marks)) >= 2 and os.path.exists(marker))
    c.restart_head()
    assert loom.get(refs, timeout=T) == [work_value(i) for i in range(20)]
    assert loom.get(slow, timeout=T) == 111
    c.wait_nodes(2)
    b = loom.get_actor("survivor")
    assert loom.get(b.add.remote(1), timeout=T) == 112, "the call across the restart ran once"
    assert loom.get(b.pid.remote(), timeout=T) == pid
    assert loom.get(a.add.remote(1), timeout=T) == 113   # the old handle works too
    # work submitted after the restart runs
    assert loom.get([work.remote(i, marks, 0) for i in range(4)], timeout=T) == \
        [work_value(i) for i in range(4)]
    loom.kill(a)


def test_call_finished_while_the_head_is_down_runs_once(tmp_path, connect):
    """An actor call that finishes while the head is down: its daemon's report
    reaches no head (or a restarted one that does not know the daemon yet
    and drops it), so the daemon sends its recent reports again when it
    joins the new head.  The call's result comes back and it ran once (an
    actor call that ran twice would add twice)."""
    c = connect(Cluster(tmp_path, daemons=1, cpus=1))
    a = Counter.options(max_restarts=1, max_task_retries=1).remote(10)
    assert loom.get(a.add.remote(1), timeout=T) == 11
    marker = str(tmp_path / "slow")
    slow = a.add_slowly.remote(100, 1.0, marker, mark_done=True)
    wait_for("the call runs", lambda: os.path.exists(marker))
    c.kill_head()
    # the call finishes while no head runs: its report goes nowhere
    wait_for("the call finishes", lambda: os.path.exists(marker + ".done"))
    c.start_head()
    assert loom.get(slow, timeout=T) == 111
    assert loom.get(a.add.remote(1), timeout=T) == 112, "the call across the restart ran once"
