/* runtime/wire.c — encoding and validated decoding of loom's messages (see
 * wire.h for the frame layout).  Every message's fields are listed once, in
 * the schema table at the top (`schema[]`); one encode loop and one decode loop
 * walk it, with a pack and an unpack helper per kind of field. */
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include "base/errf.h"
#include "runtime/wire.h"

/* ---- the decoder's state ---------------------------------------------- */

typedef struct dec {
    loom_unpack u;
    loom_arena *arena;
    char *err;
    size_t errlen;
    int rc;
} dec;

static int fail(dec *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(dec *d, const char *fmt, ...)
{
    if (d->rc == 0) {
        va_list ap;
        va_start(ap, fmt);
        loom__verrf(d->err, d->errlen, LOOM_EPROTO, fmt, ap);
        va_end(ap);
    }
    if (d->rc == 0) d->rc = LOOM_EPROTO;
    return d->rc;
}

/* ---- the schema ----------------------------------------------------------
 * A field's kind says how it is packed and checked, and what type its
 * loom_msg member has. */
enum field_kind {
    F_END = 0,  /* no more fields */
    F_I32,      /* int32_t: a msgpack integer */
    F_U32,      /* uint32_t: an unsigned integer */
    F_U64,      /* uint64_t: an unsigned integer */
    F_STR,      /* char *: a string without NUL bytes */
    F_NAME,     /* char *: a string of 1..max bytes (0..max where empty_ok) */
    F_HOST,     /* char *: a host name or address (rd_host) */
    F_REF,      /* loom_ref: LOOM_ID_LEN bytes */
    F_BIN,      /* loom_bytes: bytes (pointing into the frame) */
    /* arrays: the member points to the elements, n<member> counts them */
    F_REFS, F_LOCS, F_TASKS, F_OUTPUTS, F_NODES, F_BUNDLES
};

typedef struct wire_field {
    uint8_t kind;
    uint8_t empty_ok;       /* F_NAME: "" is accepted */
    uint16_t max;           /* F_NAME: the longest accepted, in bytes */
    uint16_t off;           /* offsetof(loom_msg, member) */
    uint16_t count_off;     /* arrays: offsetof(loom_msg, n<member>) */
    const char *what;       /* the field's name in decode errors */
} wire_field;

#define WIRE_MAX_FIELDS 6
typedef struct msg_schema {
    const char *name;                       /* loom__msg_type_name */
    wire_field f[WIRE_MAX_FIELDS];          /* in wire order; F_END after the last */
    int (*check)(dec *d, const loom_msg *m); /* after the fields: what their types can't say */
} msg_schema;

/* offsetof(loom_msg, m); comparing distinct pointer types is a compile error
 * (-Werror), so a table entry whose kind does not match its member's type T
 * does not build. */
#define AT(m, T) ((uint16_t)(offsetof(loom_msg, m) + 0 * sizeof(&((loom_msg *)0)->m == (T *)0)))
#define I32(m, w) {.kind = F_I32, .off = AT(m, int32_t), .what = w}
#define U32(m, w) {.kind = F_U32, .off = AT(m, uint32_t), .what = w}
#define U64(m, w) {.kind = F_U64, .off = AT(m, uint64_t), .what = w}
#define STR(m, w) {.kind = F_STR, .off = AT(m, char *), .what = w}
#define NAME(m, mx, empty, w) {.kind = F_NAME, .max = mx, .empty_ok = empty, .off = AT(m, char *), .what = w}
#define HOST(m, w) {.kind = F_HOST, .off = AT(m, char *), .what = w}
#define REF(m, w) {.kind = F_REF, .off = AT(m, loom_ref), .what = w}
#define BIN(m, w) {.kind = F_BIN, .off = AT(m, loom_bytes), .what = w}
#define LIST(k, m, T) {.kind = k, .off = AT(m, T *), .count_off = AT(n##m, uint32_t), .what = #m}
#define REFS LIST(F_REFS, refs, loom_ref)
#define LOCS LIST(F_LOCS, locs, loom_wire_loc)
#define TASKS LIST(F_TASKS, tasks, loom_wire_task)
#define OUTPUTS LIST(F_OUTPUTS, outputs, loom_wire_output)
#define NODES LIST(F_NODES, nodes, loom_wire_node)
#define BUNDLES LIST(F_BUNDLES, bundles, loom_wire_bundle)

/* The checks that span fields, run once a message's fields decoded. */
static int check_hello(dec *d, const loom_msg *m)
{
    if (m->role < LOOM_ROLE_DRIVER || m->role > LOOM_ROLE_EXECUTOR)
        return fail(d, "role: unknown role %u", m->role);
    if (m->nnodes > 1) return fail(d, "nodes: a hello describes at most one node");
    return 0;
}

static int check_put_done(dec *d, const loom_msg *m)
{
    if (m->data.n && m->data.n != m->size) return fail(d, "value: size mismatch");
    return 0;
}

static int check_one_task(dec *d, const loom_msg *m)
{
    if (m->ntasks != 1) return fail(d, "tasks: want exactly one task");
    return 0;
}

static int check_chunk(dec *d, const loom_msg *m)
{
    if (m->offset > m->total || m->data.n > m->total - m->offset)
        return fail(d, "chunk: %zu bytes at %llu overrun a total of %llu", m->data.n,
                    (unsigned long long)m->offset, (unsigned long long)m->total);
    return 0;
}

static int check_kv_value(dec *d, const loom_msg *m)
{
    if (m->data.n > (1u << 20)) return fail(d, "value: at most 1 MiB");
    return 0;
}

static int check_pg_create(dec *d, const loom_msg *m)
{
    if (m->strategy > 3) return fail(d, "strategy: unknown placement strategy %u", m->strategy);
    if (m->nbundles == 0 || m->nbundles > LOOM_WIRE_MAX_BUNDLES)
        return fail(d, "bundles: want 1..%d", LOOM_WIRE_MAX_BUNDLES);
    return 0;
}

/* Every message: its fields after [version, type, req], in wire order, each as
 * KIND(loom_msg member, name in errors).  A message with no entry here does
 * not exist; one with no fields is just its name. */
static const msg_schema schema[LOOM_MSG_TYPE_MAX] = {
    [LOOM_MSG_ERROR] = {.name = "ERROR", .f = {I32(code, "code"), STR(text, "text")}},
    [LOOM_MSG_OK] = {.name = "OK"},
    [LOOM_MSG_HELLO] = {.name = "HELLO", .check = check_hello,
        .f = {U32(role, "role"), STR(secret, "secret"), HOST(hostname, "hostname"), U32(pid, "pid"), NODES}},
    [LOOM_MSG_WELCOME] = {.name = "WELCOME", .f = {U32(assigned_id, "id"), NODES}},
    [LOOM_MSG_HEARTBEAT] = {.name = "HEARTBEAT", .f = {U64(store_used, "store_used"), U64(running, "running")}},
    [LOOM_MSG_SUBMIT] = {.name = "SUBMIT",
        .f = {STR(job_name, "job_name"), U32(detached, "detached"), TASKS, STR(label, "label")}},
    [LOOM_MSG_SUBMITTED] = {.name = "SUBMITTED", .f = {STR(job, "job")}},
    [LOOM_MSG_PUT_DONE] = {.name = "PUT_DONE", .check = check_put_done,
        .f = {REF(ref, "ref"), U64(size, "size"), U32(node, "node"), BIN(data, "value"), U32(keep, "keep")}},
    [LOOM_MSG_SUBSCRIBE] = {.name = "SUBSCRIBE", .f = {REFS}},
    [LOOM_MSG_OBJ_READY] = {.name = "OBJ_READY",
        .f = {REF(ref, "ref"), I32(code, "code"), U64(size, "size"), BIN(data, "value"), LOCS, STR(text, "text")}},
    [LOOM_MSG_RELEASE] = {.name = "RELEASE", .f = {REFS}},
    [LOOM_MSG_CANCEL] = {.name = "CANCEL", .f = {REF(ref, "ref")}},
    [LOOM_MSG_STATUS] = {.name = "STATUS"},
    [LOOM_MSG_INFO] = {.name = "INFO", .f = {BIN(data, "info")}},
    [LOOM_MSG_JOB_INFO] = {.name = "JOB_INFO", .f = {STR(job, "job")}},
    [LOOM_MSG_JOB_REF] = {.name = "JOB_REF",
        .f = {STR(job, "job"), STR(task_name, "task"), U64(output, "output")}},
    [LOOM_MSG_REF] = {.name = "REF", .f = {REF(ref, "ref")}},
    [LOOM_MSG_JOB_DELETE] = {.name = "JOB_DELETE", .f = {STR(job, "job")}},
    [LOOM_MSG_BYE] = {.name = "BYE"},
    [LOOM_MSG_ASSIGN] = {.name = "ASSIGN", .check = check_one_task, .f = {TASKS}},
    [LOOM_MSG_CANCEL_TASK] = {.name = "CANCEL_TASK", .f = {REF(ref, "ref")}},
    [LOOM_MSG_DELETE_OBJS] = {.name = "DELETE_OBJS", .f = {REFS}},
    [LOOM_MSG_TASK_DONE] = {.name = "TASK_DONE",
        .f = {REF(ref, "task"), I32(code, "code"), STR(text, "text"), OUTPUTS, U64(log_size, "log_size")}},
    [LOOM_MSG_OBJ_ADDED] = {.name = "OBJ_ADDED", .f = {REF(ref, "ref"), U64(size, "size")}},
    [LOOM_MSG_FETCH] = {.name = "FETCH",
        .f = {REF(ref, "ref"), U64(offset, "offset"), U64(length, "length")}},
    [LOOM_MSG_CHUNK] = {.name = "CHUNK", .check = check_chunk,
        .f = {REF(ref, "ref"), U64(offset, "offset"), U64(total, "total"), BIN(data, "data")}},
    [LOOM_MSG_PUSH] = {.name = "PUSH", .check = check_chunk,
        .f = {REF(ref, "ref"), U64(offset, "offset"), U64(total, "total"), BIN(data, "data")}},
    [LOOM_MSG_RUN] = {.name = "RUN", .check = check_one_task, .f = {TASKS}},
    [LOOM_MSG_KV_PUT] = {.name = "KV_PUT", .check = check_kv_value,
        .f = {NAME(key, 512, 0, "key"), BIN(data, "value")}},
    [LOOM_MSG_KV_GET] = {.name = "KV_GET", .f = {NAME(key, 512, 0, "key"), U64(wait_ms, "wait_ms")}},
    [LOOM_MSG_KV_DEL] = {.name = "KV_DEL", .f = {NAME(key, 512, 0, "key")}},
    [LOOM_MSG_ACTOR_LOOKUP] = {.name = "ACTOR_LOOKUP", .f = {NAME(name, 255, 0, "name")}},
    [LOOM_MSG_ACTOR_KILL] = {.name = "ACTOR_KILL", .f = {REF(ref, "ref")}},
    [LOOM_MSG_ACTOR_DIED] = {.name = "ACTOR_DIED",
        .f = {REF(ref, "actor"), I32(code, "code"), STR(text, "text")}},
    [LOOM_MSG_ACTORS] = {.name = "ACTORS"},
    [LOOM_MSG_PG_CREATE] = {.name = "PG_CREATE", .check = check_pg_create,
        .f = {NAME(name, 255, 1, "name"), U32(strategy, "strategy"), BUNDLES}},
    [LOOM_MSG_PG_REMOVE] = {.name = "PG_REMOVE", .f = {REF(ref, "ref")}},
    [LOOM_MSG_PG_INFO] = {.name = "PG_INFO", .f = {REF(ref, "ref")}},
    [LOOM_MSG_DRAIN] = {.name = "DRAIN", .f = {U32(node, "node")}},
    [LOOM_MSG_RUNNING] = {.name = "RUNNING", .f = {REFS}},
    [LOOM_MSG_JOBS] = {.name = "JOBS",
        .f = {STR(label, "label"), U64(offset, "offset"), U64(limit, "limit")}},
};

/* The type's schema, or NULL for a type that does not exist. */
static const msg_schema *schema_of(int type)
{
    if (type <= 0 || type >= LOOM_MSG_TYPE_MAX || !schema[type].name) return NULL;
    return &schema[type];
}

/* The number of fields after [version, type, req]; -1 for no such type. */
static int field_count(int type)
{
    const msg_schema *s = schema_of(type);
    if (!s) return -1;
    int n = 0;
    while (n < WIRE_MAX_FIELDS && s->f[n].kind != F_END) n++;
    return n;
}

/* ---- decoding ----------------------------------------------------------- */

static int rd_u64(dec *d, uint64_t *v, const char *what)
{
    if (d->rc) return d->rc;
    if (loom_unpack_u64(&d->u, v)) return fail(d, "%s: want an unsigned integer", what);
    return 0;
}

static int rd_u32(dec *d, uint32_t *v, const char *what)
{
    uint64_t x = 0;
    if (rd_u64(d, &x, what)) return d->rc;
    if (x > UINT32_MAX) return fail(d, "%s: out of range", what);
    *v = (uint32_t)x;
    return 0;
}

static int rd_i32(dec *d, int32_t *v, const char *what)
{
    int64_t x = 0;
    if (d->rc) return d->rc;
    if (loom_unpack_i64(&d->u, &x) || x < INT32_MIN || x > INT32_MAX)
        return fail(d, "%s: want a 32-bit integer", what);
    *v = (int32_t)x;
    return 0;
}

static int rd_f64(dec *d, double *v, const char *what)
{
    if (d->rc) return d->rc;
    if (loom_unpack_f64(&d->u, v) || !isfinite(*v)) return fail(d, "%s: want a finite number", what);
    return 0;
}

static int rd_bool(dec *d, int *v, const char *what)
{
    if (d->rc) return d->rc;
    if (loom_unpack_bool(&d->u, v)) return fail(d, "%s: want a boolean", what);
    return 0;
}

static int rd_str(dec *d, char **out, const char *what)
{
    const char *s;
    size_t n;
    if (d->rc) return d->rc;
    if (loom_unpack_str(&d->u, &s, &n)) return fail(d, "%s: want a string", what);
    if (memchr(s, 0, n)) return fail(d, "%s: string holds a NUL byte", what);
    *out = loom__arena_strndup(d->arena, s, n);
    if (!*out) return d->rc = LOOM_ENOMEM;
    return 0;
}

static int rd_bin(dec *d, loom_bytes *b, const char *what)
{
    const void *p;
    size_t n;
    if (d->rc) return d->rc;
    if (loom_unpack_bin(&d->u, &p, &n)) return fail(d, "%s: want bytes", what);
    b->p = p;
    b->n = n;
    return 0;
}

static int rd_fixed(dec *d, uint8_t *out, size_t want, const char *what)
{
    loom_bytes b = {0};
    if (rd_bin(d, &b, what)) return d->rc;
    if (b.n != want) return fail(d, "%s: want %zu bytes, got %zu", what, want, b.n);
    memcpy(out, b.p, want);
    return 0;
}

static int rd_ref(dec *d, loom_ref *r, const char *what)
{
    return rd_fixed(d, r->id, LOOM_ID_LEN, what);
}

/* Read an array header and allocate n elements of size sz in the arena. */
static int rd_list(dec *d, uint32_t *n, size_t sz, void **out, const char *what)
{
    if (d->rc) return d->rc;
    if (loom_unpack_array(&d->u, n)) return fail(d, "%s: want an array", what);
    if (*n > LOOM_WIRE_MAX_LIST) return fail(d, "%s: %u elements is too many", what, *n);
    /* every element takes at least one byte: reject counts the frame can't hold */
    if (*n > d->u.len - d->u.pos) return fail(d, "%s: truncated", what);
    *out = NULL;
    if (*n == 0) return 0;
    *out = loom__arena_alloc(d->arena, (size_t)*n * sz);
    if (!*out) return d->rc = LOOM_ENOMEM;
    return 0;
}

static int rd_strlist(dec *d, char ***out, uint32_t *n, const char *what)
{
    void *arr;
    if (rd_list(d, n, sizeof(char *), &arr, what)) return d->rc;
    *out = arr;
    for (uint32_t i = 0; i < *n; i++)
        if (rd_str(d, &(*out)[i], what)) return d->rc;
    return 0;
}

static int rd_tuple(dec *d, uint32_t want, const char *what)
{
    uint32_t n;
    if (d->rc) return d->rc;
    if (loom_unpack_array(&d->u, &n) || n != want)
        return fail(d, "%s: want an array of %u fields", what, want);
    return 0;
}

static int rd_loc(dec *d, loom_wire_loc *l)
{
    if (rd_tuple(d, 2, "loc")) return d->rc;
    rd_u32(d, &l->node, "loc.node");
    return rd_str(d, &l->addr, "loc.addr");
}

static int rd_locs(dec *d, loom_wire_loc **out, uint32_t *n)
{
    void *arr;
    if (rd_list(d, n, sizeof(loom_wire_loc), &arr, "locs")) return d->rc;
    *out = arr;
    for (uint32_t i = 0; i < *n && !d->rc; i++) rd_loc(d, &(*out)[i]);
    return d->rc;
}

static int rd_arg(dec *d, loom_wire_arg *a)
{
    if (rd_tuple(d, 5, "arg")) return d->rc;
    rd_u32(d, &a->kind, "arg.kind");
    rd_bin(d, &a->value, "arg.value");
    loom_bytes r = {0};
    rd_bin(d, &r, "arg.ref");
    rd_u64(d, &a->size, "arg.size");
    rd_locs(d, &a->locs, &a->nlocs);
    if (d->rc) return d->rc;
    if (a->kind > LOOM_WARG_REF) return fail(d, "arg.kind: unknown kind %u", a->kind);
    if (a->kind == LOOM_WARG_REF) {
        if (r.n != LOOM_ID_LEN) return fail(d, "arg.ref: want %d bytes", LOOM_ID_LEN);
        memcpy(a->ref.id, r.p, LOOM_ID_LEN);
    }
    return 0;
}

static int rd_name(dec *d, char **out, size_t maxlen, int allow_empty, const char *what)
{
    if (rd_str(d, out, what)) return d->rc;
    size_t n = strlen(*out);
    if ((!allow_empty && n == 0) || n > maxlen) return fail(d, "%s: want 1..%zu bytes", what, maxlen);
    return 0;
}

/* A host name or address as a peer gives it (it goes into logs and status
 * before the peer is trusted): at most 255 bytes of letters, digits and
 * . - _ : (IPv6), or empty (executors).  Nothing that could forge a log
 * line or a terminal escape. */
static int rd_host(dec *d, char **out, const char *what)
{
    if (rd_str(d, out, what)) return d->rc;
    size_t n = strlen(*out);
    if (n > 255) return fail(d, "%s: longer than 255 bytes", what);
    for (const unsigned char *c = (const unsigned char *)*out; *c; c++)
        if (!isalnum(*c) && *c != '.' && *c != '-' && *c != '_' && *c != ':')
            return fail(d, "%s: not a host name (byte 0x%02x at %zu)", what, *c, (size_t)(c - (const unsigned char *)*out));
    return 0;
}

static int rd_res(dec *d, loom_wire_res *r)
{
    if (rd_tuple(d, 2, "resource")) return d->rc;
    rd_name(d, &r->name, 63, 0, "resource.name");
    rd_f64(d, &r->amount, "resource.amount");
    if (!d->rc && (r->amount <= 0 || r->amount > 1e12)) return fail(d, "resource '%s': amount out of range", r->name);
    return d->rc;
}

static int rd_label(dec *d, loom_wire_label *l)
{
    if (rd_tuple(d, 2, "label")) return d->rc;
    rd_name(d, &l->key, 63, 0, "label.key");
    return rd_name(d, &l->value, 255, 1, "label.value");
}

static int rd_reslist(dec *d, loom_wire_res **out, uint32_t *n)
{
    void *arr;
    if (rd_list(d, n, sizeof(loom_wire_res), &arr, "resources")) return d->rc;
    if (*n > LOOM_WIRE_MAX_RES) return fail(d, "resources: at most %d", LOOM_WIRE_MAX_RES);
    *out = arr;
    for (uint32_t i = 0; i < *n && !d->rc; i++) rd_res(d, &(*out)[i]);
    for (uint32_t i = 0; i < *n && !d->rc; i++)
        for (uint32_t k = 0; k < i; k++)
            if (!strcmp((*out)[i].name, (*out)[k].name))
                return fail(d, "resources: '%s' named twice", (*out)[i].name);
    return d->rc;
}

static int rd_labels(dec *d, loom_wire_label **out, uint32_t *n)
{
    void *arr;
    if (rd_list(d, n, sizeof(loom_wire_label), &arr, "labels")) return d->rc;
    if (*n > LOOM_WIRE_MAX_LABELS) return fail(d, "labels: at most %d", LOOM_WIRE_MAX_LABELS);
    *out = arr;
    for (uint32_t i = 0; i < *n && !d->rc; i++) rd_label(d, &(*out)[i]);
    return d->rc;
}

/* A GPU count: 0, a fraction in (0,1), or a whole number up to the limit. */
static int check_gpus(dec *d, double g, const char *what)
{
    if (g < 0 || g > LOOM_WIRE_MAX_GPUS) return fail(d, "%s: out of range", what);
    if (g > 1 && g != (double)(int64_t)g) return fail(d, "%s: more than one GPU must be a whole number", what);
    return 0;
}

static int rd_id16(dec *d, uint8_t *out, int *present, const char *what)
{
    loom_bytes b = {0};
    if (rd_bin(d, &b, what)) return d->rc;
    if (b.n != 0 && b.n != 16) return fail(d, "%s: want 0 or 16 bytes", what);
    if (present) *present = b.n == 16;
    if (b.n) memcpy(out, b.p, 16);
    else memset(out, 0, 16);
    return 0;
}

static int rd_sched(dec *d, loom_wire_task *t)
{
    if (rd_tuple(d, 12, "task.sched")) return d->rc;
    rd_f64(d, &t->num_gpus, "task.num_gpus");
    rd_u64(d, &t->gpu_memory, "task.gpu_memory");
    rd_reslist(d, &t->res, &t->nres);
    rd_labels(d, &t->labels, &t->nlabels);
    rd_u32(d, &t->strategy, "task.strategy");
    rd_u32(d, &t->affinity_node, "task.node");
    rd_bool(d, &t->soft, "task.soft");
    rd_id16(d, t->pg, &t->has_pg, "task.pg");
    rd_i32(d, &t->bundle, "task.bundle");
    rd_str(d, &t->gpu_ids, "task.gpu_ids");
    rd_u32(d, &t->max_retries, "task.max_retries");
    rd_bool(d, &t->retry_on_error, "task.retry_on_error");
    if (d->rc) return d->rc;
    if (t->max_retries > 1000) return fail(d, "task.max_retries: at most 1000");
    if (check_gpus(d, t->num_gpus, "task.num_gpus")) return d->rc;
    if (t->strategy > LOOM_SCHED_NODE) return fail(d, "task.strategy: unknown strategy %u", t->strategy);
    if (t->bundle < -1 || t->bundle >= LOOM_WIRE_MAX_BUNDLES) return fail(d, "task.bundle: out of range");
    if (t->gpu_memory && t->num_gpus <= 0) return fail(d, "task.gpu_memory: needs num_gpus");
    return 0;
}

static int rd_actor(dec *d, loom_wire_task *t)
{
    if (rd_tuple(d, 7, "task.actor")) return d->rc;
    rd_u32(d, &t->actor_op, "actor.op");
    rd_id16(d, t->actor, NULL, "actor.id");
    rd_u32(d, &t->max_concurrency, "actor.max_concurrency");
    rd_bool(d, &t->detached, "actor.detached");
    rd_name(d, &t->actor_name, 255, 1, "actor.name");
    rd_i32(d, &t->max_restarts, "actor.max_restarts");
    rd_u32(d, &t->max_task_retries, "actor.max_task_retries");
    if (d->rc) return d->rc;
    if (t->max_restarts < -1 || t->max_restarts > 100000) return fail(d, "actor.max_restarts: out of range");
    if (t->max_task_retries > 1000) return fail(d, "actor.max_task_retries: at most 1000");
    if (t->actor_op > LOOM_ACTOR_CALL) return fail(d, "actor.op: unknown op %u", t->actor_op);
    if (t->max_concurrency > 1024) return fail(d, "actor.max_concurrency: at most 1024");
    return 0;
}

static int rd_task(dec *d, loom_wire_task *t)
{
    if (rd_tuple(d, 16, "task")) return d->rc;
    rd_fixed(d, t->task_id, 16, "task.id");
    rd_u32(d, &t->kind, "task.kind");
    rd_str(d, &t->name, "task.name");
    rd_arg(d, &t->lib);
    rd_str(d, &t->function, "task.function");
    rd_strlist(d, &t->argv, &t->argc, "task.argv");
    rd_strlist(d, &t->env, &t->nenv, "task.env");
    rd_str(d, &t->cwd, "task.cwd");
    rd_strlist(d, &t->outputs, &t->noutputs, "task.outputs");
    rd_bool(d, &t->nocheck, "task.nocheck");
    rd_f64(d, &t->num_cpus, "task.num_cpus");
    rd_u64(d, &t->memory, "task.memory");
    void *arr;
    if (rd_list(d, &t->nargs, sizeof(loom_wire_arg), &arr, "task.args")) return d->rc;
    t->args = arr;
    for (uint32_t i = 0; i < t->nargs && !d->rc; i++) rd_arg(d, &t->args[i]);
    rd_sched(d, t);
    rd_actor(d, t);
    if (d->rc) return d->rc;
    if (t->kind > LOOM_TASK_COMMAND) return fail(d, "task.kind: unknown kind %u", t->kind);
    if (t->actor_op && t->kind != LOOM_TASK_FUNCTION) return fail(d, "task: an actor task must be a function task");
    if (t->actor_op && (!t->function[0] || strstr(t->function, "__")))
        return fail(d, "task: an actor class or method needs a name without \"__\"");
    /* the head may resolve a small library to an inline value in ASSIGN; an
       actor call has none (its actor has the library) */
    if (t->kind == LOOM_TASK_FUNCTION && t->actor_op != LOOM_ACTOR_CALL &&
        (!t->function[0] || (t->lib.kind == LOOM_WARG_VALUE && t->lib.value.n == 0)))
        return fail(d, "task: a function task needs a library and a function name");
    if (t->kind == LOOM_TASK_COMMAND && t->argc == 0)
        return fail(d, "task: a command task needs argv");
    if (t->num_cpus < 0 || t->num_cpus > 1024) return fail(d, "task.num_cpus: out of range");
    if (t->noutputs > 1024) return fail(d, "task.outputs: too many");
    for (uint32_t i = 0; i < t->noutputs; i++)
        if (!t->outputs[i][0] || strchr(t->outputs[i], '/') || !strcmp(t->outputs[i], "..") ||
            !strcmp(t->outputs[i], "."))
            return fail(d, "task.outputs: '%s' is not a plain file name", t->outputs[i]);
    for (uint32_t i = 0; i < t->nenv; i++)
        if (!strchr(t->env[i], '=') || t->env[i][0] == '=')
            return fail(d, "task.env: '%s' is not NAME=VALUE", t->env[i]);
    return 0;
}

static int rd_node(dec *d, loom_wire_node *nd)
{
    if (rd_tuple(d, 12, "node")) return d->rc;
    rd_u32(d, &nd->id, "node.id");
    rd_host(d, &nd->hostname, "node.hostname");
    rd_str(d, &nd->data_addr, "node.data_addr");
    rd_str(d, &nd->store_dir, "node.store_dir");
    rd_str(d, &nd->spill_dir, "node.spill_dir");
    rd_f64(d, &nd->num_cpus, "node.num_cpus");
    rd_u64(d, &nd->memory, "node.memory");
    rd_u64(d, &nd->capacity, "node.capacity");
    rd_u32(d, &nd->num_gpus, "node.num_gpus");
    rd_u64(d, &nd->gpu_memory, "node.gpu_memory");
    rd_reslist(d, &nd->res, &nd->nres);
    rd_labels(d, &nd->labels, &nd->nlabels);
    if (!d->rc && nd->num_gpus > LOOM_WIRE_MAX_GPUS) return fail(d, "node.num_gpus: at most %d", LOOM_WIRE_MAX_GPUS);
    return d->rc;
}

static int rd_bundle(dec *d, loom_wire_bundle *b)
{
    if (rd_tuple(d, 5, "bundle")) return d->rc;
    rd_f64(d, &b->num_cpus, "bundle.num_cpus");
    rd_u64(d, &b->memory, "bundle.memory");
    rd_f64(d, &b->num_gpus, "bundle.num_gpus");
    rd_u64(d, &b->gpu_memory, "bundle.gpu_memory");
    rd_reslist(d, &b->res, &b->nres);
    if (d->rc) return d->rc;
    if (b->num_cpus < 0 || b->num_cpus > 1024) return fail(d, "bundle.num_cpus: out of range");
    if (check_gpus(d, b->num_gpus, "bundle.num_gpus")) return d->rc;
    if (b->num_cpus == 0 && b->num_gpus == 0 && b->memory == 0 && b->nres == 0)
        return fail(d, "bundle: an empty bundle reserves nothing");
    return 0;
}

static int rd_output(dec *d, loom_wire_output *o)
{
    if (rd_tuple(d, 3, "output")) return d->rc;
    rd_u32(d, &o->index, "output.index");
    rd_u64(d, &o->size, "output.size");
    rd_bin(d, &o->value, "output.value");
    if (!d->rc && o->value.n && o->value.n != o->size)
        return fail(d, "output: inline value of %zu bytes for size %llu", o->value.n,
                    (unsigned long long)o->size);
    return d->rc;
}

static int rd_ref_list_elem(dec *d, loom_ref *r)
{
    return rd_ref(d, r, "refs[]");
}

#define RD_LIST(d, field, count, type, reader, what)                          \
    do {                                                                       \
        void *arr_;                                                            \
        if (rd_list(d, &(count), sizeof(type), &arr_, what)) break;            \
        (field) = arr_;                                                        \
        for (uint32_t i_ = 0; i_ < (count) && !(d)->rc; i_++) reader(d, &(field)[i_]); \
    } while (0)

/* ---- encoding ----------------------------------------------------------- */

static int pk_str(loom_pack *p, const char *s)
{
    return loom_pack_cstr(p, s ? s : "");
}

static int pk_ref(loom_pack *p, const loom_ref *r)
{
    return loom_pack_bin(p, r->id, LOOM_ID_LEN);
}

static int pk_strlist(loom_pack *p, char *const *v, uint32_t n)
{
    int rc = loom_pack_array(p, n);
    for (uint32_t i = 0; i < n && !rc; i++) rc = pk_str(p, v[i]);
    return rc;
}

static int pk_locs(loom_pack *p, const loom_wire_loc *l, uint32_t n)
{
    int rc = loom_pack_array(p, n);
    for (uint32_t i = 0; i < n && !rc; i++) {
        rc = loom_pack_array(p, 2);
        if (!rc) rc = loom_pack_u64(p, l[i].node);
        if (!rc) rc = pk_str(p, l[i].addr);
    }
    return rc;
}

static int pk_arg(loom_pack *p, const loom_wire_arg *a)
{
    int rc = loom_pack_array(p, 5);
    if (!rc) rc = loom_pack_u64(p, a->kind);
    if (!rc) rc = loom_pack_bin(p, a->value.p, a->value.n);
    if (!rc) rc = a->kind == LOOM_WARG_REF ? pk_ref(p, &a->ref) : loom_pack_bin(p, NULL, 0);
    if (!rc) rc = loom_pack_u64(p, a->size);
    if (!rc) rc = pk_locs(p, a->locs, a->nlocs);
    return rc;
}

static int pk_reslist(loom_pack *p, const loom_wire_res *r, uint32_t n)
{
    int rc = loom_pack_array(p, n);
    for (uint32_t i = 0; i < n && !rc; i++) {
        rc = loom_pack_array(p, 2);
        if (!rc) rc = pk_str(p, r[i].name);
        if (!rc) rc = loom_pack_f64(p, r[i].amount);
    }
    return rc;
}

static int pk_labels(loom_pack *p, const loom_wire_label *l, uint32_t n)
{
    int rc = loom_pack_array(p, n);
    for (uint32_t i = 0; i < n && !rc; i++) {
        rc = loom_pack_array(p, 2);
        if (!rc) rc = pk_str(p, l[i].key);
        if (!rc) rc = pk_str(p, l[i].value);
    }
    return rc;
}

static int pk_id16(loom_pack *p, const uint8_t *id, int present)
{
    return loom_pack_bin(p, present ? id : NULL, present ? 16 : 0);
}

static int pk_sched(loom_pack *p, const loom_wire_task *t)
{
    int rc = loom_pack_array(p, 12);
    if (!rc) rc = loom_pack_f64(p, t->num_gpus);
    if (!rc) rc = loom_pack_u64(p, t->gpu_memory);
    if (!rc) rc = pk_reslist(p, t->res, t->nres);
    if (!rc) rc = pk_labels(p, t->labels, t->nlabels);
    if (!rc) rc = loom_pack_u64(p, t->strategy);
    if (!rc) rc = loom_pack_u64(p, t->affinity_node);
    if (!rc) rc = loom_pack_bool(p, t->soft);
    if (!rc) rc = pk_id16(p, t->pg, t->has_pg);
    if (!rc) rc = loom_pack_i64(p, t->bundle);
    if (!rc) rc = pk_str(p, t->gpu_ids);
    if (!rc) rc = loom_pack_u64(p, t->max_retries);
    if (!rc) rc = loom_pack_bool(p, t->retry_on_error);
    return rc;
}

static int pk_actor(loom_pack *p, const loom_wire_task *t)
{
    int rc = loom_pack_array(p, 7);
    if (!rc) rc = loom_pack_u64(p, t->actor_op);
    if (!rc) rc = pk_id16(p, t->actor, t->actor_op != LOOM_ACTOR_NONE);
    if (!rc) rc = loom_pack_u64(p, t->max_concurrency);
    if (!rc) rc = loom_pack_bool(p, t->detached);
    if (!rc) rc = pk_str(p, t->actor_name);
    if (!rc) rc = loom_pack_i64(p, t->max_restarts);
    if (!rc) rc = loom_pack_u64(p, t->max_task_retries);
    return rc;
}

int loom__wire_pack_task(loom_pack *p, const loom_wire_task *t)
{
    int rc = loom_pack_array(p, 16);
    if (!rc) rc = loom_pack_bin(p, t->task_id, 16);
    if (!rc) rc = loom_pack_u64(p, t->kind);
    if (!rc) rc = pk_str(p, t->name);
    if (!rc) rc = pk_arg(p, &t->lib);
    if (!rc) rc = pk_str(p, t->function);
    if (!rc) rc = pk_strlist(p, t->argv, t->argc);
    if (!rc) rc = pk_strlist(p, t->env, t->nenv);
    if (!rc) rc = pk_str(p, t->cwd);
    if (!rc) rc = pk_strlist(p, t->outputs, t->noutputs);
    if (!rc) rc = loom_pack_bool(p, t->nocheck);
    if (!rc) rc = loom_pack_f64(p, t->num_cpus);
    if (!rc) rc = loom_pack_u64(p, t->memory);
    if (!rc) rc = loom_pack_array(p, t->nargs);
    for (uint32_t i = 0; i < t->nargs && !rc; i++) rc = pk_arg(p, &t->args[i]);
    if (!rc) rc = pk_sched(p, t);
    if (!rc) rc = pk_actor(p, t);
    return rc;
}

static int pk_node(loom_pack *p, const loom_wire_node *nd)
{
    int rc = loom_pack_array(p, 12);
    if (!rc) rc = loom_pack_u64(p, nd->id);
    if (!rc) rc = pk_str(p, nd->hostname);
    if (!rc) rc = pk_str(p, nd->data_addr);
    if (!rc) rc = pk_str(p, nd->store_dir);
    if (!rc) rc = pk_str(p, nd->spill_dir);
    if (!rc) rc = loom_pack_f64(p, nd->num_cpus);
    if (!rc) rc = loom_pack_u64(p, nd->memory);
    if (!rc) rc = loom_pack_u64(p, nd->capacity);
    if (!rc) rc = loom_pack_u64(p, nd->num_gpus);
    if (!rc) rc = loom_pack_u64(p, nd->gpu_memory);
    if (!rc) rc = pk_reslist(p, nd->res, nd->nres);
    if (!rc) rc = pk_labels(p, nd->labels, nd->nlabels);
    return rc;
}

static int pk_bundles(loom_pack *p, const loom_wire_bundle *b, uint32_t n)
{
    int rc = loom_pack_array(p, n);
    for (uint32_t i = 0; i < n && !rc; i++) {
        rc = loom_pack_array(p, 5);
        if (!rc) rc = loom_pack_f64(p, b[i].num_cpus);
        if (!rc) rc = loom_pack_u64(p, b[i].memory);
        if (!rc) rc = loom_pack_f64(p, b[i].num_gpus);
        if (!rc) rc = loom_pack_u64(p, b[i].gpu_memory);
        if (!rc) rc = pk_reslist(p, b[i].res, b[i].nres);
    }
    return rc;
}

static int pk_nodes(loom_pack *p, const loom_wire_node *nd, uint32_t n)
{
    int rc = loom_pack_array(p, n);
    for (uint32_t i = 0; i < n && !rc; i++) rc = pk_node(p, &nd[i]);
    return rc;
}

static int pk_tasks(loom_pack *p, const loom_wire_task *t, uint32_t n)
{
    int rc = loom_pack_array(p, n);
    for (uint32_t i = 0; i < n && !rc; i++) rc = loom__wire_pack_task(p, &t[i]);
    return rc;
}

static int pk_refs(loom_pack *p, const loom_ref *r, uint32_t n)
{
    int rc = loom_pack_array(p, n);
    for (uint32_t i = 0; i < n && !rc; i++) rc = pk_ref(p, &r[i]);
    return rc;
}

static int pk_outputs(loom_pack *p, const loom_wire_output *o, uint32_t n)
{
    int rc = loom_pack_array(p, n);
    for (uint32_t i = 0; i < n && !rc; i++) {
        rc = loom_pack_array(p, 3);
        if (!rc) rc = loom_pack_u64(p, o[i].index);
        if (!rc) rc = loom_pack_u64(p, o[i].size);
        if (!rc) rc = loom_pack_bin(p, o[i].value.p, o[i].value.n);
    }
    return rc;
}

/* ---- the decode and encode loops ---------------------------------------- */

static int rd_field(dec *d, const wire_field *f, loom_msg *m)
{
    void *at = (char *)m + f->off;
    uint32_t *count = (uint32_t *)((char *)m + f->count_off);
    switch (f->kind) {
    case F_I32: return rd_i32(d, at, f->what);
    case F_U32: return rd_u32(d, at, f->what);
    case F_U64: return rd_u64(d, at, f->what);
    case F_STR: return rd_str(d, at, f->what);
    case F_NAME: return rd_name(d, at, f->max, f->empty_ok, f->what);
    case F_HOST: return rd_host(d, at, f->what);
    case F_REF: return rd_ref(d, at, f->what);
    case F_BIN: return rd_bin(d, at, f->what);
    case F_REFS: RD_LIST(d, *(loom_ref **)at, *count, loom_ref, rd_ref_list_elem, f->what); break;
    case F_LOCS: return rd_locs(d, at, count);
    case F_TASKS: RD_LIST(d, *(loom_wire_task **)at, *count, loom_wire_task, rd_task, f->what); break;
    case F_OUTPUTS: RD_LIST(d, *(loom_wire_output **)at, *count, loom_wire_output, rd_output, f->what); break;
    case F_NODES: RD_LIST(d, *(loom_wire_node **)at, *count, loom_wire_node, rd_node, f->what); break;
    case F_BUNDLES: RD_LIST(d, *(loom_wire_bundle **)at, *count, loom_wire_bundle, rd_bundle, f->what); break;
    default: break;
    }
    return d->rc;
}

static int pk_field(loom_pack *p, const wire_field *f, const loom_msg *m)
{
    const void *at = (const char *)m + f->off;
    const uint32_t *count = (const uint32_t *)((const char *)m + f->count_off);
    switch (f->kind) {
    case F_I32: return loom_pack_i64(p, *(const int32_t *)at);
    case F_U32: return loom_pack_u64(p, *(const uint32_t *)at);
    case F_U64: return loom_pack_u64(p, *(const uint64_t *)at);
    case F_STR: case F_NAME: case F_HOST: return pk_str(p, *(char *const *)at);
    case F_REF: return pk_ref(p, at);
    case F_BIN: return loom_pack_bin(p, ((const loom_bytes *)at)->p, ((const loom_bytes *)at)->n);
    case F_REFS: return pk_refs(p, *(loom_ref *const *)at, *count);
    case F_LOCS: return pk_locs(p, *(loom_wire_loc *const *)at, *count);
    case F_TASKS: return pk_tasks(p, *(loom_wire_task *const *)at, *count);
    case F_OUTPUTS: return pk_outputs(p, *(loom_wire_output *const *)at, *count);
    case F_NODES: return pk_nodes(p, *(loom_wire_node *const *)at, *count);
    case F_BUNDLES: return pk_bundles(p, *(loom_wire_bundle *const *)at, *count);
    default: return 0;
    }
}

static void decode_fields(dec *d, loom_msg *m)
{
    const msg_schema *s = schema_of(m->type);
    for (int i = 0; i < WIRE_MAX_FIELDS && s->f[i].kind != F_END; i++) rd_field(d, &s->f[i], m);
    if (!d->rc && s->check) s->check(d, m);
}

int loom__wire_decode(const void *buf, size_t len, loom_msg *m, char *err, size_t errlen)
{
    memset(m, 0, sizeof(*m));
    dec d = {.arena = &m->arena, .err = err, .errlen = errlen};
    if (err && errlen) err[0] = 0;
    if (!buf && len) return fail(&d, "no data");
    loom_unpack_init(&d.u, buf, len);
    uint32_t n;
    uint64_t version = 0, type = 0;
    if (loom_unpack_array(&d.u, &n) || n < 3) return fail(&d, "not a loom message (want an array)");
    if (loom_unpack_u64(&d.u, &version) || version != LOOM_PROTO_VERSION)
        return fail(&d, "protocol version %llu is not %d", (unsigned long long)version,
                    LOOM_PROTO_VERSION);
    if (loom_unpack_u64(&d.u, &type) || type == 0 || type >= LOOM_MSG_TYPE_MAX)
        return fail(&d, "unknown message type %llu", (unsigned long long)type);
    m->type = (int)type;
    if (loom_unpack_u64(&d.u, &m->req)) return fail(&d, "req: want an unsigned integer");
    if ((int)n - 3 != field_count(m->type))
        return fail(&d, "%s: want %d fields, got %u", loom__msg_type_name(m->type),
                    field_count(m->type), n - 3);
    decode_fields(&d, m);
    if (!d.rc && !loom_unpack_done(&d.u)) fail(&d, "trailing bytes after the message");
    if (d.rc) {
        loom__arena_free(&m->arena);
        return d.rc;
    }
    return 0;
}
int loom__wire_encode(const loom_msg *m, loom_pack *p)
{
    int nf = field_count(m->type);
    if (nf < 0) return LOOM_EINVAL;
    loom_pack_reset(p);
    int rc = loom_pack_array(p, (uint32_t)(3 + nf));
    if (!rc) rc = loom_pack_u64(p, LOOM_PROTO_VERSION);
    if (!rc) rc = loom_pack_u64(p, (uint64_t)m->type);
    if (!rc) rc = loom_pack_u64(p, m->req);
    for (int i = 0; i < nf && !rc; i++) rc = pk_field(p, &schema[m->type].f[i], m);
    return rc;
}

const char *loom__msg_type_name(int type)
{
    const msg_schema *s = schema_of(type);
    return s ? s->name : "?";
}

void loom__msg_free(loom_msg *m)
{
    if (m) loom__arena_free(&m->arena);
}

void loom__msg_init(loom_msg *m, int type, uint64_t req)
{
    memset(m, 0, sizeof(*m));
    m->type = type;
    m->req = req;
}

int loom__wire_unpack_task(loom_unpack *u, loom_arena *arena, loom_wire_task *t, char *err, size_t errlen)
{
    dec d = {.u = *u, .arena = arena, .err = err, .errlen = errlen};
    memset(t, 0, sizeof(*t));
    rd_task(&d, t);
    if (!d.rc) *u = d.u;
    return d.rc;
}

/* ---- deep copy ---------------------------------------------------------- */

static char *cp_str(loom_arena *a, const char *s)
{
    return loom__arena_strndup(a, s ? s : "", s ? strlen(s) : 0);
}

static char **cp_strlist(loom_arena *a, char *const *v, uint32_t n)
{
    if (!n) return NULL;
    char **out = loom__arena_alloc(a, n * sizeof(char *));
    if (!out) return NULL;
    for (uint32_t i = 0; i < n; i++)
        if (!(out[i] = cp_str(a, v[i]))) return NULL;
    return out;
}

static int cp_arg(loom_arena *a, loom_wire_arg *dst, const loom_wire_arg *src)
{
    *dst = *src;
    dst->locs = NULL;
    dst->nlocs = 0;
    if (src->value.n) {
        uint8_t *p = loom__arena_alloc(a, src->value.n);
        if (!p) return LOOM_ENOMEM;
        memcpy(p, src->value.p, src->value.n);
        dst->value.p = p;
    }
    return LOOM_OK;
}

int loom__wire_task_copy(loom_arena *a, loom_wire_task *dst, const loom_wire_task *src)
{
    *dst = *src;
    dst->name = cp_str(a, src->name);
    dst->function = cp_str(a, src->function);
    dst->cwd = cp_str(a, src->cwd);
    dst->argv = cp_strlist(a, src->argv, src->argc);
    dst->env = cp_strlist(a, src->env, src->nenv);
    dst->outputs = cp_strlist(a, src->outputs, src->noutputs);
    if (!dst->name || !dst->function || !dst->cwd || (src->argc && !dst->argv) ||
        (src->nenv && !dst->env) || (src->noutputs && !dst->outputs))
        return LOOM_ENOMEM;
    if (cp_arg(a, &dst->lib, &src->lib)) return LOOM_ENOMEM;
    dst->gpu_ids = cp_str(a, src->gpu_ids);
    dst->actor_name = cp_str(a, src->actor_name);
    if (!dst->gpu_ids || !dst->actor_name) return LOOM_ENOMEM;
    dst->res = NULL;
    if (src->nres) {
        dst->res = loom__arena_alloc(a, src->nres * sizeof(loom_wire_res));
        if (!dst->res) return LOOM_ENOMEM;
        for (uint32_t i = 0; i < src->nres; i++) {
            dst->res[i].amount = src->res[i].amount;
            if (!(dst->res[i].name = cp_str(a, src->res[i].name))) return LOOM_ENOMEM;
        }
    }
    dst->labels = NULL;
    if (src->nlabels) {
        dst->labels = loom__arena_alloc(a, src->nlabels * sizeof(loom_wire_label));
        if (!dst->labels) return LOOM_ENOMEM;
        for (uint32_t i = 0; i < src->nlabels; i++) {
            dst->labels[i].key = cp_str(a, src->labels[i].key);
            dst->labels[i].value = cp_str(a, src->labels[i].value);
            if (!dst->labels[i].key || !dst->labels[i].value) return LOOM_ENOMEM;
        }
    }
    dst->args = NULL;
    if (src->nargs) {
        dst->args = loom__arena_alloc(a, src->nargs * sizeof(loom_wire_arg));
        if (!dst->args) return LOOM_ENOMEM;
        for (uint32_t i = 0; i < src->nargs; i++)
            if (cp_arg(a, &dst->args[i], &src->args[i])) return LOOM_ENOMEM;
    }
    return LOOM_OK;
}
