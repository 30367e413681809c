"""loom._runtime_env — the driver's side of ``runtime_env``.

``{"working_dir": DIR, "env_vars": {NAME: VALUE}}`` (loom.init, or
``.options(runtime_env=)`` of a function or actor class): DIR is packed once
into a tar.gz (Python's tarfile; at most WORKING_DIR_MAX bytes of files;
symlinks that leave DIR refused), put in the object store, and named by the
sha256 of the archive.  Every call then carries the digest and env_vars, and
the archive's ref as its last argument; executors unpack it once per machine
into ``$TMPDIR/loom-wd-<sha256>`` and run the call with that directory first
on sys.path and as the current directory, env_vars set (loom/_wire.py).
"""
from __future__ import annotations

import hashlib
import io
import os
import tarfile
import threading
from typing import Any, Dict, Optional, Tuple

WORKING_DIR_MAX = 100 << 20      # bytes of files in a working_dir
_SKIP_DIRS = {"__pycache__", ".git"}

_lock = threading.Lock()
_packed: Dict[Tuple[int, str], Tuple[str, Any]] = {}   # (session, dir) -> (sha, ref)


def pack_working_dir(path: str, limit: int = WORKING_DIR_MAX) -> bytes:
    """A tar.gz of the directory path: its files, directories and the
    symlinks that stay inside it, with names relative to it (no owner, a
    fixed time, so the same tree gives the same archive).  ValueError for a
    symlink that leaves it, or more than limit bytes of files."""
    root = os.path.realpath(path)
    if not os.path.isdir(root):
        raise ValueError(f"runtime_env: working_dir {path!r} is not a directory")
    buf = io.BytesIO()
    total = 0
    entries = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        for name in dirnames + sorted(filenames):
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            if os.path.islink(full):
                target = os.path.realpath(full)
                if os.path.commonpath([root, target]) != root:
                    raise ValueError(f"runtime_env: working_dir {path!r}: symlink {rel!r} leaves it")
            elif os.path.isfile(full):
                total += os.path.getsize(full)
                if total > limit:
                    raise ValueError(f"runtime_env: working_dir {path!r} holds over {limit} bytes "
                                     "of files")
            entries.append((full, rel))
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tar:
        for full, rel in entries:
            info = tar.gettarinfo(full, arcname=rel)
            if not (info.isfile() or info.isdir() or info.issym()):
                continue  # sockets, devices, fifos
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            if info.issym():  # relative, so that it stays inside where unpacked
                info.linkname = os.path.relpath(os.path.realpath(full), os.path.dirname(os.path.join(root, rel)))
            if info.isfile():
                with open(full, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
    return buf.getvalue()


def check(runtime_env: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    """Validate a runtime_env dict (None: none)."""
    if runtime_env is None:
        return None
    if not isinstance(runtime_env, dict):
        raise TypeError("runtime_env must be a dict")
    bad = sorted(set(runtime_env) - {"working_dir", "env_vars"})
    if bad:
        raise ValueError(f"runtime_env: unsupported key(s) {', '.join(bad)}; "
                         "supported: working_dir, env_vars")
    env = runtime_env.get("env_vars") or {}
    if not isinstance(env, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                            for k, v in env.items()):
        raise TypeError("runtime_env: env_vars must map str to str")
    wd = runtime_env.get("working_dir")
    if wd is not None and not isinstance(wd, (str, os.PathLike)):
        raise TypeError("runtime_env: working_dir must be a path")
    return runtime_env


def resolve(runtime_env: Optional[Dict[str, Any]], session: int, put: Any) -> Optional[tuple]:
    """What a call carries for runtime_env: (sha256 or None, env_vars, ref of
    the archive or None); the directory is packed and put once per session."""
    if not runtime_env:
        return None
    env = dict(runtime_env.get("env_vars") or {})
    wd = runtime_env.get("working_dir")
    if wd is None:
        return (None, env, None)
    key = (session, os.path.realpath(os.fspath(wd)))
    with _lock:
        hit = _packed.get(key)
        if hit is None:
            archive = pack_working_dir(key[1])
            hit = (hashlib.sha256(archive).hexdigest(), put(archive))
            for k in [k for k in _packed if k[0] != session]:
                del _packed[k]
            _packed[key] = hit
    return (hit[0], env, hit[1])
