"""loom.exceptions — the errors loom raises, named as Ray names them.

libloom's error codes map to classes here (``from_code``); a Python task's
exception comes back as a ``TaskError`` that is also an instance of the
original exception's class where that class allows it, with the remote
traceback in its message.
"""
from __future__ import annotations

from typing import Dict, Optional, Type

from . import _loom
from . import _wire


class LoomError(Exception):
    """Base class of every error loom raises."""


class TaskError(LoomError):
    """A task (or actor method) raised an exception.

    ``cause`` is the original exception when it could be sent back (else
    None); ``traceback_str`` the remote traceback.  Raised as a subclass that
    also derives from the original exception's class, so ``except
    ValueError`` catches a remote ``ValueError``.
    """

    def __init__(self, message: str, cause: Optional[BaseException] = None,
                 traceback_str: str = "") -> None:
        Exception.__init__(self, message)
        self.cause = cause
        self.traceback_str = traceback_str

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""

    def __reduce__(self):  # type: ignore[override]
        return (TaskError, (str(self), self.cause, self.traceback_str))


class GetTimeoutError(LoomError, TimeoutError):
    """loom.get (or an actor's readiness) did not finish within its timeout."""


class TaskCancelledError(LoomError):
    """The task was cancelled (loom.cancel), or a task it depends on was."""


class WorkerCrashedError(LoomError):
    """The executor or node running the task died, and retries ran out."""


class ActorDiedError(LoomError):
    """The actor died, was killed, or its constructor failed."""


class ObjectLostError(LoomError):
    """The object is not known to the cluster (released or lost)."""


class InfeasibleError(LoomError):
    """No node of the cluster can ever satisfy the task's resource request."""


_dual_classes: Dict[type, type] = {}


def _dual_class(cls: type) -> Optional[type]:
    """TaskError(cls): a subclass of both, made once per class."""
    sub = _dual_classes.get(cls)
    if sub is None:
        try:
            sub = type(f"TaskError({cls.__name__})", (TaskError, cls),
                       {"__module__": __name__, "__init__": TaskError.__init__,
                        "__str__": TaskError.__str__, "__reduce__": TaskError.__reduce__})
        except TypeError:  # a class that cannot be subclassed with TaskError
            return None
        _dual_classes[cls] = sub
    return sub


def task_error(message: str) -> TaskError:
    """The TaskError for a failed task's message (see loom/_wire.py)."""
    text, cause = _wire.parse_error(message)
    if cause is None:
        return TaskError(text, None, text)
    header = f"{type(cause).__name__}: {cause} (raised in a loom task)\n\nRemote traceback:\n"
    sub = _dual_class(type(cause)) if not isinstance(cause, TaskError) else None
    if sub is not None:
        try:
            return sub(header + text, cause, text)
        except Exception:
            pass
    return TaskError(header + text, cause, text)


_CODE_CLASSES: Dict[int, Type[LoomError]] = {
    _loom.ETIMEOUT: GetTimeoutError,
    _loom.ECANCELLED: TaskCancelledError,
    _loom.EWORKER: WorkerCrashedError,
    _loom.ENODE: WorkerCrashedError,
    _loom.EACTOR: ActorDiedError,
    _loom.ENOTFOUND: ObjectLostError,
    _loom.EINFEASIBLE: InfeasibleError,
}


def from_code(code: int, message: str) -> BaseException:
    """The exception for a libloom error code and message."""
    if code in (_loom.ETASK, _loom.EDEP):
        return task_error(message)
    cls = _CODE_CLASSES.get(code, LoomError)
    return cls(message)


_loom.set_error_factory(from_code)
