"""loom.kv — the head's small key-value table (values up to 1 MiB).

Keys are strings, values bytes.  Shared by every driver and task of the
cluster, for rendezvous and coordination.
"""
from __future__ import annotations

from typing import Optional, Union

from . import _loom
from . import _runtime


def put(key: str, value: Union[bytes, bytearray, memoryview, str]) -> None:
    """Set key to value (str values are stored as UTF-8)."""
    _runtime._require()
    if isinstance(value, str):
        value = value.encode("utf-8")
    _loom.kv_put(key, bytes(value))


def get(key: str, timeout: Optional[float] = 0) -> Optional[bytes]:
    """The value of key, or None when absent (after waiting up to timeout
    seconds for it to appear; 0: do not wait)."""
    _runtime._require()
    ms = -1 if timeout is None else int(timeout * 1000)
    return _loom.kv_get(key, ms)


def delete(key: str) -> None:
    """Remove key (no error when absent)."""
    _runtime._require()
    _loom.kv_del(key)
