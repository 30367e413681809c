/* python/loom_ext.c — the _loom extension: libloom for the loom package.
 *
 * One client per Python process (g_client), made by connect() and freed by
 * disconnect().  A loom_client is not thread-safe, so every call into it
 * takes g_lock, and takes it with the GIL released (blocking calls — get,
 * wait, connect — never hold the GIL).  ObjectRef holds a 20-byte ref; one
 * made by put/submit/actor_call is owned by the Python object and released
 * when the object is collected: deallocation (which may run on any thread,
 * under the GIL, perhaps while another thread is inside libloom) only queues
 * the ref in g_pending, and the next call into the client releases the queue
 * with loom_release_many.  Refs of an earlier connection are never released
 * into a later one (session numbers).
 *
 * Errors: a negative libloom code raises whatever the factory registered by
 * the package (set_error_factory) makes of (code, message); loom/exceptions.py
 * maps codes to loom.TaskError, loom.GetTimeoutError, ... */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "loom/loom.h"
#include "python/pymsgpack.h"

#define ERR_LEN 2048
#define GET_SLICE_MS 500   /* a blocking get wakes this often to see Ctrl-C */

/* A connection and the zero-copy values got through it.  A value from the
 * node's store points into the store's LMDB map, which loom_disconnect
 * unmaps: so a disconnect while such values live only retires the
 * connection (g_conn becomes NULL; the client stays open for the values),
 * and the last value released disconnects it.  Under g_lock. */
typedef struct conn {
    loom_client *c;
    long live;        /* ValueBuffers alive */
    int retired;      /* disconnect once live == 0 */
    int borrowed;     /* a task's client (attach_task): the executor owns it */
} conn;

static loom_client *g_client;              /* g_conn->c, or NULL */
static conn *g_conn;
static uint64_t g_session;                 /* counts connections; under g_pending_lock */
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t g_pending_lock = PTHREAD_MUTEX_INITIALIZER;
static loom_ref *g_pending;                /* refs to release, malloc'd */
static int g_npending, g_cap_pending;
static PyObject *g_error_factory;          /* callable(code, message) -> exception */
static PyObject *g_ref_hook;               /* callable(ref): a ref pickled inside a value */
static PyObject *g_ref_from_id;            /* this module's ref_from_id, for __reduce__ */
static int g_borrowed;                     /* the connection is a task's (attach_task); under g_lock */

/* values whose ValueBuffer died while g_lock was taken: released by the next
 * holder of g_lock (under g_pending_lock) */
typedef struct pending_value {
    loom_value *v;
    conn *k;
} pending_value;
static pending_value *g_pvalues;
static int g_npvalues, g_cap_pvalues;
static long g_live_values;                 /* all ValueBuffers of the process; under g_lock */

/* ---- errors ------------------------------------------------------------- */

static PyObject *raise_loom(int rc, const char *msg)
{
    if (!msg || !*msg) msg = loom_strerror(rc);
    if (!g_error_factory) {
        PyErr_Format(PyExc_RuntimeError, "loom: %s (%s)", msg, loom_strerror(rc));
        return NULL;
    }
    PyObject *exc = PyObject_CallFunction(g_error_factory, "is", rc, msg);
    if (!exc) return NULL;
    PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
    Py_DECREF(exc);
    return NULL;
}

/* ---- pending releases --------------------------------------------------- */

/* Queue a ref of connection `session` for release (dropped when that
 * connection is gone: its refs went with it). */
static void pending_push(const loom_ref *r, uint64_t session)
{
    pthread_mutex_lock(&g_pending_lock);
    if (session != g_session) {
        pthread_mutex_unlock(&g_pending_lock);
        return;
    }
    if (g_npending == g_cap_pending) {
        int cap = g_cap_pending ? 2 * g_cap_pending : 64;
        loom_ref *p = realloc(g_pending, (size_t)cap * sizeof(*p));
        if (p) {
            g_pending = p;
            g_cap_pending = cap;
        }
    }
    if (g_npending < g_cap_pending) g_pending[g_npending++] = *r;  /* else: leaked to the session's end */
    pthread_mutex_unlock(&g_pending_lock);
}

static uint64_t current_session(void)
{
    pthread_mutex_lock(&g_pending_lock);
    uint64_t s = g_session;
    pthread_mutex_unlock(&g_pending_lock);
    return s;
}

/* A new connection (or none): refs of the old one are not released into it. */
static void new_session(void)
{
    pthread_mutex_lock(&g_pending_lock);
    g_session++;
    free(g_pending);
    g_pending = NULL;
    g_npending = g_cap_pending = 0;
    pthread_mutex_unlock(&g_pending_lock);
}

/* Release the queued refs.  Holds g_lock. */
static void pending_flush(void)
{
    pthread_mutex_lock(&g_pending_lock);
    loom_ref *refs = g_pending;
    int n = g_npending;
    g_pending = NULL;
    g_npending = g_cap_pending = 0;
    pthread_mutex_unlock(&g_pending_lock);
    if (n && g_client) loom_release_many(g_client, refs, n);
    free(refs);
}

/* Release a value of connection k; a retired connection goes with its last
 * value.  Holds g_lock. */
static void value_release_locked(conn *k, loom_value *v)
{
    loom_value_release(&v);
    g_live_values--;
    if (--k->live == 0 && k->retired) {
        if (!k->borrowed) loom_disconnect(&k->c);
        free(k);
    }
}

/* Release the values queued by ValueBuffers that died while g_lock was
 * taken.  Holds g_lock. */
static void pending_values_flush(void)
{
    pthread_mutex_lock(&g_pending_lock);
    pending_value *pv = g_pvalues;
    int n = g_npvalues;
    g_pvalues = NULL;
    g_npvalues = g_cap_pvalues = 0;
    pthread_mutex_unlock(&g_pending_lock);
    for (int i = 0; i < n; i++) value_release_locked(pv[i].k, pv[i].v);
    free(pv);
}

/* Run stmt (which sets int rc) on the client under g_lock, GIL released;
 * err receives the client's message when rc < 0. */
#define WITH_CLIENT(stmt)                                                     \
    do {                                                                      \
        Py_BEGIN_ALLOW_THREADS pthread_mutex_lock(&g_lock);                   \
        if (!g_client) {                                                      \
            rc = LOOM_ESTATE;                                                 \
            snprintf(err, sizeof(err), "%s", "loom is not initialized (call loom.init())"); \
        } else {                                                              \
            pending_flush();                                                  \
            pending_values_flush();                                           \
            stmt;                                                             \
            if (rc < 0) snprintf(err, sizeof(err), "%s", loom_last_error(g_client)); \
        }                                                                     \
        pthread_mutex_unlock(&g_lock);                                        \
        Py_END_ALLOW_THREADS                                                  \
    } while (0)

/* ---- ObjectRef ---------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    loom_ref ref;
    uint64_t session;
    int owned;        /* release when collected */
    PyObject *keep;   /* nested refs kept alive with this one, or NULL */
} RefObject;

static PyTypeObject RefType;

static int as_id(PyObject *o, void *out, size_t len, const char *what);

static PyObject *ref_new(const loom_ref *r, int owned)
{
    RefObject *o = PyObject_New(RefObject, &RefType);
    if (!o) {
        if (owned) pending_push(r, current_session());
        return NULL;
    }
    o->ref = *r;
    o->session = current_session();
    o->owned = owned;
    o->keep = NULL;
    return (PyObject *)o;
}

static void ref_dealloc(PyObject *self)
{
    RefObject *o = (RefObject *)self;
    if (o->owned) pending_push(&o->ref, o->session);
    Py_XDECREF(o->keep);
    PyObject_Free(self);
}

static PyObject *ref_hex(PyObject *self, PyObject *unused)
{
    char hex[2 * LOOM_ID_LEN + 1];
    loom_ref_to_hex(&((RefObject *)self)->ref, hex);
    return PyUnicode_FromString(hex);
}

static PyObject *ref_binary(PyObject *self, PyObject *unused)
{
    return PyBytes_FromStringAndSize((const char *)((RefObject *)self)->ref.id, LOOM_ID_LEN);
}

static PyObject *ref_repr(PyObject *self)
{
    char hex[2 * LOOM_ID_LEN + 1];
    loom_ref_to_hex(&((RefObject *)self)->ref, hex);
    return PyUnicode_FromFormat("ObjectRef(%s)", hex);
}

static Py_hash_t ref_hash(PyObject *self)
{
    Py_hash_t h;
    memcpy(&h, ((RefObject *)self)->ref.id, sizeof(h));
    return h == -1 ? -2 : h;
}

static PyObject *ref_richcompare(PyObject *a, PyObject *b, int op)
{
    if (!PyObject_TypeCheck(b, &RefType) || (op != Py_EQ && op != Py_NE)) Py_RETURN_NOTIMPLEMENTED;
    int eq = memcmp(((RefObject *)a)->ref.id, ((RefObject *)b)->ref.id, LOOM_ID_LEN) == 0;
    return PyBool_FromLong(op == Py_EQ ? eq : !eq);
}

/* A ref nested inside a value travels as its id (ref_from_id(id) on the
 * other side: a ref that does not release the object).  Who keeps the
 * object alive: in a driver, the package's hook (set_ref_hook) keeps this
 * ref with the value's own ref; in a task (a borrowed connection) the ref
 * escapes and is never released, so that the object outlives the task for
 * whoever reads the value (held until the executor exits). */
static PyObject *ref_reduce(PyObject *self, PyObject *unused)
{
    RefObject *o = (RefObject *)self;
    if (!g_ref_from_id) return PyErr_Format(PyExc_TypeError, "loom.ObjectRef: the module is not ready");
    pthread_mutex_lock(&g_lock);  /* never held for long without the GIL released */
    int borrowed = g_borrowed;
    pthread_mutex_unlock(&g_lock);
    if (borrowed) {
        o->owned = 0;
    } else if (g_ref_hook) {
        PyObject *r = PyObject_CallOneArg(g_ref_hook, self);
        if (!r) return NULL;
        Py_DECREF(r);
    }
    return Py_BuildValue("(O(y#))", g_ref_from_id, (const char *)o->ref.id, (Py_ssize_t)LOOM_ID_LEN);
}

static PyObject *py_ref_from_id(PyObject *self, PyObject *arg)
{
    loom_ref r;
    if (as_id(arg, r.id, LOOM_ID_LEN, "ref")) return NULL;
    return ref_new(&r, 0);
}

static PyObject *py_set_ref_hook(PyObject *self, PyObject *fn)
{
    if (fn != Py_None && !PyCallable_Check(fn)) return PyErr_Format(PyExc_TypeError, "want a callable or None");
    Py_XSETREF(g_ref_hook, fn == Py_None ? NULL : Py_NewRef(fn));
    Py_RETURN_NONE;
}

/* Keep `objs` alive as long as the ref `self` (the nested refs of a value
 * put or of a call's arguments, with the value's or the result's ref). */
static PyObject *ref_keep(PyObject *self, PyObject *objs)
{
    RefObject *o = (RefObject *)self;
    Py_XSETREF(o->keep, Py_NewRef(objs));
    Py_RETURN_NONE;
}

static PyMethodDef ref_methods[] = {
    {"hex", ref_hex, METH_NOARGS, "The ref's id as 40 hex digits."},
    {"binary", ref_binary, METH_NOARGS, "The ref's id as 20 bytes."},
    {"__reduce__", ref_reduce, METH_NOARGS, "A ref pickles as its id (see ref_reduce)."},
    {"_keep", ref_keep, METH_O, "Keep these objects alive as long as this ref."},
    {NULL, NULL, 0, NULL}};

static PyTypeObject RefType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "loom.ObjectRef",
    .tp_basicsize = sizeof(RefObject),
    .tp_dealloc = ref_dealloc,
    .tp_repr = ref_repr,
    .tp_hash = ref_hash,
    .tp_richcompare = ref_richcompare,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A reference to an object in the cluster: a put value or a task's result.",
    .tp_methods = ref_methods,
};

static int as_ref(PyObject *o, loom_ref *out)
{
    if (!PyObject_TypeCheck(o, &RefType)) {
        PyErr_Format(PyExc_TypeError, "expected an ObjectRef, got %s", Py_TYPE(o)->tp_name);
        return -1;
    }
    *out = ((RefObject *)o)->ref;
    return 0;
}

/* ---- arguments ---------------------------------------------------------- */

/* A task's arguments from a Python list of bytes-like values and ObjectRefs;
 * the buffers stay exported until args_free. */
typedef struct {
    loom_arg *args;
    Py_buffer *views;
    int n, nviews;
} arglist;

static void args_free(arglist *a)
{
    for (int i = 0; i < a->nviews; i++) PyBuffer_Release(&a->views[i]);
    free(a->args);
    free(a->views);
    memset(a, 0, sizeof(*a));
}

static int args_from(PyObject *list, arglist *a)
{
    memset(a, 0, sizeof(*a));
    PyObject *seq = PySequence_Fast(list, "task arguments must be a list");
    if (!seq) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    a->args = calloc((size_t)n + 1, sizeof(*a->args));
    a->views = calloc((size_t)n + 1, sizeof(*a->views));
    if (!a->args || !a->views) {
        Py_DECREF(seq);
        args_free(a);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, i);
        if (PyObject_TypeCheck(item, &RefType)) {
            a->args[i] = loom_arg_ref(((RefObject *)item)->ref);
        } else if (PyObject_GetBuffer(item, &a->views[a->nviews], PyBUF_SIMPLE) == 0) {
            Py_buffer *v = &a->views[a->nviews++];
            a->args[i] = loom_arg_value(v->buf, (size_t)v->len);
        } else {
            Py_DECREF(seq);
            args_free(a);
            return -1;
        }
        a->n++;
    }
    Py_DECREF(seq);
    return 0;
}

/* ---- ValueBuffer: a value got from the store, exported read-only ------- */

/* Values under ZC_MIN_BYTES are copied into bytes (cheaper than keeping a
 * read transaction of the store open); so are all values once ZC_MAX_LIVE
 * ValueBuffers live in the process: each holds one of the store's LMDB
 * reader slots (1,024 per node, shared with the daemon and executors). */
#define ZC_MIN_BYTES (64 * 1024)
#define ZC_MAX_LIVE 256

typedef struct {
    PyObject_HEAD
    loom_value *v;
    conn *k;
} ValueObject;

static PyTypeObject ValueType;

static void value_dealloc(PyObject *self)
{
    ValueObject *o = (ValueObject *)self;
    if (o->v) {
        /* the GIL is held: never wait for g_lock (its holder may be in a
           blocking get); when taken, queue for its holder */
        if (pthread_mutex_trylock(&g_lock) == 0) {
            value_release_locked(o->k, o->v);
            pthread_mutex_unlock(&g_lock);
        } else {
            pthread_mutex_lock(&g_pending_lock);
            if (g_npvalues == g_cap_pvalues) {
                int cap = g_cap_pvalues ? 2 * g_cap_pvalues : 16;
                pending_value *p = realloc(g_pvalues, (size_t)cap * sizeof(*p));
                if (p) {
                    g_pvalues = p;
                    g_cap_pvalues = cap;
                }
            }
            if (g_npvalues < g_cap_pvalues) g_pvalues[g_npvalues++] = (pending_value){o->v, o->k};
            /* else: out of memory, the value stays pinned to the end */
            pthread_mutex_unlock(&g_pending_lock);
        }
    }
    PyObject_Free(self);
}

static int value_getbuffer(PyObject *self, Py_buffer *view, int flags)
{
    ValueObject *o = (ValueObject *)self;
    static const char empty[1];
    size_t n = loom_value_size(o->v);
    const void *d = n ? loom_value_data(o->v) : empty;
    return PyBuffer_FillInfo(view, self, (void *)d, (Py_ssize_t)n, 1, flags);
}

static PyObject *value_address(PyObject *self, PyObject *unused)
{
    return PyLong_FromVoidPtr((void *)loom_value_data(((ValueObject *)self)->v));
}

static Py_ssize_t value_len(PyObject *self)
{
    return (Py_ssize_t)loom_value_size(((ValueObject *)self)->v);
}

static PyBufferProcs value_as_buffer = {value_getbuffer, NULL};
static PySequenceMethods value_as_sequence = {.sq_length = value_len};
static PyMethodDef value_methods[] = {
    {"address", value_address, METH_NOARGS, "The address of the first byte (for tests)."},
    {NULL, NULL, 0, NULL}};

static PyTypeObject ValueType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "loom.ValueBuffer",
    .tp_basicsize = sizeof(ValueObject),
    .tp_dealloc = value_dealloc,
    .tp_as_buffer = &value_as_buffer,
    .tp_as_sequence = &value_as_sequence,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The bytes of an object got from the cluster, read-only and zero-copy when the object "
              "is in this node's store; pinned (the store keeps the pages) while this object or a "
              "view of it (a NumPy array from loom.get) lives.",
    .tp_methods = value_methods,
};

/* The Python object of a got value of connection k (k->live counted it):
 * a ValueBuffer, or bytes for small values and past ZC_MAX_LIVE. */
static PyObject *value_wrap(loom_value *v, conn *k)
{
    if (loom_value_size(v) >= ZC_MIN_BYTES && g_live_values <= ZC_MAX_LIVE) {
        ValueObject *o = PyObject_New(ValueObject, &ValueType);
        if (o) {
            o->v = v;
            o->k = k;
            return (PyObject *)o;
        }
    }
    PyObject *out = PyErr_Occurred() ? NULL
                    : PyBytes_FromStringAndSize(loom_value_data(v), (Py_ssize_t)loom_value_size(v));
    Py_BEGIN_ALLOW_THREADS pthread_mutex_lock(&g_lock);
    value_release_locked(k, v);
    pthread_mutex_unlock(&g_lock);
    Py_END_ALLOW_THREADS
    return out;
}

/* ---- connecting --------------------------------------------------------- */

static PyObject *py_connect(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"address", "state_dir", "num_cpus", "num_nodes", "store_bytes", "num_gpus", NULL};
    const char *address = NULL, *state_dir = NULL;
    int num_cpus = 0, num_nodes = 0, num_gpus = -1;
    unsigned long long store_bytes = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|zziiKi", kwlist, &address, &state_dir, &num_cpus, &num_nodes,
                                     &store_bytes, &num_gpus))
        return NULL;
    if (num_nodes < 0 || num_nodes > 64 || num_gpus < -1 || num_gpus > 1024)
        return PyErr_Format(PyExc_ValueError, "num_nodes: 0 to 64; num_gpus: -1 (as found) to 1024");
    loom_connect_opts o = {0};
    o.state_dir = state_dir;
    o.num_cpus = num_cpus;
    o.num_nodes = num_nodes;
    o.store_bytes = store_bytes;
    loom_node_spec specs[64];
    if (num_gpus >= 0) {   /* each node of a local cluster reports this many GPUs */
        for (int i = 0; i < (num_nodes ? num_nodes : 1); i++) specs[i] = (loom_node_spec){.num_gpus = num_gpus};
        o.nodes = specs;
        if (!num_nodes) o.num_nodes = 1;
    }
    char err[ERR_LEN] = "";
    int rc;
    Py_BEGIN_ALLOW_THREADS pthread_mutex_lock(&g_lock);
    if (g_client) {
        rc = LOOM_ESTATE;
        snprintf(err, sizeof(err), "%s", "loom is already initialized (call loom.shutdown() first)");
    } else {
        loom_client *c = NULL;
        conn *k = calloc(1, sizeof(*k));
        rc = k ? loom_connect(address, &o, &c) : LOOM_ENOMEM;
        if (rc < 0) {
            snprintf(err, sizeof(err), "%s", c ? loom_last_error(c) : "");
            loom_disconnect(&c);
            free(k);
        } else {
            k->c = c;
            g_conn = k;
            g_client = c;
            new_session();
        }
    }
    pthread_mutex_unlock(&g_lock);
    Py_END_ALLOW_THREADS
    if (rc < 0) return raise_loom(rc, err);
    Py_RETURN_NONE;
}

static PyObject *py_disconnect(PyObject *self, PyObject *unused)
{
    Py_BEGIN_ALLOW_THREADS pthread_mutex_lock(&g_lock);
    pending_values_flush();
    if (g_conn) {
        if (g_conn->live == 0) {
            if (!g_conn->borrowed) loom_disconnect(&g_conn->c);
            free(g_conn);
        } else {
            pending_flush();
            g_conn->retired = 1;   /* the last ValueBuffer disconnects it */
        }
        g_conn = NULL;
        g_client = NULL;
        g_borrowed = 0;
        new_session();
    }
    pthread_mutex_unlock(&g_lock);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* Inside a Python task: use the task's own client (loom_task_client, kept
 * by the executor for its life; never disconnected here), so that a task or
 * an actor method can submit tasks, call actors, put and get.  The capsule
 * comes from libloom_python.so (pytask.c) and holds a function returning the
 * client of the task running on the calling thread. */
typedef loom_client *(*task_client_fn)(char *err, size_t errlen);

static PyObject *py_attach_task(PyObject *self, PyObject *capsule)
{
    task_client_fn fn = (task_client_fn)PyCapsule_GetPointer(capsule, "loom.task_client");
    if (!fn) return NULL;
    char err[ERR_LEN] = "";
    int rc = 0;
    Py_BEGIN_ALLOW_THREADS pthread_mutex_lock(&g_lock);
    if (!g_client) {
        conn *k = calloc(1, sizeof(*k));
        loom_client *c = k ? fn(err, sizeof(err)) : NULL;
        if (!c) {
            rc = k ? LOOM_ECONN : LOOM_ENOMEM;
            free(k);
        } else {
            k->c = c;
            k->borrowed = 1;
            g_borrowed = 1;
            g_conn = k;
            g_client = c;
            new_session();
        }
    }
    pthread_mutex_unlock(&g_lock);
    Py_END_ALLOW_THREADS
    if (rc < 0) return raise_loom(rc, err[0] ? err : "a task's client: not inside a loom task");
    Py_RETURN_NONE;
}

static PyObject *py_is_connected(PyObject *self, PyObject *unused)
{
    pthread_mutex_lock(&g_lock);  /* never held for long without the GIL released */
    int up = g_client != NULL;
    pthread_mutex_unlock(&g_lock);
    return PyBool_FromLong(up);
}

/* ---- objects ------------------------------------------------------------ */

static PyObject *py_put(PyObject *self, PyObject *arg)
{
    Py_buffer v;
    if (PyObject_GetBuffer(arg, &v, PyBUF_SIMPLE)) return NULL;
    loom_ref ref;
    char err[ERR_LEN] = "";
    int rc;
    WITH_CLIENT(rc = loom_put(g_client, v.buf, (size_t)v.len, &ref));
    PyBuffer_Release(&v);
    if (rc < 0) return raise_loom(rc, err);
    return ref_new(&ref, 1);
}

#define PUT_MAX_PARTS 4096

/* put_parts([buffer, ...]): one object, the buffers one after another,
 * copied once (straight into the node's store when it is on this machine):
 * a framed value's header and its arrays' buffers, never joined first. */
static PyObject *py_put_parts(PyObject *self, PyObject *list)
{
    PyObject *seq = PySequence_Fast(list, "put_parts: want a list of buffers");
    if (!seq) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n > PUT_MAX_PARTS) {
        Py_DECREF(seq);
        return PyErr_Format(PyExc_ValueError, "put_parts: at most %d parts", PUT_MAX_PARTS);
    }
    Py_buffer *views = calloc((size_t)(n ? n : 1), sizeof(*views));
    loom_part *parts = calloc((size_t)(n ? n : 1), sizeof(*parts));
    Py_ssize_t got = 0;
    if (!views || !parts) PyErr_NoMemory();
    else
        for (; got < n; got++) {
            if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(seq, got), &views[got], PyBUF_SIMPLE)) break;
            parts[got].data = views[got].buf;
            parts[got].len = (size_t)views[got].len;
        }
    loom_ref ref;
    char err[ERR_LEN] = "";
    int rc = 0;
    if (views && parts && got == n) WITH_CLIENT(rc = loom_put_parts(g_client, parts, (int)n, &ref));
    for (Py_ssize_t i = 0; i < got; i++) PyBuffer_Release(&views[i]);
    int ok = views && parts && got == n;
    free(views);
    free(parts);
    Py_DECREF(seq);
    if (!ok) return NULL;
    if (rc < 0) return raise_loom(rc, err);
    return ref_new(&ref, 1);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static PyObject *py_get(PyObject *self, PyObject *args)
{
    PyObject *refobj;
    long long timeout_ms = -1;
    if (!PyArg_ParseTuple(args, "O|L", &refobj, &timeout_ms)) return NULL;
    loom_ref ref;
    if (as_ref(refobj, &ref)) return NULL;
    int64_t deadline = timeout_ms >= 0 ? now_ms() + timeout_ms : -1;
    loom_value *v = NULL;
    conn *k = NULL;
    char err[ERR_LEN] = "";
    int rc;
    for (;;) {
        int64_t slice = GET_SLICE_MS;
        if (deadline >= 0) {
            int64_t left = deadline - now_ms();
            slice = left < 0 ? 0 : left < slice ? left : slice;
        }
        WITH_CLIENT(rc = loom_get(g_client, ref, slice, &v); if (rc == 0) {
            k = g_conn;
            k->live++;
            g_live_values++;
        });
        if (rc != LOOM_ETIMEOUT || (deadline >= 0 && now_ms() >= deadline)) break;
        if (PyErr_CheckSignals()) return NULL;
    }
    if (rc < 0) return raise_loom(rc, err);
    return value_wrap(v, k);
}

static PyObject *py_wait(PyObject *self, PyObject *args)
{
    PyObject *list;
    int num_returns;
    long long timeout_ms;
    if (!PyArg_ParseTuple(args, "OiL", &list, &num_returns, &timeout_ms)) return NULL;
    PyObject *seq = PySequence_Fast(list, "wait: want a list of ObjectRefs");
    if (!seq) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n > INT32_MAX / 2) {
        Py_DECREF(seq);
        return PyErr_Format(PyExc_ValueError, "wait: too many refs");
    }
    loom_ref *refs = calloc((size_t)n + 1, sizeof(*refs));
    int *ready = calloc((size_t)n + 1, sizeof(*ready));
    PyObject *out = NULL;
    if (!refs || !ready) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++)
        if (as_ref(PySequence_Fast_GET_ITEM(seq, i), &refs[i])) goto done;
    char err[ERR_LEN] = "";
    int rc;
    WITH_CLIENT(rc = loom_wait(g_client, refs, (int)n, num_returns, timeout_ms, ready));
    if (rc < 0 && rc != LOOM_ETIMEOUT) {
        raise_loom(rc, err);
        goto done;
    }
    out = PyList_New(n);
    for (Py_ssize_t i = 0; out && i < n; i++) PyList_SET_ITEM(out, i, PyBool_FromLong(ready[i]));
done:
    free(refs);
    free(ready);
    Py_DECREF(seq);
    return out;
}

static PyObject *py_cancel(PyObject *self, PyObject *arg)
{
    loom_ref ref;
    if (as_ref(arg, &ref)) return NULL;
    char err[ERR_LEN] = "";
    int rc;
    WITH_CLIENT(rc = loom_cancel(g_client, ref));
    if (rc < 0) return raise_loom(rc, err);
    Py_RETURN_NONE;
}

static PyObject *py_library_load(PyObject *self, PyObject *args)
{
    const char *path;
    if (!PyArg_ParseTuple(args, "s", &path)) return NULL;
    loom_ref lib;
    char err[ERR_LEN] = "";
    int rc;
    WITH_CLIENT(rc = loom_library_load(g_client, path, &lib));
    if (rc < 0) return raise_loom(rc, err);
    return PyBytes_FromStringAndSize((const char *)lib.id, LOOM_ID_LEN);
}

static PyObject *json_result(int rc, char *json, const char *err);

static int as_id(PyObject *o, void *out, size_t len, const char *what)
{
    char *d;
    Py_ssize_t n;
    if (PyBytes_AsStringAndSize(o, &d, &n)) return -1;
    if ((size_t)n != len) {
        PyErr_Format(PyExc_ValueError, "%s: want %d bytes", what, (int)len);
        return -1;
    }
    memcpy(out, d, len);
    return 0;
}

/* ---- scheduling options ------------------------------------------------- */

#define SCHED_MAX_RES 16

/* What a task or actor asks of placement besides CPUs, GPUs and memory:
 * custom resources, a strategy (default, spread, node affinity) and a
 * placement group.  Names point into the caller's dict (alive for the call). */
typedef struct sched_opts {
    loom_resource res[SCHED_MAX_RES];
    loom_pg pg;
} sched_opts;

/* Custom resources {name: amount} into r[] (at most SCHED_MAX_RES); the
 * count, or -1 with an exception. */
static int resources_from(PyObject *dict, loom_resource *r)
{
    if (!dict || dict == Py_None) return 0;
    if (!PyDict_Check(dict)) {
        PyErr_SetString(PyExc_TypeError, "resources: want a dict {name: amount}");
        return -1;
    }
    if (PyDict_GET_SIZE(dict) > SCHED_MAX_RES) {
        PyErr_Format(PyExc_ValueError, "resources: at most %d custom resources", SCHED_MAX_RES);
        return -1;
    }
    Py_ssize_t pos = 0;
    PyObject *k, *v;
    int n = 0;
    while (PyDict_Next(dict, &pos, &k, &v)) {
        const char *name = PyUnicode_Check(k) ? PyUnicode_AsUTF8(k) : NULL;
        double amount = PyFloat_AsDouble(v);
        if (!name || (amount == -1.0 && PyErr_Occurred())) {
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "resources: names are str, amounts numbers");
            return -1;
        }
        r[n].name = name;
        r[n].amount = amount;
        n++;
    }
    return n;
}

/* sched = None or (strategy, node, soft, pg id or None, bundle, resources or None)
 * into o (whose pointers then point into s and the tuple). */
static int sched_from(PyObject *sched, loom_task_opts *o, sched_opts *s)
{
    if (!sched || sched == Py_None) return 0;
    int strategy, soft, bundle;
    unsigned int node;
    PyObject *pg, *res;
    if (!PyArg_ParseTuple(sched, "iIpOiO;sched: want (strategy, node, soft, pg, bundle, resources)", &strategy,
                          &node, &soft, &pg, &bundle, &res))
        return -1;
    o->strategy = strategy;
    o->node = node;
    o->soft = soft;
    if (pg != Py_None) {
        if (as_id(pg, s->pg.id, sizeof(s->pg.id), "placement group")) return -1;
        o->pg = &s->pg;
        o->bundle = bundle;
    }
    int n = resources_from(res, s->res);
    if (n < 0) return -1;
    o->resources = n ? s->res : NULL;
    o->nresources = n;
    return 0;
}

/* ---- tasks -------------------------------------------------------------- */

static PyObject *py_submit(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"lib", "function", "args", "name", "num_cpus", "num_gpus", "memory",
                             "max_retries", "retry_exceptions", "sched", NULL};
    PyObject *libobj, *list, *sched = NULL;
    const char *function, *name = NULL;
    double num_cpus = 0, num_gpus = 0;
    unsigned long long memory = 0;
    int max_retries = 0, retry_exceptions = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OsO|zddKipO", kwlist, &libobj, &function, &list, &name,
                                     &num_cpus, &num_gpus, &memory, &max_retries, &retry_exceptions, &sched))
        return NULL;
    loom_ref lib;
    if (as_id(libobj, lib.id, LOOM_ID_LEN, "lib")) return NULL;
    loom_task_opts o = {0};
    sched_opts so;
    if (sched_from(sched, &o, &so)) return NULL;
    arglist a;
    if (args_from(list, &a)) return NULL;
    o.name = name;
    o.num_cpus = num_cpus;
    o.num_gpus = num_gpus;
    o.memory = memory;
    o.max_retries = max_retries;
    o.retry_on_error = retry_exceptions;
    loom_ref out;
    char err[ERR_LEN] = "";
    int rc;
    WITH_CLIENT(rc = loom_submit(g_client, lib, function, a.args, a.n, &o, &out));
    args_free(&a);
    if (rc < 0) return raise_loom(rc, err);
    return ref_new(&out, 1);
}

/* ---- actors ------------------------------------------------------------- */

static PyObject *py_actor_create(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"lib", "cls", "args", "name", "detached", "max_concurrency", "max_restarts",
                             "max_task_retries", "num_cpus", "num_gpus", "memory", "sched", NULL};
    PyObject *libobj, *list, *sched = NULL;
    const char *cls, *name = NULL;
    int detached = 0, max_concurrency = 1, max_restarts = 0, max_task_retries = 0;
    double num_cpus = 0, num_gpus = 0;
    unsigned long long memory = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OsO|zpiiiddKO", kwlist, &libobj, &cls, &list, &name, &detached,
                                     &max_concurrency, &max_restarts, &max_task_retries, &num_cpus, &num_gpus,
                                     &memory, &sched))
        return NULL;
    loom_ref lib;
    if (as_id(libobj, lib.id, LOOM_ID_LEN, "lib")) return NULL;
    loom_actor_opts o = {0};
    sched_opts so;
    if (sched_from(sched, &o.res, &so)) return NULL;
    arglist a;
    if (args_from(list, &a)) return NULL;
    o.name = name;
    o.detached = detached;
    o.max_concurrency = max_concurrency;
    o.max_restarts = max_restarts;
    o.max_task_retries = max_task_retries;
    o.res.num_cpus = num_cpus;
    o.res.num_gpus = num_gpus;
    o.res.memory = memory;
    loom_actor actor;
    char err[ERR_LEN] = "";
    int rc;
    WITH_CLIENT(rc = loom_actor_create(g_client, lib, cls, a.args, a.n, &o, &actor));
    args_free(&a);
    if (rc < 0) return raise_loom(rc, err);
    return PyBytes_FromStringAndSize((const char *)actor.id, sizeof(actor.id));
}

static PyObject *py_actor_call(PyObject *self, PyObject *args)
{
    PyObject *idobj, *list;
    const char *method;
    if (!PyArg_ParseTuple(args, "OsO", &idobj, &method, &list)) return NULL;
    loom_actor actor;
    if (as_id(idobj, actor.id, sizeof(actor.id), "actor")) return NULL;
    arglist a;
    if (args_from(list, &a)) return NULL;
    loom_ref out;
    char err[ERR_LEN] = "";
    int rc;
    WITH_CLIENT(rc = loom_actor_call(g_client, actor, method, a.args, a.n, &out));
    args_free(&a);
    if (rc < 0) return raise_loom(rc, err);
    return ref_new(&out, 1);
}

static PyObject *py_actor_wait_ready(PyObject *self, PyObject *args)
{
    PyObject *idobj;
    long long timeout_ms = -1;
    if (!PyArg_ParseTuple(args, "O|L", &idobj, &timeout_ms)) return NULL;
    loom_actor actor;
    if (as_id(idobj, actor.id, sizeof(actor.id), "actor")) return NULL;
    char err[ERR_LEN] = "";
    int rc;
    WITH_CLIENT(rc = loom_actor_wait_ready(g_client, actor, timeout_ms));
    if (rc < 0) return raise_loom(rc, err);
    Py_RETURN_NONE;
}

static PyObject *py_actor_lookup(PyObject *self, PyObject *args)
{
    const char *name;
    if (!PyArg_ParseTuple(args, "s", &name)) return NULL;
    loom_actor actor;
    char err[ERR_LEN] = "";
    int rc;
    WITH_CLIENT(rc = loom_actor_lookup(g_client, name, &actor));
    if (rc < 0) return raise_loom(rc, err);
    return PyBytes_FromStringAndSize((const char *)actor.id, sizeof(actor.id));
}

static PyObject *py_actor_kill(PyObject *self, PyObject *idobj)
{
    loom_actor actor;
    if (as_id(idobj, actor.id, sizeof(actor.id), "actor")) return NULL;
    char err[ERR_LEN] = "";
    int rc;
    WITH_CLIENT(rc = loom_actor_kill(g_client, actor));
    if (rc < 0) return raise_loom(rc, err);
    Py_RETURN_NONE;
}

/* ---- placement groups --------------------------------------------------- */

#define PG_MAX_BUNDLES 1024

static PyObject *py_pg_create(PyObject *self, PyObject *args)
{
    PyObject *list;
    int strategy;
    const char *name = NULL;
    if (!PyArg_ParseTuple(args, "Oi|z", &list, &strategy, &name)) return NULL;
    PyObject *seq = PySequence_Fast(list, "placement group: want a list of bundles");
    if (!seq) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n < 1 || n > PG_MAX_BUNDLES) {
        Py_DECREF(seq);
        return PyErr_Format(PyExc_ValueError, "placement group: 1 to %d bundles", PG_MAX_BUNDLES);
    }
    loom_bundle *b = calloc((size_t)n, sizeof(*b));
    loom_resource *res = calloc((size_t)n * SCHED_MAX_RES, sizeof(*res));
    int bad = !b || !res;
    if (bad) PyErr_NoMemory();
    for (Py_ssize_t i = 0; !bad && i < n; i++) {   /* each (cpus, memory, gpus, {name: amount}) */
        unsigned long long memory;
        PyObject *custom;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i), "dKdO;a bundle: (cpus, memory, gpus, resources)",
                              &b[i].num_cpus, &memory, &b[i].num_gpus, &custom)) {
            bad = 1;
            break;
        }
        b[i].memory = memory;
        int k = resources_from(custom, res + i * SCHED_MAX_RES);
        if (k < 0) bad = 1;
        b[i].resources = k ? res + i * SCHED_MAX_RES : NULL;
        b[i].nresources = k > 0 ? k : 0;
    }
    loom_pg pg;
    char err[ERR_LEN] = "";
    int rc = 0;
    if (!bad) WITH_CLIENT(rc = loom_pg_create(g_client, b, (int)n, strategy, name, &pg));
    free(b);
    free(res);
    Py_DECREF(seq);
    if (bad) return NULL;
    if (rc < 0) return raise_loom(rc, err);
    return PyBytes_FromStringAndSize((const char *)pg.id, sizeof(pg.id));
}

static PyObject *py_pg_wait(PyObject *self, PyObject *args)
{
    PyObject *idobj;
    long long timeout_ms = -1;
    if (!PyArg_ParseTuple(args, "O|L", &idobj, &timeout_ms)) return NULL;
    loom_pg pg;
    if (as_id(idobj, pg.id, sizeof(pg.id), "placement group")) return NULL;
    char err[ERR_LEN] = "";
    int rc;
    WITH_CLIENT(rc = loom_pg_wait(g_client, pg, timeout_ms));
    if (rc == LOOM_ETIMEOUT) Py_RETURN_FALSE;
    if (rc < 0) return raise_loom(rc, err);
    Py_RETURN_TRUE;
}

static PyObject *py_pg_remove(PyObject *self, PyObject *idobj)
{
    loom_pg pg;
    if (as_id(idobj, pg.id, sizeof(pg.id), "placement group")) return NULL;
    char err[ERR_LEN] = "";
    int rc;
    WITH_CLIENT(rc = loom_pg_remove(g_client, pg));
    if (rc < 0) return raise_loom(rc, err);
    Py_RETURN_NONE;
}

static PyObject *py_pg_json(PyObject *self, PyObject *idobj)
{
    loom_pg pg;
    if (as_id(idobj, pg.id, sizeof(pg.id), "placement group")) return NULL;
    char *json = NULL, err[ERR_LEN] = "";
    int rc;
    WITH_CLIENT(rc = loom_pg_json(g_client, pg, &json));
    return json_result(rc, json, err);
}

/* ---- key-value table and inspection ------------------------------------- */

static PyObject *py_kv_put(PyObject *self, PyObject *args)
{
    const char *key;
    Py_buffer v;
    if (!PyArg_ParseTuple(args, "sy*", &key, &v)) return NULL;
    char err[ERR_LEN] = "";
    int rc;
    WITH_CLIENT(rc = loom_kv_put(g_client, key, v.buf, (size_t)v.len));
    PyBuffer_Release(&v);
    if (rc < 0) return raise_loom(rc, err);
    Py_RETURN_NONE;
}

static PyObject *py_kv_get(PyObject *self, PyObject *args)
{
    const char *key;
    long long timeout_ms = 0;
    if (!PyArg_ParseTuple(args, "s|L", &key, &timeout_ms)) return NULL;
    void *data = NULL;
    size_t len = 0;
    char err[ERR_LEN] = "";
    int rc;
    WITH_CLIENT(rc = loom_kv_get(g_client, key, timeout_ms, &data, &len));
    if (rc == LOOM_ENOTFOUND || rc == LOOM_ETIMEOUT) Py_RETURN_NONE;
    if (rc < 0) return raise_loom(rc, err);
    PyObject *out = PyBytes_FromStringAndSize(data, (Py_ssize_t)len);
    free(data);
    return out;
}

static PyObject *py_kv_del(PyObject *self, PyObject *args)
{
    const char *key;
    if (!PyArg_ParseTuple(args, "s", &key)) return NULL;
    char err[ERR_LEN] = "";
    int rc;
    WITH_CLIENT(rc = loom_kv_del(g_client, key));
    if (rc < 0 && rc != LOOM_ENOTFOUND) return raise_loom(rc, err);
    Py_RETURN_NONE;
}

static PyObject *json_result(int rc, char *json, const char *err)
{
    if (rc < 0) return raise_loom(rc, err);
    PyObject *out = PyUnicode_FromString(json ? json : "null");
    free(json);
    return out;
}

static PyObject *py_status_json(PyObject *self, PyObject *unused)
{
    char *json = NULL, err[ERR_LEN] = "";
    int rc;
    WITH_CLIENT(rc = loom_status_json(g_client, &json));
    return json_result(rc, json, err);
}

static PyObject *py_actors_json(PyObject *self, PyObject *unused)
{
    char *json = NULL, err[ERR_LEN] = "";
    int rc;
    WITH_CLIENT(rc = loom_actors_json(g_client, &json));
    return json_result(rc, json, err);
}

static PyObject *py_set_error_factory(PyObject *self, PyObject *fn)
{
    if (!PyCallable_Check(fn)) return PyErr_Format(PyExc_TypeError, "want a callable");
    Py_XSETREF(g_error_factory, Py_NewRef(fn));
    Py_RETURN_NONE;
}

/* ---- the module --------------------------------------------------------- */

static PyMethodDef module_methods[] = {
    {"connect", (PyCFunction)(void (*)(void))py_connect, METH_VARARGS | METH_KEYWORDS,
     "connect(address=None, state_dir=None, num_cpus=0, num_nodes=0, store_bytes=0, num_gpus=-1)"},
    {"disconnect", py_disconnect, METH_NOARGS, "Disconnect (stops a local cluster)."},
    {"attach_task", py_attach_task, METH_O, "attach_task(capsule): use the running task's client"},
    {"is_connected", py_is_connected, METH_NOARGS, "Whether a client is connected."},
    {"put", py_put, METH_O, "put(buffer) -> ObjectRef"},
    {"put_parts", py_put_parts, METH_O, "put_parts([buffer, ...]) -> ObjectRef of their concatenation"},
    {"get", py_get, METH_VARARGS, "get(ref, timeout_ms=-1) -> ValueBuffer (zero-copy) or bytes"},
    {"wait", py_wait, METH_VARARGS, "wait(refs, num_returns, timeout_ms) -> [bool]"},
    {"cancel", py_cancel, METH_O, "cancel(ref)"},
    {"library_load", py_library_load, METH_VARARGS, "library_load(path) -> lib id (bytes)"},
    {"submit", (PyCFunction)(void (*)(void))py_submit, METH_VARARGS | METH_KEYWORDS,
     "submit(lib, function, args, name=None, num_cpus=0, num_gpus=0, memory=0, max_retries=0, "
     "retry_exceptions=False, sched=None) -> ObjectRef"},
    {"actor_create", (PyCFunction)(void (*)(void))py_actor_create, METH_VARARGS | METH_KEYWORDS,
     "actor_create(lib, cls, args, name=None, detached=False, max_concurrency=1, max_restarts=0, "
     "max_task_retries=0, num_cpus=0, num_gpus=0, memory=0, sched=None) -> actor id (bytes)"},
    {"actor_call", py_actor_call, METH_VARARGS, "actor_call(actor, method, args) -> ObjectRef"},
    {"actor_wait_ready", py_actor_wait_ready, METH_VARARGS, "actor_wait_ready(actor, timeout_ms=-1)"},
    {"actor_lookup", py_actor_lookup, METH_VARARGS, "actor_lookup(name) -> actor id"},
    {"actor_kill", py_actor_kill, METH_O, "actor_kill(actor)"},
    {"pg_create", py_pg_create, METH_VARARGS,
     "pg_create([(cpus, memory, gpus, resources)], strategy, name=None) -> pg id (bytes)"},
    {"pg_wait", py_pg_wait, METH_VARARGS, "pg_wait(pg, timeout_ms=-1) -> True, or False on timeout"},
    {"pg_remove", py_pg_remove, METH_O, "pg_remove(pg)"},
    {"pg_json", py_pg_json, METH_O, "pg_json(pg) -> the group as JSON text"},
    {"kv_put", py_kv_put, METH_VARARGS, "kv_put(key, bytes)"},
    {"kv_get", py_kv_get, METH_VARARGS, "kv_get(key, timeout_ms=0) -> bytes or None"},
    {"kv_del", py_kv_del, METH_VARARGS, "kv_del(key)"},
    {"status_json", py_status_json, METH_NOARGS, "The cluster's state as JSON text."},
    {"actors_json", py_actors_json, METH_NOARGS, "The actors the head knows, as JSON text."},
    {"set_error_factory", py_set_error_factory, METH_O, "set_error_factory(fn(code, message))"},
    {"set_ref_hook", py_set_ref_hook, METH_O, "set_ref_hook(fn(ref) or None): called for each ref pickled"},
    {"ref_from_id", py_ref_from_id, METH_O, "ref_from_id(20 bytes) -> ObjectRef (does not release)"},
    {"mp_pack", loom__pymp_pack, METH_O, "value -> msgpack bytes, or None"},
    {"mp_unpack", loom__pymp_unpack, METH_O, "buffer -> (ok, value)"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "loom._loom", "libloom for the loom package (see python/README.md).", -1,
    module_methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__loom(void)
{
    if (PyType_Ready(&RefType) < 0 || PyType_Ready(&ValueType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module_def);
    if (!m) return NULL;
    if (PyModule_AddObjectRef(m, "ObjectRef", (PyObject *)&RefType) ||
        PyModule_AddObjectRef(m, "ValueBuffer", (PyObject *)&ValueType) ||
        PyModule_AddIntConstant(m, "ZC_MIN_BYTES", ZC_MIN_BYTES) ||
        PyModule_AddObject(m, "PYTASK_PATHS", Py_BuildValue("(ss)", LOOM_PYTASK_BUILD, LOOM_PYTASK_INSTALL)) ||
        PyModule_AddIntConstant(m, "ID_LEN", LOOM_ID_LEN)) {
        Py_DECREF(m);
        return NULL;
    }
    g_ref_from_id = PyObject_GetAttrString(m, "ref_from_id");
    if (!g_ref_from_id) {
        Py_DECREF(m);
        return NULL;
    }
    static const struct { const char *name; int code; } codes[] = {
        {"EINVAL", LOOM_EINVAL}, {"ETIMEOUT", LOOM_ETIMEOUT}, {"ECONN", LOOM_ECONN},
        {"ENOTFOUND", LOOM_ENOTFOUND}, {"ETASK", LOOM_ETASK}, {"ECANCELLED", LOOM_ECANCELLED},
        {"EDEP", LOOM_EDEP}, {"ENODE", LOOM_ENODE}, {"EINFEASIBLE", LOOM_EINFEASIBLE},
        {"ESTATE", LOOM_ESTATE}, {"EACTOR", LOOM_EACTOR}, {"EWORKER", LOOM_EWORKER},
        {"SCHED_DEFAULT", LOOM_SCHED_DEFAULT}, {"SCHED_SPREAD", LOOM_SCHED_SPREAD},
        {"SCHED_NODE", LOOM_SCHED_NODE}, {"ANY_BUNDLE", LOOM_ANY_BUNDLE}, {"PG_PACK", LOOM_PG_PACK},
        {"PG_SPREAD", LOOM_PG_SPREAD}, {"PG_STRICT_PACK", LOOM_PG_STRICT_PACK},
        {"PG_STRICT_SPREAD", LOOM_PG_STRICT_SPREAD}};
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
        if (PyModule_AddIntConstant(m, codes[i].name, codes[i].code)) {
            Py_DECREF(m);
            return NULL;
        }
    return m;
}
