"""loom._wire — the bytes of Python values, calls and errors, on both sides.

This module is shared by the driver (imported as ``loom._wire``) and by the
executors' embedded interpreter (libloom_python.so compiles this same source
into a standalone module ``_loom_wire``, with the C msgpack helpers injected
as ``_mp_pack``/``_mp_unpack``), so it imports nothing from the ``loom``
package and only the standard library and cloudpickle.

Values (python/README.md, "Wire format"):
  * msgpack, no header, when the value is made only of None, bool, int
    (64-bit), float, str, bytes, lists and dicts of those: C tasks read it
    with loom/value.h;
  * ``0xC1`` + a pickle protocol 5 stream otherwise.  0xC1 is the one byte
    msgpack never uses, so no msgpack value starts with it;
  * bytes that are neither (a C task's raw result) read back as ``bytes``,
    and an empty value as None.

A call is pickled ``(args, kwargs, slots)``: each slot ``(0, i)`` or
``(1, key)`` names a top-level argument that was an ObjectRef, sent as loom
argument ``2 + n`` (the n-th slot) so the runtime resolves it first.  A
call with num_returns > 1 has a fourth element, num_returns: its result is a
msgpack array of that many bins (encode_returns), split by the C task
``py_item``.

A failed Python task's message is the remote traceback (its tail, bounded)
and, on a last line, ``PYEXC_MARK`` + base64 of the pickled exception when it
pickles into at most ``EXC_B64_MAX`` characters.
"""
from __future__ import annotations

import base64
import hashlib
import pickle
import struct
import sys
import traceback
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

try:
    import cloudpickle as _cloudpickle
except ImportError:  # pragma: no cover - Debian's python3-cloudpickle is a dependency
    _cloudpickle = None

if "_mp_pack" not in globals():  # the driver: the helpers live in the extension
    from ._loom import mp_pack as _mp_pack, mp_unpack as _mp_unpack  # type: ignore

PICKLE_MAGIC = b"\xc1"
# a pickled value with out-of-band buffers: FRAME_HEAD (magic, number of
# buffers, pickle length), FRAME_BUF (offset, length) per buffer, the pickle
# stream, then the buffers at offsets aligned to SMALL_ALIGN, or to PAGE for
# those of PAGE_ALIGN_MIN bytes or more (offsets from the value's start)
FRAME_MAGIC = b"\xc1LPB"
FRAME_HEAD = struct.Struct("<4sIQ")
FRAME_BUF = struct.Struct("<QQ")
SMALL_ALIGN = 64
PAGE = 4096
PAGE_ALIGN_MIN = 64 * 1024
PYEXC_MARK = "loom-pyexc:"
EXC_B64_MAX = 900
EXC_LINE_MAX = 400
MESSAGE_MAX = 1900          # the runtime keeps 2048 bytes of a task's message
_FN_CACHE_MAX = 256


def dumps_code(obj: Any) -> bytes:
    """Serialize a function or class by value (cloudpickle)."""
    if _cloudpickle is None:
        raise ImportError("loom needs cloudpickle (Debian: python3-cloudpickle)")
    return _cloudpickle.dumps(obj, protocol=5)


def _pickle(value: Any, buffers: list) -> bytes:
    try:
        return pickle.dumps(value, protocol=5, buffer_callback=buffers.append)
    except (pickle.PicklingError, TypeError, AttributeError):
        if _cloudpickle is None:
            raise
        buffers.clear()
        return _cloudpickle.dumps(value, protocol=5, buffer_callback=buffers.append)


def _align(n: int, size: int) -> int:
    a = PAGE if size >= PAGE_ALIGN_MIN else SMALL_ALIGN
    return (n + a - 1) // a * a


def encode(value: Any) -> Any:
    """The bytes of a value (bytes, or a bytearray when framed): msgpack when
    it can be, else 0xC1 + pickle 5, framed with its out-of-band buffers
    when it has any (NumPy arrays)."""
    packed = _mp_pack(value)
    if packed is not None:
        return packed
    return encode_pickled(value)


def encode_pickled(value: Any) -> Any:
    """0xC1 + pickle 5 of value, framed with its out-of-band buffers when it
    has any."""
    buffers: List[pickle.PickleBuffer] = []
    data = _pickle(value, buffers)
    if not buffers:
        return PICKLE_MAGIC + data
    raws = [b.raw() for b in buffers]
    n = len(raws)
    at = FRAME_HEAD.size + FRAME_BUF.size * n
    spans = []
    end = at + len(data)
    for r in raws:
        off = _align(end, r.nbytes)
        spans.append((off, r.nbytes))
        end = off + r.nbytes
    out = bytearray(end)
    FRAME_HEAD.pack_into(out, 0, FRAME_MAGIC, n, len(data))
    for i, span in enumerate(spans):
        FRAME_BUF.pack_into(out, FRAME_HEAD.size + FRAME_BUF.size * i, *span)
    out[at:at + len(data)] = data
    for r, (off, size) in zip(raws, spans):
        out[off:off + size] = r
        r.release()
    return out


def decode(data: Any, copy: bool = False) -> Any:
    """A value from its bytes (any buffer): the inverse of encode, and C
    tasks' msgpack or raw results.  A framed value's out-of-band buffers are
    views of data (zero-copy: NumPy arrays over it, read-only when data is),
    or copies when copy is true (an executor's arguments, whose memory
    lasts only for the call)."""
    mv = memoryview(data)
    if len(mv) == 0:
        return None
    if mv[0] == 0xC1:
        if len(mv) >= FRAME_HEAD.size and mv[:4] == FRAME_MAGIC:
            return _decode_framed(mv, copy)
        return pickle.loads(mv[1:])
    ok, value = _mp_unpack(mv)
    if ok:
        return value
    return bytes(mv)


def _decode_framed(mv: memoryview, copy: bool) -> Any:
    _, n, plen = FRAME_HEAD.unpack_from(mv, 0)
    at = FRAME_HEAD.size + FRAME_BUF.size * n
    if at + plen > len(mv):
        raise ValueError("loom: a framed value shorter than its header says")
    buffers = []
    for i in range(n):
        off, size = FRAME_BUF.unpack_from(mv, FRAME_HEAD.size + FRAME_BUF.size * i)
        if off < at + plen or off + size > len(mv):
            raise ValueError("loom: a framed value's buffer lies outside it")
        b = mv[off:off + size]
        buffers.append(bytearray(b) if copy else b)
    return pickle.loads(mv[at:at + plen], buffers=buffers)


def encode_call(args: Sequence[Any], kwargs: Dict[str, Any],
                is_ref: Callable[[Any], bool], num_returns: int = 1) -> Tuple[Any, List[Any]]:
    """Pickle a call (as a value: 0xC1 + pickle 5, framed with the buffers of
    the arrays among the arguments); top-level ObjectRefs become slots.  Returns the bytes
    and the refs, in slot order, to send as loom arguments 2, 3, ..."""
    args = list(args)
    kwargs = dict(kwargs)
    slots: List[Tuple[int, Any]] = []
    refs: List[Any] = []
    for i, a in enumerate(args):
        if is_ref(a):
            slots.append((0, i))
            refs.append(a)
            args[i] = None
    for k, v in kwargs.items():
        if is_ref(v):
            slots.append((1, k))
            refs.append(v)
            kwargs[k] = None
    call = (args, kwargs, slots) if num_returns == 1 else (args, kwargs, slots, num_returns)
    return encode_pickled(call), refs


def decode_call(data: Any, resolved: Sequence[Any]) -> Tuple[list, dict, int]:
    """The (args, kwargs, num_returns) of a call, slots filled with the
    resolved values."""
    call = decode(data, copy=True)
    args, kwargs, slots = call[:3]
    num_returns = call[3] if len(call) > 3 else 1
    for (where, key), buf in zip(slots, resolved):
        if where == 0:
            args[key] = decode(buf, copy=True)
        else:
            kwargs[key] = decode(buf, copy=True)
    return args, kwargs, num_returns


def encode_returns(result: Any, num_returns: int) -> Any:
    """The result of a call with num_returns > 1: a msgpack array of
    num_returns bins, each an encoded value; the C task py_item(result, i)
    of libloom_python.so picks output i."""
    try:
        items = list(result)
    except TypeError:
        raise ValueError(f"the task has num_returns={num_returns} but returned a "
                         f"{type(result).__name__}, not a sequence") from None
    if len(items) != num_returns:
        raise ValueError(f"the task has num_returns={num_returns} but returned "
                         f"{len(items)} values")
    parts = [encode(v) for v in items]
    out = bytearray(5 + sum(5 + len(p) for p in parts))
    out[0] = 0xDD                                  # array 32
    struct.pack_into(">I", out, 1, num_returns)
    at = 5
    for p in parts:
        if len(p) > 0xFFFFFFFF:
            raise ValueError("a value of a task with num_returns > 1 is over 4 GiB")
        out[at] = 0xC6                             # bin 32
        struct.pack_into(">I", out, at + 1, len(p))
        out[at + 5:at + 5 + len(p)] = p
        at += 5 + len(p)
    return out


# ---- errors ----------------------------------------------------------------

def format_error(exc: BaseException) -> str:
    """The task message of an exception: the traceback's last frames and the
    exception line (both cut to fit), then the pickled exception."""
    blob = ""
    try:
        b64 = base64.b64encode(dumps_code(exc)).decode("ascii")
        if len(b64) <= EXC_B64_MAX:
            blob = "\n" + PYEXC_MARK + b64
    except Exception:  # an exception that does not pickle: the text alone
        blob = ""
    last = "".join(traceback.format_exception_only(type(exc), exc))
    if len(last) > EXC_LINE_MAX:
        last = last[:EXC_LINE_MAX - 4] + "...\n"
    head = "Traceback (most recent call last):\n"
    frames = "".join(traceback.format_tb(exc.__traceback__))
    room = MESSAGE_MAX - len(blob) - len(last) - len(head)
    if len(frames) > room:
        frames = "  ...\n" + frames[len(frames) - room + 6:]
    return head + frames + last + blob


def parse_error(message: str) -> Tuple[str, Optional[BaseException]]:
    """Split a task message into (remote traceback text, original exception
    or None)."""
    at = message.rfind(PYEXC_MARK)
    if at < 0:
        return message, None
    text = message[:at].rstrip("\n")
    b64 = message[at + len(PYEXC_MARK):].split()[0] if message[at + len(PYEXC_MARK):].strip() else ""
    try:
        exc = pickle.loads(base64.b64decode(b64))
    except Exception:
        exc = None
    if not isinstance(exc, BaseException):
        exc = None
    return text, exc


# ---- executor side ---------------------------------------------------------

_fn_cache: Dict[str, Any] = {}


def load_code(digest: str, data: Any) -> Any:
    """Unpickle a function or class, once per content digest."""
    fn = _fn_cache.get(digest)
    if fn is None:
        if len(_fn_cache) >= _FN_CACHE_MAX:
            _fn_cache.clear()
        fn = pickle.loads(memoryview(data))
        _fn_cache[digest] = fn
    return fn


def _flush() -> None:
    for f in (sys.stdout, sys.stderr):
        try:
            f.flush()
        except Exception:
            pass


def run_call(digest: str, fn_data: Any, call: Any, resolved: Sequence[Any]) -> Tuple[bool, Any]:
    """Run a remote function: (True, result bytes) or (False, message)."""
    try:
        fn = load_code(digest, fn_data)
        args, kwargs, num_returns = decode_call(call, resolved)
        result = fn(*args, **kwargs)
        if num_returns != 1:
            return True, encode_returns(result, num_returns)
        return True, encode(result)
    except BaseException as exc:  # noqa: B902 - everything reaches the driver
        return False, format_error(exc)
    finally:
        _flush()


def actor_init(digest: str, cls_data: Any, call: Any, resolved: Sequence[Any]) -> Tuple[bool, Any]:
    """Build an actor: (True, instance) or (False, message)."""
    try:
        cls = load_code(digest, cls_data)
        args, kwargs, _ = decode_call(call, resolved)
        return True, cls(*args, **kwargs)
    except BaseException as exc:  # noqa: B902
        return False, format_error(exc)
    finally:
        _flush()


def actor_call(instance: Any, method: Any, call: Any, resolved: Sequence[Any]) -> Tuple[bool, Any]:
    """Call a method of an actor: (True, result bytes) or (False, message)."""
    try:
        name = bytes(method).decode("utf-8")
        args, kwargs, _ = decode_call(call, resolved)
        return True, encode(getattr(instance, name)(*args, **kwargs))
    except BaseException as exc:  # noqa: B902
        return False, format_error(exc)
    finally:
        _flush()


def digest_of(data: Any) -> str:
    """Content digest used as the code cache key (driver and tests)."""
    return hashlib.sha256(memoryview(data)).hexdigest()
