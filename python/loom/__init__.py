"""loom — a distributed task runtime, from Python, with Ray's names.

    import loom
    loom.init()                      # a local cluster (or address="HOST:PORT")

    @loom.remote
    def square(x):
        return x * x

    print(loom.get([square.remote(i) for i in range(4)]))   # [0, 1, 4, 9]

The C runtime does the work: this package is a client of libloom (the _loom
extension), and Python tasks run in executors embedding CPython
(libloom_python.so).  See python/README.md.
"""
from __future__ import annotations

from . import exceptions
from . import kv
from . import util
from ._runtime import (ObjectRef, available_resources, cancel, cluster_resources, get, init, is_initialized, nodes, put,
                       shutdown, wait)
from .exceptions import (ActorDiedError, GetTimeoutError, InfeasibleError, LoomError, ObjectLostError,
                         TaskCancelledError, TaskError, WorkerCrashedError)
from .remote import ActorClass, ActorHandle, CFunction, RemoteFunction, c_function, get_actor, kill, method, remote

__version__ = "0.1.0"

__all__ = [
    "ActorClass", "ActorDiedError", "available_resources", "ActorHandle", "CFunction", "c_function", "GetTimeoutError", "InfeasibleError", "LoomError",
    "ObjectLostError", "ObjectRef", "RemoteFunction", "TaskCancelledError", "TaskError",
    "WorkerCrashedError", "cancel", "cluster_resources", "exceptions", "get", "get_actor", "init",
    "is_initialized", "kill", "kv", "method", "nodes", "put", "remote", "shutdown", "util", "wait",
]
