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
import io
import os
import pickle
import struct
import sys
import tarfile
import tempfile
import threading
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
# a call with a runtime_env: RENV_MAGIC, u32 n, n bytes of msgpack
# [sha256 of the working_dir archive or nil, {env var: value}], the call
RENV_MAGIC = b"\xc1LRE"
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


_tls = threading.local()     # .refs: the list collecting nested ObjectRefs while encoding


def note_ref(ref: Any) -> None:
    """Called by the _loom extension for each ObjectRef pickled inside a
    value: collected into the list encode() was given, so that the caller
    keeps those refs alive with the value's own ref."""
    refs = getattr(_tls, "refs", None)
    if refs is not None:
        refs.append(ref)


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


def encode(value: Any, nested: Optional[list] = None) -> Any:
    """The bytes of a value (bytes, or a bytearray when framed): msgpack when
    it can be, else 0xC1 + pickle 5, framed with its out-of-band buffers
    when it has any (NumPy arrays).  ObjectRefs inside the value travel as
    refs (their ids); with ``nested``, they are appended to it."""
    packed = _mp_pack(value)
    if packed is not None:
        return packed
    return encode_pickled(value, nested)


def encode_pickled(value: Any, nested: Optional[list] = None) -> Any:
    """0xC1 + pickle 5 of value, framed with its out-of-band buffers when it
    has any; the ObjectRefs inside it appended to ``nested``."""
    parts = encode_pickled_parts(value, nested)
    if len(parts) == 1:
        return parts[0]
    out = bytearray(sum(memoryview(p).nbytes for p in parts))
    at = 0
    for p in parts:
        n = memoryview(p).nbytes
        out[at:at + n] = p
        at += n
    _release(parts)
    return out


def encode_parts(value: Any, nested: Optional[list] = None) -> List[Any]:
    """encode(value) as buffers whose concatenation is its bytes, without
    joining them: a framed value is its header, its pickle, zero padding
    and its arrays' own memory (for _loom.put_parts, one copy into the
    store).  Call _release(parts) once they are sent."""
    packed = _mp_pack(value)
    if packed is not None:
        return [packed]
    return encode_pickled_parts(value, nested)


def encode_pickled_parts(value: Any, nested: Optional[list] = None) -> List[Any]:
    buffers: List[pickle.PickleBuffer] = []
    outer = getattr(_tls, "refs", None)
    _tls.refs = nested
    try:
        data = _pickle(value, buffers)
    finally:
        _tls.refs = outer
    if not buffers:
        return [PICKLE_MAGIC + data]
    raws = [b.raw() for b in buffers]
    n = len(raws)
    at = FRAME_HEAD.size + FRAME_BUF.size * n
    spans = []
    end = at + len(data)
    for r in raws:
        off = _align(end, r.nbytes)
        spans.append((off, r.nbytes))
        end = off + r.nbytes
    head = bytearray(at)
    FRAME_HEAD.pack_into(head, 0, FRAME_MAGIC, n, len(data))
    for i, span in enumerate(spans):
        FRAME_BUF.pack_into(head, FRAME_HEAD.size + FRAME_BUF.size * i, *span)
    parts: List[Any] = [head, data]
    end = at + len(data)
    for r, (off, size) in zip(raws, spans):
        if off > end:
            parts.append(bytes(off - end))
        parts.append(r)
        end = off + size
    return parts


def _release(parts: List[Any]) -> None:
    """Let go of the arrays' memory views among parts."""
    for p in parts:
        if isinstance(p, memoryview):
            p.release()


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
                is_ref: Callable[[Any], bool], num_returns: int = 1,
                renv: Optional[Tuple[Optional[str], Dict[str, str], Any]] = None,
                nested: Optional[list] = None) -> Tuple[Any, List[Any]]:
    """Pickle a call (as a value: 0xC1 + pickle 5, framed with the buffers of
    the arrays among the arguments); top-level ObjectRefs become slots
    (resolved before the call runs), refs nested deeper travel as refs
    (appended to ``nested``).  Returns the bytes and the refs, in slot
    order, to send as loom arguments 2, 3, ..."""
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
    data = encode_pickled(call, nested)
    if renv is not None:
        # the runtime_env goes first, in msgpack, so that the executor sets
        # it up before unpickling anything (which may import its modules);
        # the archive's ref follows the slots' refs
        sha, env_vars, archive, mod_sha, mod_archive = renv
        head = _mp_pack([sha, {str(k): str(v) for k, v in env_vars.items()}, mod_sha])
        if head is None:
            raise TypeError("runtime_env: env_vars must map str to str")
        if sha is not None:
            refs.append(archive)
        if mod_sha is not None:
            refs.append(mod_archive)
        data = b"".join([RENV_MAGIC, struct.pack("<I", len(head)), head, data])
    return data, refs


def split_call(data: Any) -> Tuple[Any, memoryview]:
    """(runtime_env or None, the encoded call) of a call's bytes."""
    mv = memoryview(data)
    if mv[:4] != RENV_MAGIC:
        return None, mv
    (n,) = struct.unpack_from("<I", mv, 4)
    ok, renv = _mp_unpack(mv[8:8 + n])
    if not ok or not isinstance(renv, list) or len(renv) not in (2, 3):
        raise ValueError("loom: a malformed runtime_env in a call")
    return renv, mv[8 + n:]


def decode_call(data: Any, resolved: Sequence[Any]) -> Tuple[list, dict, int]:
    """The (args, kwargs, num_returns) of a call (its runtime_env part
    skipped), slots filled with the resolved values."""
    call = decode(split_call(data)[1], copy=True)
    args, kwargs, slots = call[:3]
    num_returns = call[3] if len(call) > 3 else 1
    for (where, key), buf in zip(slots, resolved):
        if where == 0:
            args[key] = decode(buf, copy=True)
        else:
            kwargs[key] = decode(buf, copy=True)
    return args, kwargs, num_returns


# ---- runtime_env: working_dir and env_vars ----------------------------------

WD_PREFIX = "loom-wd-"
_wd_lock = threading.Lock()


def _member_ok(m: tarfile.TarInfo) -> bool:
    name = m.name
    parts = name.replace("\\", "/").split("/")
    if name.startswith("/") or ".." in parts or not (m.isfile() or m.isdir() or m.issym()):
        return False
    if m.issym():
        target = m.linkname
        if target.startswith("/"):
            return False
        depth = len([p for p in parts[:-1] if p not in ("", ".")])
        for p in target.split("/"):
            depth += -1 if p == ".." else 0 if p in ("", ".") else 1
            if depth < 0:
                return False
    return True


def unpack_working_dir(archive: Any, dest: str) -> None:
    """Extract a working_dir archive (a tar.gz) into dest, which must not
    exist; refuses (ValueError) absolute names, '..', links that leave it,
    and anything but files, directories and symlinks."""
    with tarfile.open(fileobj=io.BytesIO(memoryview(archive)), mode="r:gz") as tar:
        members = tar.getmembers()
        bad = [m.name for m in members if not _member_ok(m)]
        if bad:
            raise ValueError(f"loom: working_dir archive refused: unsafe entries {bad[:5]}")
        for m in members:
            m.mode = (m.mode | 0o600) & 0o755 if not m.issym() else m.mode
            m.uid = m.gid = 0
            m.uname = m.gname = ""
        tar.extractall(dest, members=members, numeric_owner=True)


def working_dir(sha: str, archive: Any) -> str:
    """The directory of a working_dir archive on this machine: unpacked once
    into $TMPDIR/loom-wd-<sha256> (a temporary name renamed into place, so
    concurrent executors never see half of it)."""
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise ValueError("loom: bad working_dir digest")
    path = os.path.join(tempfile.gettempdir(), WD_PREFIX + sha)
    with _wd_lock:
        if os.path.isdir(path):
            return path
        if hashlib.sha256(memoryview(archive)).hexdigest() != sha:
            raise ValueError("loom: the working_dir archive does not match its digest")
        tmp = tempfile.mkdtemp(prefix=WD_PREFIX + "tmp-", dir=tempfile.gettempdir())
        try:
            unpack_working_dir(archive, os.path.join(tmp, "d"))
            try:
                os.rename(os.path.join(tmp, "d"), path)
            except OSError:
                if not os.path.isdir(path):  # not another executor's win
                    raise
        finally:
            import shutil
            shutil.rmtree(tmp, ignore_errors=True)
    return path


class _RuntimeEnv:
    """Applies a call's runtime_env for its duration: the working_dir on
    sys.path (first) and as the current directory, env_vars in os.environ;
    restored after."""

    def __init__(self, renv: Any, resolved: Sequence[Any]) -> None:
        self.renv = renv
        self.resolved = resolved

    def __enter__(self) -> "_RuntimeEnv":
        self.cwd = None
        self.saved: Dict[str, Optional[str]] = {}
        if self.renv is None:
            return self
        sha, env_vars = self.renv[:2]
        mod_sha = self.renv[2] if len(self.renv) > 2 else None
        for k, v in env_vars.items():
            self.saved[k] = os.environ.get(k)
            os.environ[k] = v
        archives = list(self.resolved)
        if mod_sha is not None:   # py_modules: the last argument, a directory put on sys.path
            mods = working_dir(mod_sha, archives.pop())
            if mods not in sys.path:
                sys.path.insert(0, mods)
        if sha is not None:
            path = working_dir(sha, archives[-1])
            if path not in sys.path:
                sys.path.insert(0, path)
            self.cwd = os.getcwd()
            os.chdir(path)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.cwd is not None:
            try:
                os.chdir(self.cwd)
            except OSError:
                pass
        for k, v in self.saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


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
        with _RuntimeEnv(split_call(call)[0], resolved):
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
        with _RuntimeEnv(split_call(call)[0], resolved):
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
        with _RuntimeEnv(split_call(call)[0], resolved):
            args, kwargs, num_returns = decode_call(call, resolved)
            result = getattr(instance, name)(*args, **kwargs)
            if num_returns != 1:
                return True, encode_returns(result, num_returns)
            return True, encode(result)
    except BaseException as exc:  # noqa: B902
        return False, format_error(exc)
    finally:
        _flush()


def digest_of(data: Any) -> str:
    """Content digest used as the code cache key (driver and tests)."""
    return hashlib.sha256(memoryview(data)).hexdigest()
