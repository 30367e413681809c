/* python/pytask.c — libloom_python.so: the task library that runs Python.
 *
 * An executor that runs its first Python task starts an embedded CPython and
 * keeps it for the rest of its life (never one interpreter per task).  The
 * interpreter is started with the GIL released afterwards; every entry point
 * takes it with PyGILState_Ensure, so actors with max_concurrency > 1 run
 * their calls on the executor's threads one Python bytecode slice at a time.
 *
 * The work itself is loom/_wire.py, compiled into this library at build
 * time (wire_py.h) and run as the standalone module _loom_wire, with the C
 * msgpack helpers (pymsgpack.c) injected; see python/README.md for the wire
 * format.  Exports only the task and actor entry points:
 *   py_call(fn, call, refs...)                 a remote function
 *   py_item(result, i)                         output i of a call with
 *                                              num_returns > 1 (plain C)
 *   py_pg_ready(pg)                            true once the placement group is
 *                                              placed (PlacementGroup.ready(); plain C)
 *   PyActor init(cls, call, refs...), PyActor call(method, call, refs...),
 *   PyActor destroy                            an actor
 * The actor's state is a strong reference to its Python instance, owned by
 * the actor and dropped by destroy. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "python/pymsgpack.h"
#include "loom/loom.h"
#include "loom/task.h"
#include "wire_py.h"

static pthread_once_t py_once = PTHREAD_ONCE_INIT;
static char py_error[512];     /* why the interpreter could not start ("" if it did) */
static PyObject *py_wire;      /* the _loom_wire module, for the process's life */

/* The task running Python on this thread (set around each call), for
 * task_client_now: the _loom extension reaches it through the capsule
 * _loom_wire._task_client, so that code in a task can call loom. */
static __thread loom_task_ctx *cur_ctx;

static loom_client *task_client_now(char *err, size_t errlen)
{
    if (!cur_ctx) {
        snprintf(err, errlen, "loom is not initialized, and this thread runs no loom task");
        return NULL;
    }
    loom_client *c = loom_task_client(cur_ctx);
    if (!c) snprintf(err, errlen, "this task cannot connect to its cluster");
    return c;
}

static PyMethodDef wire_helpers[] = {
    {"_mp_pack", loom__pymp_pack, METH_O, "value -> msgpack bytes, or None"},
    {"_mp_unpack", loom__pymp_unpack, METH_O, "buffer -> (ok, value)"},
    {NULL, NULL, 0, NULL}};

/* Extension modules (numpy's, say) expect the interpreter's symbols to be
 * global; the executor loaded us, and libpython with us, RTLD_LOCAL. */
static void promote_libpython(void)
{
    Dl_info info;
    if (dladdr((void *)Py_InitializeFromConfig, &info) && info.dli_fname)
        dlopen(info.dli_fname, RTLD_NOW | RTLD_GLOBAL | RTLD_NOLOAD);
}

/* Compile the embedded _wire.py into the module _loom_wire. Holds the GIL. */
static int load_wire(void)
{
    PyObject *mod = PyImport_AddModule("_loom_wire");  /* borrowed */
    if (!mod) return -1;
    PyObject *dict = PyModule_GetDict(mod);
    if (PyModule_AddFunctions(mod, wire_helpers)) return -1;
    if (PyDict_SetItemString(dict, "__builtins__", PyEval_GetBuiltins())) return -1;
    PyObject *cap = PyCapsule_New((void *)task_client_now, "loom.task_client", NULL);
    if (!cap || PyModule_AddObject(mod, "_task_client", cap)) {
        Py_XDECREF(cap);
        return -1;
    }
    PyObject *code = Py_CompileString(loom__wire_py, "loom/_wire.py", Py_file_input);
    if (!code) return -1;
    PyObject *r = PyEval_EvalCode(code, dict, dict);
    Py_DECREF(code);
    if (!r) return -1;
    Py_DECREF(r);
    py_wire = Py_NewRef(mod);
    return 0;
}

static void note_py_error(const char *what)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyObject *s = value ? PyObject_Str(value) : NULL;
    const char *text = s ? PyUnicode_AsUTF8(s) : NULL;
    snprintf(py_error, sizeof(py_error), "%s: %s", what, text ? text : "unknown error");
    Py_XDECREF(s);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    PyErr_Clear();
}

static void start_python(void)
{
    promote_libpython();
    PyConfig config;
    PyConfig_InitPythonConfig(&config);
    config.install_signal_handlers = 0;  /* signals stay the executor's */
    config.parse_argv = 0;
    PyStatus st = Py_InitializeFromConfig(&config);
    PyConfig_Clear(&config);
    if (PyStatus_Exception(st)) {
        snprintf(py_error, sizeof(py_error), "cannot start Python: %s", st.err_msg ? st.err_msg : "?");
        return;
    }
    if (load_wire()) note_py_error("cannot load loom's Python wire module");
    PyEval_SaveThread();  /* tasks take the GIL when they run */
}

/* 0 once the interpreter runs, else fails the task. */
static int ensure_python(loom_task_ctx *ctx)
{
    pthread_once(&py_once, start_python);
    if (py_error[0] || !py_wire) return loom_task_fail(ctx, "%s", py_error[0] ? py_error : "Python did not start");
    return 0;
}

/* ---- arguments ---------------------------------------------------------- */

/* Argument i's bytes; -1 with a Python error when it is missing. */
static int arg_bytes(loom_task_ctx *ctx, int i, const void **d, size_t *n)
{
    if (!loom_task_arg(ctx, i, d, n)) return 0;
    PyErr_Format(PyExc_ValueError, "missing task argument %d", i);
    return -1;
}

/* Argument i as a read-only memoryview over the store's bytes (valid for the
 * task's duration only; _wire copies what it keeps). */
static PyObject *arg_view(loom_task_ctx *ctx, int i)
{
    const void *d;
    size_t n;
    if (arg_bytes(ctx, i, &d, &n)) return NULL;
    static const char empty[1];
    return PyMemoryView_FromMemory((char *)(n ? d : empty), (Py_ssize_t)n, PyBUF_READ);
}

/* A list of views of arguments first.. (the resolved ObjectRef arguments). */
static PyObject *arg_views_from(loom_task_ctx *ctx, int first)
{
    int n = loom_task_nargs(ctx) - first;
    PyObject *list = PyList_New(n > 0 ? n : 0);
    for (int i = 0; list && i < n; i++) {
        PyObject *v = arg_view(ctx, first + i);
        if (!v) Py_CLEAR(list);
        else PyList_SET_ITEM(list, i, v);
    }
    return list;
}

/* The content digest of argument i (the code cache's key). */
static PyObject *arg_digest(loom_task_ctx *ctx, int i)
{
    const void *d;
    size_t n;
    if (arg_bytes(ctx, i, &d, &n)) return NULL;
    char hex[65];
    loom_sha256_hex(d, n, hex);
    return PyUnicode_FromString(hex);
}

/* ---- results ------------------------------------------------------------ */

/* Turn _wire's (ok, payload) into the task's result or failure.  For
 * actor_init, ok payloads are kept in *keep instead of returned. Holds the GIL. */
static int finish(loom_task_ctx *ctx, PyObject *r, PyObject **keep)
{
    if (!r) {
        note_py_error("loom's Python executor");
        return loom_task_fail(ctx, "%s", py_error);
    }
    int rc = 0;
    PyObject *ok = PyTuple_Check(r) && PyTuple_GET_SIZE(r) == 2 ? PyTuple_GET_ITEM(r, 0) : NULL;
    PyObject *payload = ok ? PyTuple_GET_ITEM(r, 1) : NULL;
    if (!ok) {
        rc = loom_task_fail(ctx, "loom's Python executor: malformed result");
    } else if (ok != Py_True) {
        const char *msg = PyUnicode_Check(payload) ? PyUnicode_AsUTF8(payload) : NULL;
        rc = loom_task_fail(ctx, "%s", msg ? msg : "Python task failed");
        PyErr_Clear();
    } else if (keep) {
        *keep = Py_NewRef(payload);
    } else if (PyObject_CheckBuffer(payload)) {  /* bytes, or a framed value's bytearray */
        Py_buffer b;
        if (PyObject_GetBuffer(payload, &b, PyBUF_SIMPLE) == 0) {
            rc = loom_task_return(ctx, b.buf, (size_t)b.len);
            PyBuffer_Release(&b);
        } else {
            PyErr_Clear();
            rc = loom_task_fail(ctx, "loom's Python executor: result is not a buffer");
        }
    } else {
        rc = loom_task_fail(ctx, "loom's Python executor: result is not bytes");
    }
    Py_DECREF(r);
    return rc;
}

/* Call _wire.<fn>(first, arg 1, args 2..) where first is built by the caller. */
static PyObject *call_wire(const char *fn, PyObject *a0, PyObject *a1, loom_task_ctx *ctx)
{
    PyObject *call = a0 && a1 ? arg_view(ctx, 1) : NULL;
    PyObject *refs = call ? arg_views_from(ctx, 2) : NULL;
    PyObject *r = NULL;
    loom_task_ctx *outer = cur_ctx;
    cur_ctx = ctx;
    if (refs) r = PyObject_CallMethod(py_wire, fn, "OOOO", a0, a1, call, refs);
    cur_ctx = outer;
    Py_XDECREF(call);
    Py_XDECREF(refs);
    return r;
}

/* ---- the task ----------------------------------------------------------- */

LOOM_TASK(py_call)
{
    if (ensure_python(ctx)) return LOOM_ETASK;
    if (loom_task_nargs(ctx) < 2) return loom_task_fail(ctx, "py_call: want a function and a call");
    PyGILState_STATE g = PyGILState_Ensure();
    PyObject *digest = arg_digest(ctx, 0);
    PyObject *fn = digest ? arg_view(ctx, 0) : NULL;
    int rc = finish(ctx, call_wire("run_call", digest, fn, ctx), NULL);
    Py_XDECREF(digest);
    Py_XDECREF(fn);
    PyGILState_Release(g);
    return rc;
}

/* Output i of a call with num_returns > 1: its result is a msgpack array
 * of bins (_wire.encode_returns); return element i's bytes.  Plain C: no
 * interpreter, a copy of one element. */
LOOM_TASK(py_item)
{
    const void *d;
    size_t n;
    int64_t i;
    if (loom_task_arg(ctx, 0, &d, &n) || loom_task_arg_i64(ctx, 1, &i))
        return loom_task_fail(ctx, "py_item: want a result and an index");
    loom_unpack u;
    loom_unpack_init(&u, d, n);
    uint32_t count;
    if (loom_unpack_array(&u, &count) || i < 0 || i >= (int64_t)count)
        return loom_task_fail(ctx, "py_item: output %lld of a result that is not an array of %lld or more",
                              (long long)i, (long long)i + 1);
    for (int64_t k = 0; k < i; k++)
        if (loom_unpack_skip(&u)) return loom_task_fail(ctx, "py_item: a malformed result");
    const void *item;
    size_t len;
    if (loom_unpack_bin(&u, &item, &len)) return loom_task_fail(ctx, "py_item: a malformed result");
    return loom_task_return(ctx, item, len);
}

/* PlacementGroup.ready(): wait, through this task's own client, until the
 * group is placed; returns msgpack true.  An infeasible or removed group
 * fails the task with the head's reason. */
LOOM_TASK(py_pg_ready)
{
    const void *d;
    size_t n;
    loom_pg pg;
    if (loom_task_arg(ctx, 0, &d, &n) || n != sizeof(pg.id))
        return loom_task_fail(ctx, "py_pg_ready: want a placement group id");
    memcpy(pg.id, d, sizeof(pg.id));
    loom_client *c = loom_task_client(ctx);
    if (!c) return LOOM_ETASK;   /* the reason is the task's error already */
    int rc = loom_pg_wait(c, pg, -1);
    if (rc < 0) return loom_task_fail(ctx, "placement group: %s", loom_last_error(c));
    return loom_task_return(ctx, "\xc3", 1);
}

/* ---- the actor ---------------------------------------------------------- */

LOOM_ACTOR_INIT(PyActor)
{
    if (ensure_python(ctx)) return LOOM_ETASK;
    if (loom_task_nargs(ctx) < 2) return loom_task_fail(ctx, "PyActor: want a class and a call");
    PyGILState_STATE g = PyGILState_Ensure();
    PyObject *digest = arg_digest(ctx, 0);
    PyObject *cls = digest ? arg_view(ctx, 0) : NULL;
    PyObject *instance = NULL;
    int rc = finish(ctx, call_wire("actor_init", digest, cls, ctx), &instance);
    Py_XDECREF(digest);
    Py_XDECREF(cls);
    if (!rc && instance) loom_actor_set_state(ctx, instance);  /* owned by the actor */
    PyGILState_Release(g);
    return rc;
}

LOOM_ACTOR_METHOD(PyActor, call)
{
    if (ensure_python(ctx)) return LOOM_ETASK;
    PyObject *instance = loom_actor_state(ctx);
    if (!instance) return loom_task_fail(ctx, "PyActor: the actor has no instance");
    if (loom_task_nargs(ctx) < 2) return loom_task_fail(ctx, "PyActor.call: want a method and a call");
    PyGILState_STATE g = PyGILState_Ensure();
    PyObject *method = arg_view(ctx, 0);
    int rc = finish(ctx, call_wire("actor_call", instance, method, ctx), NULL);
    Py_XDECREF(method);
    PyGILState_Release(g);
    return rc;
}

LOOM_ACTOR_DESTROY(PyActor)
{
    if (!state || !py_wire) return;
    PyGILState_STATE g = PyGILState_Ensure();
    Py_DECREF((PyObject *)state);
    PyGILState_Release(g);
}
