/* python/pymsgpack.c — Python objects to msgpack and back, over loom/value.h.
 *
 * Shared by the driver's extension (_loom) and the executors' embedded
 * interpreter (libloom_python.so): both expose these two functions to
 * loom/_wire.py as _mp_pack and _mp_unpack.
 *
 * Packing accepts exactly None, bool, int (64-bit), float, str, bytes, and
 * lists and dicts of those, nested up to PYMP_MAX_DEPTH; anything else —
 * tuples, subclasses, big ints, deeper nesting — returns None ("not
 * msgpack-able": the caller pickles the value instead).  Unpacking reads one
 * whole msgpack value; bytes that are not exactly one value also give None
 * (the caller reads them as raw bytes).  Both hold the GIL and own nothing
 * beyond their call. */
#include "python/pymsgpack.h"

#include <string.h>
#include "loom/loom.h"
#include "loom/value.h"

#define PYMP_MAX_DEPTH 48

/* ---- packing ------------------------------------------------------------ */

/* 0: packed; 1: not msgpack-able; -1: a Python error is set. */
static int pack_obj(loom_pack *p, PyObject *o, int depth);

static int pack_int(loom_pack *p, PyObject *o)
{
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (v == -1 && PyErr_Occurred()) return -1;
    if (!overflow) return loom_pack_i64(p, (int64_t)v) ? -1 : 0;
    if (overflow < 0) return 1;
    unsigned long long u = PyLong_AsUnsignedLongLong(o);
    if (u == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 1;
    }
    return loom_pack_u64(p, (uint64_t)u) ? -1 : 0;
}

static int pack_list(loom_pack *p, PyObject *o, int depth)
{
    Py_ssize_t n = PyList_GET_SIZE(o);
    if (n > UINT32_MAX) return 1;
    if (loom_pack_array(p, (uint32_t)n)) return -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        int rc = pack_obj(p, PyList_GET_ITEM(o, i), depth + 1);
        if (rc) return rc;
    }
    return 0;
}

static int pack_dict(loom_pack *p, PyObject *o, int depth)
{
    Py_ssize_t n = PyDict_GET_SIZE(o), pos = 0;
    if (n > UINT32_MAX) return 1;
    if (loom_pack_map(p, (uint32_t)n)) return -1;
    PyObject *k, *v;
    while (PyDict_Next(o, &pos, &k, &v)) {
        int rc = pack_obj(p, k, depth + 1);
        if (!rc) rc = pack_obj(p, v, depth + 1);
        if (rc) return rc;
    }
    return 0;
}

static int pack_obj(loom_pack *p, PyObject *o, int depth)
{
    if (depth > PYMP_MAX_DEPTH) return 1;
    if (o == Py_None) return loom_pack_nil(p) ? -1 : 0;
    if (PyBool_Check(o)) return loom_pack_bool(p, o == Py_True) ? -1 : 0;
    if (PyLong_CheckExact(o)) return pack_int(p, o);
    if (PyFloat_CheckExact(o)) return loom_pack_f64(p, PyFloat_AS_DOUBLE(o)) ? -1 : 0;
    if (PyUnicode_CheckExact(o)) {
        Py_ssize_t len;
        const char *s = PyUnicode_AsUTF8AndSize(o, &len);
        if (!s) {  /* lone surrogates: not UTF-8, leave it to pickle */
            PyErr_Clear();
            return 1;
        }
        return loom_pack_str(p, s, (size_t)len) ? -1 : 0;
    }
    if (PyBytes_CheckExact(o))
        return loom_pack_bin(p, PyBytes_AS_STRING(o), (size_t)PyBytes_GET_SIZE(o)) ? -1 : 0;
    if (PyList_CheckExact(o)) return pack_list(p, o, depth);
    if (PyDict_CheckExact(o)) return pack_dict(p, o, depth);
    return 1;
}

PyObject *loom__pymp_pack(PyObject *self, PyObject *o)
{
    loom_pack *p = loom_pack_new();
    if (!p) return PyErr_NoMemory();
    int rc = pack_obj(p, o, 0);
    PyObject *out = NULL;
    if (rc == 0) out = PyBytes_FromStringAndSize(loom_pack_data(p), (Py_ssize_t)loom_pack_size(p));
    else if (rc == 1) out = Py_NewRef(Py_None);
    else if (!PyErr_Occurred()) PyErr_NoMemory();
    loom_pack_destroy(&p);
    return out;
}

/* ---- unpacking ---------------------------------------------------------- */

/* A new reference, or NULL: with a Python error set (memory), or without one
 * (bad or unsupported msgpack). */
static PyObject *unpack_obj(loom_unpack *u, int depth);

static PyObject *unpack_int(loom_unpack *u)
{
    int64_t v;
    if (!loom_unpack_i64(u, &v)) return PyLong_FromLongLong((long long)v);
    uint64_t w;
    if (!loom_unpack_u64(u, &w)) return PyLong_FromUnsignedLongLong((unsigned long long)w);
    return NULL;
}

static PyObject *unpack_array(loom_unpack *u, int depth)
{
    uint32_t n;
    if (loom_unpack_array(u, &n)) return NULL;
    if (n > u->len - u->pos) return NULL;  /* each element takes at least a byte */
    PyObject *list = PyList_New((Py_ssize_t)n);
    if (!list) return NULL;
    for (uint32_t i = 0; i < n; i++) {
        PyObject *item = unpack_obj(u, depth + 1);
        if (!item) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, item);
    }
    return list;
}

static PyObject *unpack_map(loom_unpack *u, int depth)
{
    uint32_t n;
    if (loom_unpack_map(u, &n)) return NULL;
    if (n > (u->len - u->pos) / 2) return NULL;
    PyObject *dict = PyDict_New();
    if (!dict) return NULL;
    for (uint32_t i = 0; i < n; i++) {
        PyObject *k = unpack_obj(u, depth + 1);
        PyObject *v = k ? unpack_obj(u, depth + 1) : NULL;
        /* an unhashable key (a list or a map) is no Python dict: not ours */
        int rc = v && PyObject_Hash(k) != -1 ? PyDict_SetItem(dict, k, v) : -1;
        if (rc && PyErr_ExceptionMatches(PyExc_TypeError)) PyErr_Clear();
        Py_XDECREF(k);
        Py_XDECREF(v);
        if (rc) {
            Py_DECREF(dict);
            return NULL;
        }
    }
    return dict;
}

static PyObject *unpack_obj(loom_unpack *u, int depth)
{
    if (depth > PYMP_MAX_DEPTH) return NULL;
    const char *s;
    const void *d;
    size_t len;
    int b;
    double f;
    switch (loom_unpack_peek(u)) {
    case LOOM_TYPE_NIL:
        return loom_unpack_nil(u) ? NULL : Py_NewRef(Py_None);
    case LOOM_TYPE_BOOL:
        return loom_unpack_bool(u, &b) ? NULL : PyBool_FromLong(b);
    case LOOM_TYPE_INT:
        return unpack_int(u);
    case LOOM_TYPE_FLOAT:
        return loom_unpack_f64(u, &f) ? NULL : PyFloat_FromDouble(f);
    case LOOM_TYPE_STR: {
        if (loom_unpack_str(u, &s, &len)) return NULL;
        PyObject *o = PyUnicode_DecodeUTF8(s, (Py_ssize_t)len, "strict");
        if (!o && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {  /* C wrote bytes as str */
            PyErr_Clear();
            o = PyBytes_FromStringAndSize(s, (Py_ssize_t)len);
        }
        return o;
    }
    case LOOM_TYPE_BIN:
        return loom_unpack_bin(u, &d, &len) ? NULL : PyBytes_FromStringAndSize(d, (Py_ssize_t)len);
    case LOOM_TYPE_ARRAY:
        return unpack_array(u, depth);
    case LOOM_TYPE_MAP:
        return unpack_map(u, depth);
    default:
        return NULL;
    }
}

PyObject *loom__pymp_unpack(PyObject *self, PyObject *arg)
{
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE)) return NULL;
    loom_unpack u;
    loom_unpack_init(&u, view.buf, (size_t)view.len);
    PyObject *o = view.len ? unpack_obj(&u, 0) : NULL;
    if (o && !loom_unpack_done(&u)) Py_CLEAR(o);
    PyBuffer_Release(&view);
    if (!o && !PyErr_Occurred()) return Py_BuildValue("(OO)", Py_False, Py_None);
    if (!o) return NULL;
    PyObject *r = Py_BuildValue("(ON)", Py_True, o);
    return r;
}
