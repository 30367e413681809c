"""loom._runtime — connecting, objects and cluster state (loom.init, loom.get, ...).

One connection per process, held by the _loom extension.  The task library
that runs Python (libloom_python.so) is uploaded once per connection and its
id kept here, as are the refs of functions and classes already shipped (see
remote.py).
"""
from __future__ import annotations

import atexit
import json
import os
import sys
import threading
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from . import _loom
from . import _runtime_env
from . import _wire
from .exceptions import GetTimeoutError

ObjectRef = _loom.ObjectRef
_loom.set_ref_hook(_wire.note_ref)   # refs pickled inside values: kept with the value's ref

_lock = threading.Lock()
_pylib: Optional[bytes] = None           # id of libloom_python.so in this session
_session = 0                             # counts loom.init calls
_job_env: Optional[Dict[str, Any]] = None  # loom.init's runtime_env
_atexit_set = False


def _timeout_ms(timeout: Optional[float]) -> int:
    if timeout is None:
        return -1
    if timeout < 0:
        raise ValueError("timeout must be None or >= 0")
    return int(timeout * 1000)


def _pytask_path() -> str:
    env = os.environ.get("LOOM_PYTHON_LIB")
    if env:
        return env
    for path in _loom.PYTASK_PATHS:
        if os.path.exists(path):
            return path
    raise FileNotFoundError("libloom_python.so not found (set LOOM_PYTHON_LIB); looked in "
                            + ", ".join(_loom.PYTASK_PATHS))


def init(address: Optional[str] = None, *, num_cpus: Optional[int] = None,
         num_gpus: Optional[int] = None,
         num_nodes: Optional[int] = None, object_store_memory: Optional[int] = None,
         state_dir: Optional[str] = None, runtime_env: Optional[Dict[str, Any]] = None,
         ignore_reinit_error: bool = False) -> None:
    """Connect this process to a loom cluster.

    address: ``"HOST:PORT"`` of a head; ``"local"`` to start a cluster on this
    machine (stopped by :func:`shutdown` or at exit); ``"auto"`` for what a
    C driver does with no address (``$LOOM_ADDRESS``, else a running ``loom
    start --head`` in the default state dir, else a local cluster); None:
    ``$LOOM_ADDRESS`` if set, else a local cluster.
    num_cpus, num_gpus (GPUs each node reports; default: those found on
    the machine), num_nodes, object_store_memory (bytes per node) and
    state_dir (where a local cluster keeps its files) apply to a local
    cluster.
    runtime_env: ``{"working_dir": DIR, "env_vars": {NAME: VALUE},
    "py_modules": [PATH or module, ...]}`` for every Python task and actor
    of this driver: DIR (at most 100 MiB of files) is shipped to the nodes,
    first on sys.path and the current directory of each call; py_modules
    (package directories, .py files, imported modules) are shipped and put
    on sys.path; env_vars are set for each call.
    """
    global _pylib, _session, _atexit_set, _job_env
    with _lock:
        if _loom.is_connected():
            if ignore_reinit_error:
                return
            raise RuntimeError("loom.init() was already called (call loom.shutdown() first)")
        _runtime_env.check(runtime_env)
        if address is None:
            address = os.environ.get("LOOM_ADDRESS") or "local"
        elif address == "auto":
            address = None
        _loom.connect(address=address, state_dir=state_dir, num_cpus=num_cpus or 0,
                      num_nodes=num_nodes or 0, store_bytes=object_store_memory or 0,
                      num_gpus=-1 if num_gpus is None else int(num_gpus))
        try:
            _pylib = _loom.library_load(_pytask_path())
        except BaseException:
            _loom.disconnect()
            raise
        _session += 1
        _job_env = runtime_env
        if not _atexit_set:
            atexit.register(shutdown)
            _atexit_set = True


def shutdown() -> None:
    """Disconnect; a local cluster started by :func:`init` is stopped."""
    global _pylib
    with _lock:
        _pylib = None
        _loom.disconnect()


def is_initialized() -> bool:
    """Whether :func:`init` has connected this process (inside a task: True,
    the task's own connection is used)."""
    return bool(_loom.is_connected()) or "_loom_wire" in sys.modules


def _call_env(runtime_env: Optional[Dict[str, Any]] = None) -> Optional[tuple]:
    """What a call carries for its runtime_env (an option's, else the
    job's): see _runtime_env.resolve."""
    _, session = _require()
    env = runtime_env if runtime_env is not None else _job_env
    return _runtime_env.resolve(env, session, _loom.put)


def _require() -> Tuple[bytes, int]:
    lib = _pylib
    if lib is None:
        lib = _attach_task()
    return lib, _session


def _attach_task() -> bytes:
    """Inside a Python task or actor (run by libloom_python.so, which
    registers the module _loom_wire): connect to the cluster through the
    task's own client, as a Ray task calls ray.get or f.remote without
    ray.init.  Elsewhere: loom is not initialized."""
    global _pylib, _session
    wire = sys.modules.get("_loom_wire")
    capsule = getattr(wire, "_task_client", None) if wire is not None else None
    if capsule is None:
        raise RuntimeError("loom is not initialized (call loom.init())")
    with _lock:
        if _pylib is None:
            _loom.attach_task(capsule)
            _pylib = _loom.library_load(_pytask_path())
            _session += 1
        return _pylib


# ---- objects -----------------------------------------------------------------

def put(value: Any) -> ObjectRef:
    """Store a value in the cluster; returns its ObjectRef.  ObjectRefs
    inside the value stay refs (``loom.get`` of the value gives them back
    as refs) and their objects live at least as long as the returned ref."""
    _require()
    if isinstance(value, ObjectRef):
        raise TypeError("loom.put() of an ObjectRef is not supported")
    nested: list = []
    parts = _wire.encode_parts(value, nested)
    try:
        ref = _loom.put(parts[0]) if len(parts) == 1 else _loom.put_parts(parts)
    finally:
        _wire._release(parts)
    if nested:
        ref._keep(tuple(nested))
    return ref


def _get_one(ref: ObjectRef, deadline: Optional[float]) -> Any:
    import time
    if deadline is None:
        ms = -1
    else:
        ms = max(0, int((deadline - time.monotonic()) * 1000))
    return _wire.decode(_loom.get(ref, ms))


def get(refs: Union[ObjectRef, Sequence[ObjectRef]], *, timeout: Optional[float] = None) -> Any:
    """The value of a ref, or the list of values of a list of refs.

    Blocks until they are ready, at most ``timeout`` seconds (None: no limit)
    before raising GetTimeoutError.  A failed task raises its TaskError (an
    instance of the remote exception's class as well).
    """
    import time
    _require()
    deadline = None if timeout is None else time.monotonic() + _timeout_ms(timeout) / 1000.0
    if isinstance(refs, ObjectRef):
        return _get_one(refs, deadline)
    if not isinstance(refs, (list, tuple)):
        raise TypeError(f"loom.get() wants an ObjectRef or a list of them, got {type(refs).__name__}")
    return [_get_one(r, deadline) for r in refs]


def wait(refs: Sequence[ObjectRef], *, num_returns: int = 1,
         timeout: Optional[float] = None) -> Tuple[List[ObjectRef], List[ObjectRef]]:
    """Wait until num_returns of refs are ready (done or failed) or timeout
    seconds pass; returns (ready, not_ready), each in the order of refs."""
    _require()
    refs = list(refs)
    if len(set(refs)) != len(refs):
        raise ValueError("loom.wait() got the same ObjectRef twice")
    if not 0 <= num_returns <= len(refs):
        raise ValueError("num_returns must be between 0 and len(refs)")
    if not refs:
        return [], []
    flags = _loom.wait(refs, num_returns, _timeout_ms(timeout))
    ready = [r for r, f in zip(refs, flags) if f]
    ready = ready[:num_returns] if len(ready) > num_returns else ready
    taken = set(ready)
    return ready, [r for r in refs if r not in taken]


def cancel(ref: ObjectRef, *, force: bool = False) -> None:
    """Cancel the task that produces ref (queued: dropped; running: killed).
    loom.get of it then raises TaskCancelledError."""
    _require()
    _loom.cancel(ref)


# ---- cluster state -------------------------------------------------------------

def _status() -> Dict[str, Any]:
    _require()
    return json.loads(_loom.status_json())


def nodes() -> List[Dict[str, Any]]:
    """The cluster's nodes, as ``loom status`` shows them, with Ray's keys
    ``NodeID``, ``Alive`` and ``Resources`` added."""
    out = []
    for n in _status().get("nodes", []):
        n = dict(n)
        n["NodeID"] = str(n.get("id"))
        n["Alive"] = n.get("state") in ("alive", "draining", "drained")
        n["Resources"] = _node_resources(n)
        out.append(n)
    return out


def _node_resources(n: Dict[str, Any]) -> Dict[str, float]:
    res = {"CPU": float(n.get("cpus", 0)), "memory": float(n.get("memory", 0)),
           "object_store_memory": float(n.get("store_capacity", 0))}
    if n.get("gpus"):
        res["GPU"] = float(n["gpus"])
    for name, amounts in (n.get("resources") or {}).items():
        res[name] = float(amounts[0] if isinstance(amounts, list) else amounts)
    return res


def cluster_resources() -> Dict[str, float]:
    """Total resources of the live nodes: ``{"CPU": ..., "GPU": ..., ...}``."""
    total: Dict[str, float] = {}
    for n in nodes():
        if n["state"] != "alive":
            continue
        for k, v in n["Resources"].items():
            total[k] = total.get(k, 0.0) + v
    return total


def available_resources() -> Dict[str, float]:
    """What the live nodes have free now (total less what running work
    holds): ``{"CPU": ..., "GPU": ..., "memory": ..., ...}``."""
    free: Dict[str, float] = {}

    def add(k: str, v: float) -> None:
        free[k] = free.get(k, 0.0) + max(0.0, v)

    for n in _status().get("nodes", []):
        if n.get("state") != "alive":
            continue
        add("CPU", float(n.get("cpus", 0)) - float(n.get("cpus_used", 0)))
        add("memory", float(n.get("memory", 0)) - float(n.get("memory_used", 0)))
        add("object_store_memory", float(n.get("store_capacity", 0)) - float(n.get("store_used", 0)))
        if n.get("gpus"):
            add("GPU", float(n["gpus"]) - float(n.get("gpus_used", 0)))
        for name, amounts in (n.get("resources") or {}).items():
            if isinstance(amounts, list):
                add(name, float(amounts[0]) - float(amounts[1] if len(amounts) > 1 else 0))
            else:
                add(name, float(amounts))
    return free
