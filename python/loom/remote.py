"""loom.remote — ``@loom.remote`` functions and actor classes.

A function or class travels by value: cloudpickled once per connection, put
in the object store, and passed by ref as argument 0 of every call (so it is
shipped once; executors cache it by content).  A call's arguments are the
pickled (args, kwargs) plus, as further arguments, the ObjectRefs among them,
which the runtime resolves before the task runs (python/README.md).
"""
from __future__ import annotations

import inspect
import threading
from typing import Any, Callable, Dict, Generic, Optional, TypeVar, Union

from . import _loom
from . import _runtime
from . import _runtime_env
from . import _wire

ObjectRef = _loom.ObjectRef
T = TypeVar("T")

_SCHED_OPTIONS = ("resources", "scheduling_strategy", "placement_group", "placement_group_bundle_index",
                  "placement_group_capture_child_tasks")
_TASK_OPTIONS = ("num_cpus", "num_gpus", "memory", "max_retries", "retry_exceptions", "name",
                 "num_returns", "runtime_env") + _SCHED_OPTIONS
_ACTOR_OPTIONS = ("num_cpus", "num_gpus", "memory", "name", "max_restarts", "max_task_retries",
                  "max_concurrency", "lifetime", "runtime_env") + _SCHED_OPTIONS


_ITEM_CPUS = 0.01   # a py_item task: a copy, no interpreter


class _Code:
    """A function or class and its ref in the current connection."""

    def __init__(self, obj: Any) -> None:
        self.obj = obj
        self._lock = threading.Lock()
        self._session = -1
        self._ref: Optional[ObjectRef] = None

    def ref(self) -> ObjectRef:
        _, session = _runtime._require()
        with self._lock:
            if self._session != session or self._ref is None:
                self._ref = _loom.put(_wire.dumps_code(self.obj))
                self._session = session
            return self._ref


def _call_args(head: list, args: tuple, kwargs: dict, num_returns: int = 1,
               runtime_env: Optional[Dict[str, Any]] = None, nested: Optional[list] = None) -> list:
    """A call's loom arguments: head, the pickled call, its top-level refs;
    refs nested deeper in the arguments are appended to ``nested`` (the
    caller keeps them alive with the call's result, see _keep)."""
    data, refs = _wire.encode_call(args, kwargs, lambda a: isinstance(a, ObjectRef), num_returns,
                                   _runtime._call_env(runtime_env), nested)
    return head + [data] + refs


def _keep(ref: Any, nested: list) -> Any:
    """Keep the nested refs of a call's arguments alive as long as its
    result's ref (a ref inside a value does not hold the object by itself)."""
    if nested:
        ref._keep(tuple(nested))
    return ref


def _num_returns(options: Dict[str, Any]) -> int:
    n = options.get("num_returns", 1)
    if n is None:
        return 1
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"num_returns must be an integer >= 1, got {n!r}")
    return n


def _check_options(given: Dict[str, Any], allowed: tuple, what: str) -> None:
    bad = sorted(set(given) - set(allowed))
    if bad:
        raise ValueError(f"{what}: unsupported option(s) {', '.join(bad)}; "
                         f"supported: {', '.join(allowed)}")
    _runtime_env.check(given.get("runtime_env"))
    if given.get("lifetime") not in (None, "detached", "non_detached"):
        raise ValueError("lifetime must be None, 'detached' or 'non_detached'")


def _sched(o: Dict[str, Any]) -> Optional[tuple]:
    """The placement a call's options ask for, as _loom's ``sched`` tuple
    (strategy, node, soft, placement group id, bundle, custom resources), or
    None for the default.  Takes Ray's ``scheduling_strategy`` ("DEFAULT",
    "SPREAD", NodeAffinitySchedulingStrategy,
    PlacementGroupSchedulingStrategy) and its older ``placement_group=`` /
    ``placement_group_bundle_index=`` options."""
    from .util.scheduling_strategies import NodeAffinitySchedulingStrategy, PlacementGroupSchedulingStrategy
    strategy, node, soft, pg, bundle = _loom.SCHED_DEFAULT, 0, False, None, _loom.ANY_BUNDLE
    s = o.get("scheduling_strategy")
    if s is None or s == "DEFAULT":
        pass
    elif s == "SPREAD":
        strategy = _loom.SCHED_SPREAD
    elif isinstance(s, NodeAffinitySchedulingStrategy):
        strategy, node, soft = _loom.SCHED_NODE, s.node, s.soft
    elif isinstance(s, PlacementGroupSchedulingStrategy):
        pg, bundle = s.placement_group.id, s.placement_group_bundle_index
    else:
        raise ValueError(f"scheduling_strategy {s!r}: \"DEFAULT\", \"SPREAD\", a "
                         "NodeAffinitySchedulingStrategy or a PlacementGroupSchedulingStrategy")
    if o.get("placement_group") not in (None, "default"):
        if pg is not None:
            raise ValueError("give either scheduling_strategy or placement_group, not both")
        pg = PlacementGroupSchedulingStrategy(o["placement_group"],
                                              o.get("placement_group_bundle_index", -1)).placement_group.id
        bundle = o.get("placement_group_bundle_index", -1)
    if bundle == -1:
        bundle = _loom.ANY_BUNDLE
    res = o.get("resources")
    if res is not None and (not isinstance(res, dict) or any(k in ("CPU", "GPU") for k in res)):
        raise ValueError("resources: a dict of custom resources {name: amount} "
                         "(CPUs and GPUs are num_cpus and num_gpus)")
    if strategy == _loom.SCHED_DEFAULT and pg is None and not res:
        return None
    return (strategy, node, soft, pg, bundle, res or None)


def _outputs(lib: bytes, ref: ObjectRef, n: int, name: str, nested: list) -> Any:
    """The refs a call returns: its own ref (n == 1), else n refs.  The
    runtime gives a task one output: output i is the C task py_item(ref, i),
    which copies element i of the result (a msgpack array of the encoded
    values) on the node that holds it."""
    if n == 1:
        return _keep(ref, nested)
    return [_keep(_loom.submit(lib, "py_item", [ref, _wire.encode(i)], name=f"{name}[{i}]",
                               num_cpus=_ITEM_CPUS), nested)
            for i in range(n)]


def _retries(n: Optional[int]) -> int:
    if n is None:
        return 0              # the runtime's default (3)
    if n == 0:
        return -1             # LOOM_NO_RETRY
    if n < 0:
        return 1 << 30        # Ray's -1: retry forever
    return int(n)


class RemoteFunction(Generic[T]):
    """A function decorated with ``@loom.remote``: call ``.remote(...)``."""

    def __init__(self, fn: Callable[..., T], options: Dict[str, Any], code: Optional[_Code] = None) -> None:
        _check_options(options, _TASK_OPTIONS, "remote function")
        _num_returns(options)
        self._sched = _sched(options)   # checked once here, sent with every call
        self._fn = fn
        self._options = dict(options)
        self._code = code or _Code(fn)
        self.__name__ = getattr(fn, "__name__", "remote_function")
        self.__doc__ = getattr(fn, "__doc__", None)

    def __reduce__(self):  # by value (the function and its options), without this process's refs
        return (RemoteFunction, (self._fn, self._options))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"remote function {self.__name__} cannot be called directly; "
                        f"use {self.__name__}.remote(...)")

    def options(self, **options: Any) -> "RemoteFunction[T]":
        """A copy with other options: num_cpus, num_gpus, memory (bytes),
        resources ({name: amount}), scheduling_strategy ("DEFAULT", "SPREAD",
        NodeAffinitySchedulingStrategy, PlacementGroupSchedulingStrategy),
        placement_group and placement_group_bundle_index, max_retries (after
        executor or node deaths; 0: never, -1: always), retry_exceptions,
        name, num_returns (N > 1: ``.remote()`` returns N refs, one per
        value of the sequence the function returns)."""
        merged = dict(self._options)
        merged.update(options)
        return RemoteFunction(self._fn, merged, self._code)

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        """Submit a call; returns the ObjectRef of its result at once (with
        num_returns=N > 1: a list of N ObjectRefs, one per value of the
        sequence the function returns)."""
        lib, _ = _runtime._require()
        o = self._options
        n = _num_returns(o)
        name = o.get("name") or self.__name__
        nested: list = []
        ref = _loom.submit(lib, "py_call", _call_args([self._code.ref()], args, kwargs, n,
                                                      o.get("runtime_env"), nested),
                           name=name,
                           num_cpus=float(o.get("num_cpus") or 0),
                           num_gpus=float(o.get("num_gpus") or 0),
                           memory=int(o.get("memory") or 0),
                           max_retries=_retries(o.get("max_retries")),
                           retry_exceptions=bool(o.get("retry_exceptions", False)),
                           sched=self._sched)
        return _outputs(lib, ref, n, name, nested)


class ActorMethod:
    """``handle.method``: call ``.remote(...)``; ``.options(num_returns=N)``
    (or ``@loom.method(num_returns=N)`` on the method) for N results."""

    def __init__(self, handle: "ActorHandle", name: str, num_returns: Optional[int] = None) -> None:
        self._handle = handle
        self._name = name
        self._num_returns = num_returns

    def options(self, **options: Any) -> "ActorMethod":
        """A copy with other options: num_returns."""
        _check_options(options, ("num_returns",), "actor method")
        return ActorMethod(self._handle, self._name, _num_returns(options))

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        """Call the method; calls from one caller run in the order made.
        Returns its ObjectRef (a list of N with num_returns=N > 1)."""
        lib, _ = _runtime._require()
        n = self._num_returns
        if n is None:
            n = (self._handle._method_returns or {}).get(self._name, 1)
        nested: list = []
        ref = _loom.actor_call(self._handle._actor_id, "call",
                               _call_args([self._name.encode("utf-8")], args, kwargs, n,
                                          self._handle._runtime_env, nested))
        return _outputs(lib, ref, n, self._name, nested)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"actor method {self._name} cannot be called directly; use .{self._name}.remote(...)")


def method(*, num_returns: int = 1) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``@loom.method(num_returns=N)`` on an actor class's method: its calls
    return N refs, one per value of the sequence it returns (as Ray's
    ``@ray.method``)."""
    n = _num_returns({"num_returns": num_returns})

    def mark(fn: Callable[..., Any]) -> Callable[..., Any]:
        fn.__loom_num_returns__ = n  # type: ignore[attr-defined]
        return fn
    return mark


class ActorHandle:
    """A handle to a running actor; ``handle.method.remote(...)`` calls it."""

    def __init__(self, actor_id: bytes, methods: Optional[set] = None, class_name: str = "Actor",
                 runtime_env: Optional[Dict[str, Any]] = None,
                 method_returns: Optional[Dict[str, int]] = None) -> None:
        self._actor_id = actor_id
        self._methods = methods
        self._class_name = class_name
        self._runtime_env = runtime_env   # the actor's own (.options), else the job's
        self._method_returns = method_returns or {}   # @loom.method(num_returns=N)
        self._nested: tuple = ()

    def __getattr__(self, name: str) -> ActorMethod:
        if name.startswith("__") or (self._methods is not None and name not in self._methods):
            raise AttributeError(f"actor {self._class_name} has no method {name!r}")
        return ActorMethod(self, name)

    def __repr__(self) -> str:
        return f"ActorHandle({self._class_name}, {self._actor_id.hex()})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ActorHandle) and other._actor_id == self._actor_id

    def __hash__(self) -> int:
        return hash(self._actor_id)

    def __reduce__(self):  # handles travel by id
        return (ActorHandle, (self._actor_id, self._methods, self._class_name, self._runtime_env,
                              self._method_returns))


def _public_methods(cls: type) -> set:
    return {n for n, _ in inspect.getmembers(cls, callable) if not n.startswith("__")}


def _method_returns(cls: type) -> Dict[str, int]:
    """The num_returns of the methods marked with @loom.method."""
    return {n: getattr(m, "__loom_num_returns__") for n, m in inspect.getmembers(cls, callable)
            if getattr(m, "__loom_num_returns__", 1) != 1}


class ActorClass(Generic[T]):
    """A class decorated with ``@loom.remote``: ``Cls.remote(...)`` starts an actor."""

    def __init__(self, cls: type, options: Dict[str, Any], code: Optional[_Code] = None) -> None:
        _check_options(options, _ACTOR_OPTIONS, "actor class")
        self._sched = _sched(options)
        self._cls = cls
        self._options = dict(options)
        self._code = code or _Code(cls)
        self.__name__ = cls.__name__
        self.__doc__ = cls.__doc__

    def __reduce__(self):  # by value (the class and its options), without this process's refs
        return (ActorClass, (self._cls, self._options))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"actor class {self.__name__} cannot be instantiated directly; "
                        f"use {self.__name__}.remote(...)")

    def options(self, **options: Any) -> "ActorClass[T]":
        """A copy with other options: name (register the actor under it),
        lifetime ("detached": outlives this driver), max_restarts,
        max_task_retries, max_concurrency, num_cpus, num_gpus, memory,
        resources, scheduling_strategy, placement_group and
        placement_group_bundle_index (as for remote functions)."""
        merged = dict(self._options)
        merged.update(options)
        return ActorClass(self._cls, merged, self._code)

    def remote(self, *args: Any, **kwargs: Any) -> ActorHandle:
        """Start an actor running ``cls(*args, **kwargs)``; returns its handle
        at once (calls made before the constructor finishes wait for it)."""
        lib, _ = _runtime._require()
        o = self._options
        restarts = o.get("max_restarts") or 0
        nested: list = []
        actor_id = _loom.actor_create(lib, "PyActor", _call_args([self._code.ref()], args, kwargs, 1,
                                                                 o.get("runtime_env"), nested),
                                      name=o.get("name"),
                                      detached=o.get("lifetime") == "detached",
                                      max_concurrency=int(o.get("max_concurrency") or 1),
                                      max_restarts=-1 if restarts < 0 else int(restarts),
                                      max_task_retries=int(o.get("max_task_retries") or 0),
                                      num_cpus=float(o.get("num_cpus") or 0),
                                      num_gpus=float(o.get("num_gpus") or 0),
                                      memory=int(o.get("memory") or 0),
                                      sched=self._sched)
        handle = ActorHandle(actor_id, _public_methods(self._cls), self.__name__, o.get("runtime_env"),
                             _method_returns(self._cls))
        handle._nested = tuple(nested)   # refs inside the constructor's arguments live with the handle
        return handle


def remote(*args: Any, **options: Any) -> Union[RemoteFunction, ActorClass, Callable[[Any], Any]]:
    """``@loom.remote`` or ``@loom.remote(num_cpus=..., ...)`` on a function
    (a remote function) or a class (an actor class)."""
    def wrap(obj: Any) -> Union[RemoteFunction, ActorClass]:
        if inspect.isclass(obj):
            return ActorClass(obj, options)
        if callable(obj):
            return RemoteFunction(obj, options)
        raise TypeError("@loom.remote applies to functions and classes")

    if len(args) == 1 and not options and callable(args[0]):
        return wrap(args[0])
    if args:
        raise TypeError("@loom.remote takes keyword options only")
    return wrap


def get_actor(name: str) -> ActorHandle:
    """The handle of the live actor registered under name (ValueError if none)."""
    _runtime._require()
    from .exceptions import ObjectLostError
    try:
        actor_id = _loom.actor_lookup(name)
    except ObjectLostError:
        raise ValueError(f"no actor named {name!r}") from None
    return ActorHandle(actor_id, None, name)


def kill(actor: ActorHandle, *, no_restart: bool = True) -> None:
    """Kill an actor: its process ends, unfinished calls fail with
    ActorDiedError, its name is released."""
    _runtime._require()
    if not isinstance(actor, ActorHandle):
        raise TypeError("loom.kill() wants an ActorHandle")
    _loom.actor_kill(actor._actor_id)


class CFunction:
    """A task function of a C task library (LOOM_TASK), callable from Python
    so that one graph mixes C and Python tasks: arguments travel as msgpack
    (or as refs, resolved before the C task runs), and its msgpack result
    reads back with loom.get."""

    def __init__(self, library: str, function: str, options: Optional[Dict[str, Any]] = None) -> None:
        self._library = library
        self._function = function
        self._options = dict(options or {})
        _check_options(self._options, _TASK_OPTIONS, "C function")
        if _num_returns(self._options) != 1:
            raise ValueError("num_returns > 1 is for Python functions; a C task has one result")
        self._lib: Optional[bytes] = None
        self._session = -1

    def options(self, **options: Any) -> "CFunction":
        """A copy with other options (as RemoteFunction.options)."""
        merged = dict(self._options)
        merged.update(options)
        return CFunction(self._library, self._function, merged)

    def remote(self, *args: Any) -> ObjectRef:
        """Submit a call with positional arguments; returns its ObjectRef."""
        _, session = _runtime._require()
        if self._lib is None or self._session != session:
            self._lib = _loom.library_load(self._library)
            self._session = session
        o = self._options
        loom_args = [a if isinstance(a, ObjectRef) else _wire.encode(a) for a in args]
        return _loom.submit(self._lib, self._function, loom_args, name=o.get("name"),
                            num_cpus=float(o.get("num_cpus") or 0),
                            num_gpus=float(o.get("num_gpus") or 0),
                            memory=int(o.get("memory") or 0),
                            max_retries=_retries(o.get("max_retries")),
                            retry_exceptions=bool(o.get("retry_exceptions", False)))


def c_function(library: str, function: str, **options: Any) -> CFunction:
    """The C task ``function`` of the task library at path ``library``."""
    return CFunction(library, function, options)
