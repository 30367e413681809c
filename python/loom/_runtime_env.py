"""loom._runtime_env — the driver's side of ``runtime_env``.

``{"working_dir": DIR, "env_vars": {NAME: VALUE}, "py_modules": [...]}`` (loom.init, or
``.options(runtime_env=)`` of a function or actor class): DIR is packed once
into a tar.gz (Python's tarfile; at most WORKING_DIR_MAX bytes of files;
symlinks that leave DIR refused), put in the object store, and named by the
sha256 of the archive.  Every call then carries the digest and env_vars, and
the archive's ref as its last argument; executors unpack it once per machine
into ``$TMPDIR/loom-wd-<sha256>`` and run the call with that directory first
on sys.path and as the current directory, env_vars set (loom/_wire.py).
``py_modules`` (package directories, single .py files, or imported module
objects) are packed the same way into one archive holding each under its
own name, shipped as a second archive and put first on sys.path (not made
the current directory), so that ``import mymodule`` works on every node.
"""
from __future__ import annotations

import hashlib
import io
import os
import tarfile
import threading
import types
from typing import Any, Dict, List, Optional, Tuple

WORKING_DIR_MAX = 100 << 20      # bytes of files in a working_dir
_SKIP_DIRS = {"__pycache__", ".git"}

_lock = threading.Lock()
_packed: Dict[Tuple[int, Any], Tuple[str, Any]] = {}   # (session, dir or modules) -> (sha, ref)
PY_MODULES_MAX = 64              # entries of py_modules


def pack_working_dir(path: str, limit: int = WORKING_DIR_MAX) -> bytes:
    """A tar.gz of the directory path: its files, directories and the
    symlinks that stay inside it, with names relative to it (no owner, a
    fixed time, so the same tree gives the same archive).  ValueError for a
    symlink that leaves it, or more than limit bytes of files."""
    root = os.path.realpath(path)
    if not os.path.isdir(root):
        raise ValueError(f"runtime_env: working_dir {path!r} is not a directory")
    return _pack([(root, "")], limit, f"working_dir {path!r}")


def module_path(m: Any) -> str:
    """The file system path a py_modules entry names: a directory (a
    package), a .py file, or an imported module object (its package's
    directory, or its file)."""
    if isinstance(m, types.ModuleType):
        f = getattr(m, "__file__", None)
        if not f:
            raise ValueError(f"runtime_env: py_modules: module {m.__name__!r} has no file (built in?)")
        if os.path.basename(f) == "__init__.py":
            return os.path.dirname(os.path.realpath(f))
        return os.path.realpath(f)
    if not isinstance(m, (str, os.PathLike)):
        raise TypeError(f"runtime_env: py_modules entries are paths or modules, not {type(m).__name__}")
    p = os.path.realpath(os.fspath(m))
    if not (os.path.isdir(p) or (os.path.isfile(p) and p.endswith(".py"))):
        raise ValueError(f"runtime_env: py_modules: {os.fspath(m)!r} is neither a directory nor a .py file")
    return p


def pack_modules(paths: List[str], limit: int = WORKING_DIR_MAX) -> bytes:
    """A tar.gz holding each py_modules path under its own base name (a
    package directory, or a .py file), for a directory put on sys.path."""
    names = [os.path.basename(p) for p in paths]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"runtime_env: py_modules: two entries named {dup[0]!r}")
    return _pack([(p, n) for p, n in zip(paths, names)], limit, "py_modules")


def _pack(roots: List[Tuple[str, str]], limit: int, what: str) -> bytes:
    """A tar.gz of the trees roots [(path, name in the archive)] (see
    pack_working_dir)."""
    buf = io.BytesIO()
    total = 0
    entries = []
    for root, prefix in roots:
        total = _walk(root, prefix, limit, total, entries, what)
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tar:
        for full, rel, base in entries:
            info = tar.gettarinfo(full, arcname=rel)
            if not (info.isfile() or info.isdir() or info.issym()):
                continue  # sockets, devices, fifos
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            if info.issym():  # relative, so that it stays inside where unpacked
                info.linkname = os.path.relpath(os.path.realpath(full), os.path.dirname(full))
            if info.isfile():
                with open(full, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
    return buf.getvalue()


def _walk(root: str, prefix: str, limit: int, total: int, entries: list, what: str) -> int:
    """Add the entries of the tree root (a directory, or one file) to
    entries as (path, name in the archive, root); returns the bytes of
    files so far.  ValueError past limit, or for a symlink leaving root."""
    def add_file(full: str, rel: str) -> None:
        nonlocal total
        total += os.path.getsize(full)
        if total > limit:
            raise ValueError(f"runtime_env: {what} holds over {limit} bytes of files")
        entries.append((full, rel, root))

    if os.path.isfile(root):
        add_file(root, prefix)
        return total
    if prefix:
        entries.append((root, prefix, root))
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        for name in dirnames + sorted(filenames):
            full = os.path.join(dirpath, name)
            rel = os.path.join(prefix, os.path.relpath(full, root)) if prefix else os.path.relpath(full, root)
            if os.path.islink(full):
                target = os.path.realpath(full)
                if os.path.commonpath([root, target]) != root:
                    raise ValueError(f"runtime_env: {what}: symlink {rel!r} leaves it")
                entries.append((full, rel, root))
            elif os.path.isfile(full):
                add_file(full, rel)
            else:
                entries.append((full, rel, root))
    return total


def check(runtime_env: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    """Validate a runtime_env dict (None: none)."""
    if runtime_env is None:
        return None
    if not isinstance(runtime_env, dict):
        raise TypeError("runtime_env must be a dict")
    bad = sorted(set(runtime_env) - {"working_dir", "env_vars", "py_modules"})
    if bad:
        raise ValueError(f"runtime_env: unsupported key(s) {', '.join(bad)}; "
                         "supported: working_dir, env_vars, py_modules")
    mods = runtime_env.get("py_modules")
    if mods is not None:
        if not isinstance(mods, (list, tuple)) or len(mods) > PY_MODULES_MAX:
            raise TypeError(f"runtime_env: py_modules must be a list of at most {PY_MODULES_MAX} "
                            "paths or modules")
        for m in mods:
            module_path(m)
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
    the working_dir archive or None, sha256 or None, ref of the py_modules
    archive or None); each archive is packed and put once per session."""
    if not runtime_env:
        return None
    env = dict(runtime_env.get("env_vars") or {})
    wd = runtime_env.get("working_dir")
    wd_sha, wd_ref = (None, None)
    if wd is not None:
        root = os.path.realpath(os.fspath(wd))
        wd_sha, wd_ref = _packed_once((session, root), lambda: pack_working_dir(root), session, put)
    mods = runtime_env.get("py_modules")
    mod_sha, mod_ref = (None, None)
    if mods:
        paths = [module_path(m) for m in mods]
        mod_sha, mod_ref = _packed_once((session, ("py_modules",) + tuple(paths)),
                                        lambda: pack_modules(paths), session, put)
    return (wd_sha, env, wd_ref, mod_sha, mod_ref)


def _packed_once(key: Tuple[int, Any], pack: Any, session: int, put: Any) -> Tuple[str, Any]:
    """(sha256, ref) of an archive, packed and put once per session and key."""
    with _lock:
        hit = _packed.get(key)
        if hit is None:
            archive = pack()
            hit = (hashlib.sha256(archive).hexdigest(), put(archive))
            for k in [k for k in _packed if k[0] != session]:
                del _packed[k]
            _packed[key] = hit
    return hit
