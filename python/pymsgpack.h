/* python/pymsgpack.h — Python objects to msgpack and back (pymsgpack.c). */
#ifndef LOOM_PYTHON_PYMSGPACK_H
#define LOOM_PYTHON_PYMSGPACK_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* _mp_pack(obj) -> bytes, or None when obj is not made only of msgpack types. */
PyObject *loom__pymp_pack(PyObject *self, PyObject *obj);
/* _mp_unpack(buffer) -> (True, value), or (False, None) when the bytes are not
 * exactly one msgpack value. */
PyObject *loom__pymp_unpack(PyObject *self, PyObject *buffer);

#endif
