/* api/collective_nccl.c — the NCCL backend of loom/collective.h.
 *
 * libnccl.so.2 and libcudart are loaded with dlopen the first time they are
 * needed, so libloom needs neither to build or to run; the few NCCL and CUDA
 * types used are declared here (ABI-stable since NCCL 2 and CUDA 11).  The
 * device is the first visible one (the scheduler narrows CUDA_VISIBLE_DEVICES
 * per task).  Host buffers are staged through one device buffer that grows as
 * needed; device and managed buffers are used in place.
 *
 * Joining: rank 0 asks NCCL for a unique id and publishes it under
 * "loom/coll/<name>/nccl_id"; every member publishes "loom/coll/<name>/<rank>"
 * and waits (bounded by the timeout) for all the others before calling
 * ncclCommInitRank, which would otherwise block without limit on a member that
 * never comes.  Operations are enqueued on the group's stream and awaited by
 * polling it; a member that does not take part within the timeout makes the
 * communicator abort (LOOM_ETIMEOUT). */
#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "base/cuda_dl.h"
#include "api/collective_internal.h"
#include "runtime/util.h"

/* ---- the slice of nccl.h and cuda_runtime_api.h used here ---------------- */

#define NCCL_UNIQUE_ID_BYTES 128
typedef struct { char internal[NCCL_UNIQUE_ID_BYTES]; } nccl_unique_id;
typedef struct nccl_comm *nccl_comm_t;
typedef struct cuda_stream *cuda_stream_t;
typedef int nccl_result;          /* ncclResult_t */
typedef int cuda_error;           /* cudaError_t */

enum { NCCL_SUCCESS = 0, NCCL_IN_PROGRESS = 7 };
enum { NCCL_UINT8 = 1, NCCL_INT32 = 2, NCCL_INT64 = 4, NCCL_FLOAT32 = 7, NCCL_FLOAT64 = 8 };
enum { NCCL_SUM = 0, NCCL_PROD = 1, NCCL_MAX = 2, NCCL_MIN = 3 };
enum { CUDA_SUCCESS = 0, CUDA_ERROR_NOT_READY = 600 };
enum { CUDA_MEMCPY_H2D = 1, CUDA_MEMCPY_D2H = 2 };
enum { CUDA_MEMORY_DEVICE = 2, CUDA_MEMORY_MANAGED = 3 };

/* cudaPointerAttributes: `type` comes first in every CUDA version; later
 * versions add fields, so leave room. */
typedef struct {
    int type;
    int device;
    void *device_pointer;
    void *host_pointer;
    long reserved[32];
} cuda_pointer_attributes;

static struct {
    int loaded;
    char why[256];
    nccl_result (*get_unique_id)(nccl_unique_id *);
    nccl_result (*comm_init_rank)(nccl_comm_t *, int, nccl_unique_id, int);
    nccl_result (*all_reduce)(const void *, void *, size_t, int, int, nccl_comm_t, cuda_stream_t);
    nccl_result (*broadcast)(const void *, void *, size_t, int, int, nccl_comm_t, cuda_stream_t);
    nccl_result (*all_gather)(const void *, void *, size_t, int, nccl_comm_t, cuda_stream_t);
    nccl_result (*reduce_scatter)(const void *, void *, size_t, int, int, nccl_comm_t,
                                  cuda_stream_t);
    nccl_result (*comm_destroy)(nccl_comm_t);
    const char *(*nccl_error_string)(nccl_result);
    nccl_result (*comm_abort)(nccl_comm_t);                          /* optional */
    nccl_result (*comm_get_async_error)(nccl_comm_t, nccl_result *); /* optional */
    cuda_error (*set_device)(int);
    cuda_error (*malloc_)(void **, size_t);
    cuda_error (*free_)(void *);
    cuda_error (*memcpy_)(void *, const void *, size_t, int);
    cuda_error (*stream_create)(cuda_stream_t *);
    cuda_error (*stream_synchronize)(cuda_stream_t);
    cuda_error (*pointer_get_attributes)(cuda_pointer_attributes *, const void *);
    cuda_error (*get_device_count)(int *);
    cuda_error (*stream_query)(cuda_stream_t);                       /* optional */
    cuda_error (*stream_destroy)(cuda_stream_t);                     /* optional */
    cuda_error (*get_last_error)(void);                              /* optional */
    const char *(*cuda_error_string)(cuda_error);                    /* optional */
} api;

static pthread_once_t api_once = PTHREAD_ONCE_INIT;

/* Resolve name in lib into *fp (a function pointer's address); 0 if missing. */
static int sym(void *lib, const char *name, void *fp)
{
    void *p = dlsym(lib, name);
    memcpy(fp, &p, sizeof(p));
    return p != NULL;
}

static void load_api(void)
{
    const char *why = NULL;
    void *nccl = loom__cuda_dl(LOOM_CUDA_LIB_NCCL, NULL, &why);
    void *cudart = nccl ? loom__cuda_dl(LOOM_CUDA_LIB_CUDART, NULL, &why) : NULL;
    if (!cudart) {
        loom__snprintf(api.why, sizeof(api.why), "%s", why);
        return;
    }
    const char *missing = NULL;
#define NEED(lib, field, name) \
    if (!missing && !sym(lib, name, &api.field)) missing = name
    NEED(nccl, get_unique_id, "ncclGetUniqueId");
    NEED(nccl, comm_init_rank, "ncclCommInitRank");
    NEED(nccl, all_reduce, "ncclAllReduce");
    NEED(nccl, broadcast, "ncclBroadcast");
    NEED(nccl, all_gather, "ncclAllGather");
    NEED(nccl, reduce_scatter, "ncclReduceScatter");
    NEED(nccl, comm_destroy, "ncclCommDestroy");
    NEED(nccl, nccl_error_string, "ncclGetErrorString");
    NEED(cudart, set_device, "cudaSetDevice");
    NEED(cudart, malloc_, "cudaMalloc");
    NEED(cudart, free_, "cudaFree");
    NEED(cudart, memcpy_, "cudaMemcpy");
    NEED(cudart, stream_create, "cudaStreamCreate");
    NEED(cudart, stream_synchronize, "cudaStreamSynchronize");
    NEED(cudart, pointer_get_attributes, "cudaPointerGetAttributes");
    NEED(cudart, get_device_count, "cudaGetDeviceCount");
#undef NEED
    if (missing) {
        loom__snprintf(api.why, sizeof(api.why), "%s not found in NCCL or libcudart", missing);
        return;
    }
    sym(nccl, "ncclCommAbort", &api.comm_abort);
    sym(nccl, "ncclCommGetAsyncError", &api.comm_get_async_error);
    sym(cudart, "cudaStreamQuery", &api.stream_query);
    sym(cudart, "cudaStreamDestroy", &api.stream_destroy);
    sym(cudart, "cudaGetLastError", &api.get_last_error);
    sym(cudart, "cudaGetErrorString", &api.cuda_error_string);
    api.loaded = 1;    /* the libraries stay loaded for the life of the process */
}

int loom__coll_nccl_usable(char *why, size_t whylen)
{
    pthread_once(&api_once, load_api);
    if (!api.loaded) {
        loom__snprintf(why, whylen, "%s", api.why);
        return 0;
    }
    int n = 0;
    cuda_error e = api.get_device_count(&n);
    if (e != CUDA_SUCCESS || n <= 0) {
        if (e != CUDA_SUCCESS && api.cuda_error_string)
            loom__snprintf(why, whylen, "no GPU visible (cudaGetDeviceCount: %s)",
                           api.cuda_error_string(e));
        else loom__snprintf(why, whylen, "no GPU visible (cudaGetDeviceCount: %d, error %d)", n, e);
        return 0;
    }
    return 1;
}

/* ---- communicators -------------------------------------------------------- */

struct loom_coll_nccl {
    int world, rank;
    int64_t timeout_ms;
    nccl_comm_t comm;
    cuda_stream_t stream;
    int aborted;
    void *stage;          /* device staging for host buffers */
    size_t stage_len;
};

static int set_err(char *err, size_t errlen, int rc, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int set_err(char *err, size_t errlen, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    loom__verrf(err, errlen, rc, fmt, ap);
    va_end(ap);
    return rc;
}

static const char *cuda_str(cuda_error e)
{
    return api.cuda_error_string ? api.cuda_error_string(e) : "CUDA error";
}

static int cuda_check(cuda_error e, const char *what, char *err, size_t errlen)
{
    if (e == CUDA_SUCCESS) return LOOM_OK;
    return set_err(err, errlen, e == 2 ? LOOM_ENOMEM : LOOM_EIO, "%s: %s (%d)", what, cuda_str(e), e);
}

static int nccl_check(nccl_result r, const char *what, char *err, size_t errlen)
{
    if (r == NCCL_SUCCESS) return LOOM_OK;
    return set_err(err, errlen, LOOM_EIO, "%s: %s", what, api.nccl_error_string(r));
}

static int rv_wait(const loom_rendezvous *rv, const char *key, int64_t deadline, void **val,
                   size_t *len, const char *who, char *err, size_t errlen)
{
    int64_t left = deadline - loom__now_ms();
    int rc = rv->get(rv->arg, key, left > 0 ? left : 0, val, len);
    if (rc == LOOM_ETIMEOUT || rc == LOOM_ENOTFOUND)
        return set_err(err, errlen, LOOM_ETIMEOUT, "%s did not join (no %s in the rendezvous)",
                       who, key);
    if (rc) return set_err(err, errlen, rc, "reading %s: %s", key, loom_strerror(rc));
    return LOOM_OK;
}

int loom__coll_nccl_new(const loom_rendezvous *rv, const char *name, int world, int rank,
                        int64_t timeout_ms, loom_coll_nccl **out, char *err, size_t errlen)
{
    char why[256] = "", key[300], leaf[32];
    *out = NULL;
    if (!loom__coll_nccl_usable(why, sizeof(why)))
        return set_err(err, errlen, LOOM_ENOTFOUND, "NCCL backend unavailable: %s", why);
    int64_t deadline = loom__now_ms() + timeout_ms;
    int rc = cuda_check(api.set_device(0), "cudaSetDevice(0)", err, errlen);
    if (rc) return rc;

    nccl_unique_id id;
    loom__snprintf(key, sizeof(key), "loom/coll/%s/nccl_id", name);
    if (rank == 0) {
        rc = nccl_check(api.get_unique_id(&id), "ncclGetUniqueId", err, errlen);
        if (rc) return rc;
        rc = rv->put(rv->arg, key, &id, sizeof(id));
        if (rc) return set_err(err, errlen, rc, "publishing %s: %s", key, loom_strerror(rc));
    } else {
        void *val = NULL;
        size_t len = 0;
        rc = rv_wait(rv, key, deadline, &val, &len, "rank 0", err, errlen);
        if (rc) return rc;
        if (len != sizeof(id)) {
            free(val);
            return set_err(err, errlen, LOOM_EPROTO, "%s holds %zu bytes, not an NCCL id", key, len);
        }
        memcpy(&id, val, sizeof(id));
        free(val);
    }
    loom__snprintf(leaf, sizeof(leaf), "%d", rank);
    loom__snprintf(key, sizeof(key), "loom/coll/%s/%s", name, leaf);
    rc = rv->put(rv->arg, key, "nccl", 4);
    if (rc) return set_err(err, errlen, rc, "publishing %s: %s", key, loom_strerror(rc));
    for (int p = 0; p < world; p++) {
        if (p == rank) continue;
        char who[32];
        void *val = NULL;
        size_t len = 0;
        loom__snprintf(who, sizeof(who), "rank %d", p);
        loom__snprintf(key, sizeof(key), "loom/coll/%s/%d", name, p);
        rc = rv_wait(rv, key, deadline, &val, &len, who, err, errlen);
        if (rc) return rc;
        free(val);
    }

    loom_coll_nccl *n = calloc(1, sizeof(*n));
    if (!n) return set_err(err, errlen, LOOM_ENOMEM, "no memory");
    n->world = world;
    n->rank = rank;
    n->timeout_ms = timeout_ms;
    rc = cuda_check(api.stream_create(&n->stream), "cudaStreamCreate", err, errlen);
    if (!rc) rc = nccl_check(api.comm_init_rank(&n->comm, world, id, rank), "ncclCommInitRank",
                             err, errlen);
    if (rc) {
        loom__coll_nccl_destroy(&n);
        return rc;
    }
    *out = n;
    return LOOM_OK;
}

void loom__coll_nccl_destroy(loom_coll_nccl **np)
{
    if (!np || !*np) return;
    loom_coll_nccl *n = *np;
    if (n->comm && !n->aborted) api.comm_destroy(n->comm);
    if (n->stream && api.stream_destroy) api.stream_destroy(n->stream);
    if (n->stage) api.free_(n->stage);
    free(n);
    *np = NULL;
}

/* ---- operations ----------------------------------------------------------- */

static int nccl_dtype(int dtype)
{
    switch (dtype) {
    case LOOM_DT_F32: return NCCL_FLOAT32;
    case LOOM_DT_F64: return NCCL_FLOAT64;
    case LOOM_DT_I32: return NCCL_INT32;
    case LOOM_DT_I64: return NCCL_INT64;
    default: return NCCL_UINT8;
    }
}

static int nccl_op(int op)
{
    switch (op) {
    case LOOM_OP_SUM: return NCCL_SUM;
    case LOOM_OP_PROD: return NCCL_PROD;
    case LOOM_OP_MIN: return NCCL_MIN;
    default: return NCCL_MAX;
    }
}

/* Device (or managed) memory NCCL can use in place? */
static int on_device(const void *p)
{
    cuda_pointer_attributes a;
    memset(&a, 0, sizeof(a));
    if (api.pointer_get_attributes(&a, p) != CUDA_SUCCESS) {
        if (api.get_last_error) api.get_last_error();   /* older CUDA: plain host memory */
        return 0;
    }
    return a.type == CUDA_MEMORY_DEVICE || a.type == CUDA_MEMORY_MANAGED;
}

static int stage(loom_coll_nccl *n, size_t len, char *err, size_t errlen)
{
    if (len <= n->stage_len) return LOOM_OK;
    if (n->stage) api.free_(n->stage);
    n->stage = NULL;
    n->stage_len = 0;
    int rc = cuda_check(api.malloc_(&n->stage, len), "cudaMalloc (staging buffer)", err, errlen);
    if (!rc) n->stage_len = len;
    return rc;
}

/* Wait for what was enqueued on the stream, up to the timeout; a member that
 * never takes part makes the communicator abort. */
static int finish(loom_coll_nccl *n, const char *what, char *err, size_t errlen)
{
    if (!api.stream_query)
        return cuda_check(api.stream_synchronize(n->stream), what, err, errlen);
    int64_t start = loom__now_ms(), deadline = start + n->timeout_ms;
    for (;;) {
        cuda_error e = api.stream_query(n->stream);
        if (e == CUDA_SUCCESS) return LOOM_OK;
        if (e != CUDA_ERROR_NOT_READY) return cuda_check(e, what, err, errlen);
        nccl_result async = NCCL_SUCCESS;
        if (api.comm_get_async_error && api.comm_get_async_error(n->comm, &async) == NCCL_SUCCESS &&
            async != NCCL_SUCCESS && async != NCCL_IN_PROGRESS) {
            if (api.comm_abort) api.comm_abort(n->comm);
            n->aborted = 1;
            return nccl_check(async, what, err, errlen);
        }
        int64_t now = loom__now_ms();
        if (now >= deadline) {
            if (api.comm_abort) api.comm_abort(n->comm);
            n->aborted = 1;
            return set_err(err, errlen, LOOM_ETIMEOUT,
                           "%s: not every member took part within %lld ms (communicator aborted)",
                           what, (long long)n->timeout_ms);
        }
        if (now - start >= 2) {       /* spin briefly, then poll gently */
            struct timespec ts = { 0, 50000 };
            nanosleep(&ts, NULL);
        }
    }
}

static int copy(void *dst, const void *src, size_t len, int kind, char *err, size_t errlen)
{
    if (!len) return LOOM_OK;
    return cuda_check(api.memcpy_(dst, src, len, kind),
                      kind == CUDA_MEMCPY_H2D ? "cudaMemcpy to the device" : "cudaMemcpy to the host",
                      err, errlen);
}

static int usable_comm(loom_coll_nccl *n, char *err, size_t errlen)
{
    if (n->aborted) return set_err(err, errlen, LOOM_ESTATE, "the NCCL communicator was aborted");
    return LOOM_OK;
}

int loom__coll_nccl_allreduce(loom_coll_nccl *n, void *buf, size_t count, int dtype, int op,
                              char *err, size_t errlen)
{
    int rc = usable_comm(n, err, errlen);
    if (rc || count == 0) return rc;
    size_t bytes = count * loom_dtype_size(dtype);
    int dev = on_device(buf);
    void *d = buf;
    if (!dev) {
        rc = stage(n, bytes, err, errlen);
        if (!rc) rc = copy(n->stage, buf, bytes, CUDA_MEMCPY_H2D, err, errlen);
        d = n->stage;
    }
    if (!rc) rc = nccl_check(api.all_reduce(d, d, count, nccl_dtype(dtype), nccl_op(op), n->comm,
                                            n->stream), "ncclAllReduce", err, errlen);
    if (!rc) rc = finish(n, "ncclAllReduce", err, errlen);
    if (!rc && !dev) rc = copy(buf, d, bytes, CUDA_MEMCPY_D2H, err, errlen);
    return rc;
}

int loom__coll_nccl_broadcast(loom_coll_nccl *n, void *buf, size_t count, int dtype, int root,
                              char *err, size_t errlen)
{
    int rc = usable_comm(n, err, errlen);
    if (rc || count == 0) return rc;
    size_t bytes = count * loom_dtype_size(dtype);
    int dev = on_device(buf);
    void *d = buf;
    if (!dev) {
        rc = stage(n, bytes, err, errlen);
        if (!rc && n->rank == root) rc = copy(n->stage, buf, bytes, CUDA_MEMCPY_H2D, err, errlen);
        d = n->stage;
    }
    if (!rc) rc = nccl_check(api.broadcast(d, d, count, nccl_dtype(dtype), root, n->comm,
                                           n->stream), "ncclBroadcast", err, errlen);
    if (!rc) rc = finish(n, "ncclBroadcast", err, errlen);
    if (!rc && !dev && n->rank != root) rc = copy(buf, d, bytes, CUDA_MEMCPY_D2H, err, errlen);
    return rc;
}

/* Staging for a collective with a "whole" buffer (world blocks) and a "part"
 * buffer (one block): host parts go in place inside a staged whole, as NCCL's
 * in-place forms want; a host part beside a device whole gets its own room. */
typedef struct staged {
    uint8_t *whole, *part;
    int whole_dev, part_dev;
} staged;

static int stage_pair(loom_coll_nccl *n, const void *whole, const void *part, size_t part_bytes,
                      staged *s, char *err, size_t errlen)
{
    size_t whole_bytes = part_bytes * (size_t)n->world;
    s->whole_dev = on_device(whole);
    s->part_dev = on_device(part);
    size_t need = (s->whole_dev ? 0 : whole_bytes) + (s->whole_dev && !s->part_dev ? part_bytes : 0);
    int rc = stage(n, need, err, errlen);
    if (rc) return rc;
    s->whole = s->whole_dev ? (uint8_t *)whole : n->stage;
    if (s->part_dev) s->part = (uint8_t *)part;
    else if (!s->whole_dev) s->part = n->stage + (size_t)n->rank * part_bytes;
    else s->part = n->stage;
    return LOOM_OK;
}

int loom__coll_nccl_allgather(loom_coll_nccl *n, const void *send, size_t count, int dtype,
                              void *recv, char *err, size_t errlen)
{
    int rc = usable_comm(n, err, errlen);
    if (rc || count == 0) return rc;
    size_t bytes = count * loom_dtype_size(dtype);
    staged s;
    rc = stage_pair(n, recv, send, bytes, &s, err, errlen);
    if (!rc && !s.part_dev) rc = copy(s.part, send, bytes, CUDA_MEMCPY_H2D, err, errlen);
    if (!rc) rc = nccl_check(api.all_gather(s.part, s.whole, count, nccl_dtype(dtype), n->comm,
                                            n->stream), "ncclAllGather", err, errlen);
    if (!rc) rc = finish(n, "ncclAllGather", err, errlen);
    if (!rc && !s.whole_dev)
        rc = copy(recv, s.whole, bytes * (size_t)n->world, CUDA_MEMCPY_D2H, err, errlen);
    return rc;
}

int loom__coll_nccl_reduce_scatter(loom_coll_nccl *n, const void *send, size_t count, int dtype,
                                   int op, void *recv, char *err, size_t errlen)
{
    int rc = usable_comm(n, err, errlen);
    if (rc || count == 0) return rc;
    size_t bytes = count * loom_dtype_size(dtype);
    staged s;
    rc = stage_pair(n, send, recv, bytes, &s, err, errlen);
    if (!rc && !s.whole_dev)
        rc = copy(s.whole, send, bytes * (size_t)n->world, CUDA_MEMCPY_H2D, err, errlen);
    if (!rc) rc = nccl_check(api.reduce_scatter(s.whole, s.part, count, nccl_dtype(dtype),
                                                nccl_op(op), n->comm, n->stream),
                             "ncclReduceScatter", err, errlen);
    if (!rc) rc = finish(n, "ncclReduceScatter", err, errlen);
    if (!rc && !s.part_dev) rc = copy(recv, s.part, bytes, CUDA_MEMCPY_D2H, err, errlen);
    return rc;
}
