/* api/collective.c — collective communication (loom/collective.h): joining a
 * group, the CPU backend, and the directory rendezvous.  The NCCL backend is
 * in api/collective_nccl.c, the cluster rendezvous in api/collective_cluster.c.
 *
 * CPU backend.  The members form a full mesh of ZeroMQ channels: rank r binds
 * one PULL socket per peer, so every sender→receiver pair is its own FIFO and
 * a receive names the member it waits for, and connects one PUSH socket to
 * each peer.  Its record in the rendezvous, under "loom/coll/<name>/<rank>",
 * is "HOST\nPORT_0,PORT_1,...": PORT_p is where rank p connects (0 for r).
 * Joining ends with a hello to and from every peer.
 *
 * Channels speak CURVE with a key of the group's own, never the cluster's
 * (executors do not hold those, runtime/curve.h): rank 0 makes a random
 * keypair when the group forms and publishes it in the rendezvous under
 * "loom/coll/<name>/curve" before any member binds; the others read it
 * there (waiting, as for the backend).  Every PULL is a CURVE server with
 * that key and every PUSH a client with it, and a ZAP handler in the
 * group's zmq context lets in only that public key.  So the channels are
 * encrypted, and only who can read the rendezvous can join or listen: with
 * the cluster rendezvous, the head's key-value table, that is a client of
 * the cluster (a driver or task code, over its own CURVE connection); with
 * the directory rendezvous, who can read the directory (files are 0600).
 * This is the simplest design that keeps cluster keys out of executors: no
 * new message and nothing for the daemon to hand out, since the rendezvous
 * every member already trusts carries the key.
 *
 * Buffers are cut into world blocks and blocks into chunks of at most
 * chunk_bytes (1 MiB, less in big groups), so what is in flight stays bounded:
 *   reduce-scatter  for each chunk, every member sends its part of block b
 *                   straight to b's owner, which folds the world parts in
 *                   rank order, ((x0 op x1) op x2) op ...  (a ring would start
 *                   each block's fold at a different member, and floating
 *                   point sums would depend on where).  Each member sends and
 *                   receives (n-1)/n of the buffer, as in a ring.
 *   allgather       each member sends its block to every other member: again
 *                   (n-1)/n of the buffer out and in per member.
 *   allreduce       reduce-scatter then allgather over world blocks: 2(n-1)/n.
 *   broadcast       a pipelined chain root → root+1 → ... → root-1.
 *   barrier         an allreduce of one byte.
 * A member sends all its messages for a chunk before it receives, and no
 * member gets more than one chunk ahead of the members it waits for, so a
 * channel holds at most a few chunks.
 *
 * Every message is one frame: a 32-byte header (magic, group name hash,
 * operation number, chunk, sender, kind, payload length) and the payload.
 * Receivers check all of it and the exact length they expect before touching
 * the caller's buffer.  Every wait is a zmq_poll bounded by the group's
 * timeout.  After a failure in the middle of an operation the members are out
 * of step, so the group refuses further operations (LOOM_ESTATE). */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>
#include "api/collective_internal.h"
#include "runtime/curve.h"
#include "runtime/util.h"

#define COLL_MAGIC 0x4c434f4cu            /* "LOCL" */
#define HDR_LEN 32
#define CHUNK_MAX ((size_t)1 << 20)
#define CHUNK_MIN ((size_t)64 << 10)
#define INFLIGHT_BYTES ((size_t)16 << 20) /* chunk_bytes * (world - 1) at most */
#define DEFAULT_TIMEOUT_MS 60000
#define MAX_WORLD 1024
#define MAX_NAME 200
#define MAX_HOST 255
#define CHANNEL_HWM 16                    /* messages per channel and side */

enum { KIND_HELLO = 1, KIND_RS, KIND_AG, KIND_BC };

struct loom_collective {
    int world, rank, backend;
    int64_t timeout_ms;
    char name[MAX_NAME + 1];
    uint32_t name_hash;
    uint64_t seq;             /* operations so far; 0 is the joining hello */
    const char *opname;       /* the operation in progress, for messages */
    int broken;               /* a failure left the members out of step */
    size_t chunk_bytes;
    void *zctx;
    loom_curve_pair keys;     /* the group's CURVE keys (CPU backend) */
    loom_curve_zap *zap;      /* lets in the group's public key only */
    void **pull, **push;      /* [world]; NULL at rank */
    uint8_t *save;            /* chunk_bytes: own part while its place is overwritten */
    loom_coll_nccl *nccl;
    char err[512];
    char broke[256];          /* the start of the message that set broken */
};

/* Why this thread's last loom_collective_init failed (no group to hold it). */
static _Thread_local char init_err[512];

static int fail(loom_collective *g, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(loom_collective *g, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    loom__verrf(g->err, sizeof(g->err), rc, fmt, ap);
    va_end(ap);
    return rc;
}

size_t loom_dtype_size(int dtype)
{
    switch (dtype) {
    case LOOM_DT_F32: return 4;
    case LOOM_DT_F64: return 8;
    case LOOM_DT_I32: return 4;
    case LOOM_DT_I64: return 8;
    case LOOM_DT_U8: return 1;
    default: return 0;
    }
}

static uint32_t fnv1a(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

static void key_of(char *out, size_t len, const char *name, const char *leaf)
{
    loom__snprintf(out, len, "loom/coll/%s/%s", name, leaf);
}

/* ---- reductions ----------------------------------------------------------- */

/* d[i] = d[i] op s[i] for n elements; d is the accumulator, so folding the
 * members' parts in rank order gives ((x0 op x1) op x2) ...  Elements are
 * moved with memcpy: payloads inside received frames need not be aligned.
 * Integer sums and products wrap (computed unsigned). */
#define FOLD(T, EXPR) do {                                                   \
        for (size_t i_ = 0; i_ < n; i_++) {                                  \
            T a, b, r_;                                                      \
            memcpy(&a, d + i_ * sizeof(T), sizeof(T));                       \
            memcpy(&b, s + i_ * sizeof(T), sizeof(T));                       \
            r_ = (T)(EXPR);                                                  \
            memcpy(d + i_ * sizeof(T), &r_, sizeof(T));                      \
        }                                                                    \
    } while (0)
#define FOLD_OPS(T, UT) do {                                                 \
        switch (op) {                                                        \
        case LOOM_OP_SUM: FOLD(UT, a + b); break;                            \
        case LOOM_OP_PROD: FOLD(UT, a * b); break;                           \
        case LOOM_OP_MIN: FOLD(T, b < a ? b : a); break;                     \
        default: FOLD(T, b > a ? b : a); break;                              \
        }                                                                    \
    } while (0)

static void fold(uint8_t *d, const uint8_t *s, size_t n, int dtype, int op)
{
    switch (dtype) {
    case LOOM_DT_F32: FOLD_OPS(float, float); break;
    case LOOM_DT_F64: FOLD_OPS(double, double); break;
    case LOOM_DT_I32: FOLD_OPS(int32_t, uint32_t); break;
    case LOOM_DT_I64: FOLD_OPS(int64_t, uint64_t); break;
    default: FOLD_OPS(uint8_t, uint8_t); break;
    }
}

/* ---- messages ------------------------------------------------------------- */

typedef struct hdr {
    uint32_t magic, group;
    uint64_t seq;
    uint32_t chunk, src, kind, len;
} hdr;

static void hdr_put(uint8_t *p, const hdr *h)
{
    memcpy(p, &h->magic, 4);
    memcpy(p + 4, &h->group, 4);
    memcpy(p + 8, &h->seq, 8);
    memcpy(p + 16, &h->chunk, 4);
    memcpy(p + 20, &h->src, 4);
    memcpy(p + 24, &h->kind, 4);
    memcpy(p + 28, &h->len, 4);
}

static void hdr_get(const uint8_t *p, hdr *h)
{
    memcpy(&h->magic, p, 4);
    memcpy(&h->group, p + 4, 4);
    memcpy(&h->seq, p + 8, 8);
    memcpy(&h->chunk, p + 16, 4);
    memcpy(&h->src, p + 20, 4);
    memcpy(&h->kind, p + 24, 4);
    memcpy(&h->len, p + 28, 4);
}

/* Wait until sock can do ev (ZMQ_POLLIN or ZMQ_POLLOUT), up to deadline. */
static int wait_sock(loom_collective *g, void *sock, short ev, int64_t deadline, int peer)
{
    for (;;) {
        int64_t left = deadline - loom__now_ms();
        if (left <= 0)
            return fail(g, LOOM_ETIMEOUT, "%s: rank %d did not %s within %lld ms", g->opname,
                        peer, ev == ZMQ_POLLIN ? "send its part" : "take our data",
                        (long long)g->timeout_ms);
        zmq_pollitem_t it = { .socket = sock, .events = ev };
        int n = zmq_poll(&it, 1, (long)(left < 1000 ? left : 1000));
        if (n < 0 && errno != EINTR)
            return fail(g, LOOM_EIO, "%s: zmq_poll: %s", g->opname, zmq_strerror(errno));
        if (n > 0) return LOOM_OK;
    }
}

/* deadline 0: the group's timeout from now. */
static int64_t deadline_of(const loom_collective *g, int64_t deadline)
{
    return deadline ? deadline : loom__now_ms() + g->timeout_ms;
}

static int send_to(loom_collective *g, int peer, int kind, uint32_t chunk, const void *data,
                   size_t len, int64_t deadline)
{
    zmq_msg_t m;
    if (zmq_msg_init_size(&m, HDR_LEN + len) != 0)
        return fail(g, LOOM_ENOMEM, "%s: no memory for a %zu-byte message", g->opname, len);
    hdr h = { COLL_MAGIC, g->name_hash, g->seq, chunk, (uint32_t)g->rank, (uint32_t)kind,
              (uint32_t)len };
    uint8_t *p = zmq_msg_data(&m);
    hdr_put(p, &h);
    if (len) memcpy(p + HDR_LEN, data, len);
    deadline = deadline_of(g, deadline);
    for (;;) {
        if (zmq_msg_send(&m, g->push[peer], ZMQ_DONTWAIT) >= 0) return LOOM_OK;
        if (errno != EAGAIN && errno != EINTR) {
            int e = errno;
            zmq_msg_close(&m);
            return fail(g, LOOM_EIO, "%s: sending to rank %d: %s", g->opname, peer,
                        zmq_strerror(e));
        }
        int rc = wait_sock(g, g->push[peer], ZMQ_POLLOUT, deadline, peer);
        if (rc) {
            zmq_msg_close(&m);
            return rc;
        }
    }
}

/* Receive peer's next message, which must be (kind, chunk) of the current
 * operation with exactly len payload bytes.  On success *m holds it (close it
 * after use) and *payload points into it. */
static int recv_from(loom_collective *g, int peer, int kind, uint32_t chunk, size_t len,
                     int64_t deadline, zmq_msg_t *m, const uint8_t **payload)
{
    zmq_msg_init(m);
    deadline = deadline_of(g, deadline);
    for (;;) {
        if (zmq_msg_recv(m, g->pull[peer], ZMQ_DONTWAIT) >= 0) break;
        if (errno != EAGAIN && errno != EINTR) {
            int e = errno;
            zmq_msg_close(m);
            return fail(g, LOOM_EIO, "%s: receiving from rank %d: %s", g->opname, peer,
                        zmq_strerror(e));
        }
        int rc = wait_sock(g, g->pull[peer], ZMQ_POLLIN, deadline, peer);
        if (rc) {
            zmq_msg_close(m);
            return rc;
        }
    }
    size_t size = zmq_msg_size(m);
    hdr h = { 0 };
    if (size >= HDR_LEN) hdr_get(zmq_msg_data(m), &h);
    if (zmq_msg_more(m) || size != HDR_LEN + len || h.magic != COLL_MAGIC ||
        h.group != g->name_hash || h.seq != g->seq || h.chunk != chunk ||
        h.src != (uint32_t)peer || h.kind != (uint32_t)kind || h.len != (uint32_t)len) {
        zmq_msg_close(m);
        return fail(g, LOOM_EPROTO,
                    "%s: unexpected message from rank %d's channel: %zu bytes, magic %08x, "
                    "op %llu, chunk %u, sender %u, kind %u; expected %zu bytes, op %llu, "
                    "chunk %u, kind %d", g->opname, peer, size, h.magic,
                    (unsigned long long)h.seq, h.chunk, h.src, h.kind, HDR_LEN + len,
                    (unsigned long long)g->seq, chunk, kind);
    }
    *payload = (const uint8_t *)zmq_msg_data(m) + HDR_LEN;
    return LOOM_OK;
}

/* ---- CPU algorithms ------------------------------------------------------- */

/* World blocks of a buffer: block i has q (+1 for the first rem) elements. */
typedef struct blocks {
    size_t q, rem;
} blocks;

static size_t blk_off(blocks b, int i)
{
    return (size_t)i * b.q + ((size_t)i < b.rem ? (size_t)i : b.rem);
}

static size_t blk_len(blocks b, int i)
{
    return b.q + ((size_t)i < b.rem ? 1 : 0);
}

static size_t min_size(size_t a, size_t b)
{
    return a < b ? a : b;
}

static int overlaps(const uint8_t *a, const uint8_t *b, size_t n)
{
    return a < b + n && b < a + n;
}

/* src holds world blocks; out (blk_len(b, rank) elements) gets the rank-order
 * fold of this member's block over all members.  out may be src's own block. */
static int rs_phase(loom_collective *g, const uint8_t *src, uint8_t *out, blocks b, int dtype,
                    int op)
{
    size_t es = loom_dtype_size(dtype), ce = g->chunk_bytes / es;
    int n = g->world, r = g->rank;
    size_t nchunks = (blk_len(b, 0) + ce - 1) / ce;     /* block 0 is the longest */
    for (size_t k = 0; k < nchunks; k++) {
        size_t lo = k * ce;
        for (int s = 1; s < n; s++) {
            int p = (r + s) % n;
            size_t len = blk_len(b, p);
            if (lo >= len) continue;
            int rc = send_to(g, p, KIND_RS, (uint32_t)k, src + (blk_off(b, p) + lo) * es,
                             min_size(ce, len - lo) * es, 0);
            if (rc) return rc;
        }
        size_t len = blk_len(b, r);
        if (lo >= len) continue;
        size_t m = min_size(ce, len - lo), bytes = m * es;
        const uint8_t *own = src + (blk_off(b, r) + lo) * es;
        uint8_t *acc = out + lo * es;
        if (r != 0 && overlaps(own, acc, bytes)) {   /* x0 lands first in acc */
            memcpy(g->save, own, bytes);
            own = g->save;
        }
        for (int i = 0; i < n; i++) {
            const uint8_t *x = own;
            zmq_msg_t msg;
            if (i != r) {
                int rc = recv_from(g, i, KIND_RS, (uint32_t)k, bytes, 0, &msg, &x);
                if (rc) return rc;
            }
            if (i == 0) memmove(acc, x, bytes);
            else fold(acc, x, m, dtype, op);
            if (i != r) zmq_msg_close(&msg);
        }
    }
    return LOOM_OK;
}

/* buf holds world blocks; this member's is in place: send it to every other
 * member and receive theirs. */
static int ag_phase(loom_collective *g, uint8_t *buf, blocks b, int dtype)
{
    size_t es = loom_dtype_size(dtype), ce = g->chunk_bytes / es;
    int n = g->world, r = g->rank;
    size_t nchunks = (blk_len(b, 0) + ce - 1) / ce;
    for (size_t k = 0; k < nchunks; k++) {
        size_t lo = k * ce, len = blk_len(b, r);
        for (int s = 1; s < n && lo < len; s++) {
            int rc = send_to(g, (r + s) % n, KIND_AG, (uint32_t)k,
                             buf + (blk_off(b, r) + lo) * es, min_size(ce, len - lo) * es, 0);
            if (rc) return rc;
        }
        for (int s = 1; s < n; s++) {
            int p = (r - s + n) % n;
            size_t plen = blk_len(b, p);
            if (lo >= plen) continue;
            size_t bytes = min_size(ce, plen - lo) * es;
            zmq_msg_t msg;
            const uint8_t *x;
            int rc = recv_from(g, p, KIND_AG, (uint32_t)k, bytes, 0, &msg, &x);
            if (rc) return rc;
            memcpy(buf + (blk_off(b, p) + lo) * es, x, bytes);
            zmq_msg_close(&msg);
        }
    }
    return LOOM_OK;
}

static int cpu_allreduce(loom_collective *g, uint8_t *buf, size_t count, int dtype, int op)
{
    if (g->world == 1 || count == 0) return LOOM_OK;
    blocks b = { count / (size_t)g->world, count % (size_t)g->world };
    size_t es = loom_dtype_size(dtype);
    int rc = rs_phase(g, buf, buf + blk_off(b, g->rank) * es, b, dtype, op);
    return rc ? rc : ag_phase(g, buf, b, dtype);
}

static int cpu_broadcast(loom_collective *g, uint8_t *buf, size_t count, int dtype, int root)
{
    int n = g->world, r = g->rank;
    if (n == 1 || count == 0) return LOOM_OK;
    size_t es = loom_dtype_size(dtype), ce = g->chunk_bytes / es;
    int pos = (r - root + n) % n, prev = (r - 1 + n) % n, next = (r + 1) % n;
    for (size_t lo = 0, k = 0; lo < count; lo += ce, k++) {
        size_t bytes = min_size(ce, count - lo) * es;
        if (pos > 0) {
            zmq_msg_t msg;
            const uint8_t *x;
            int rc = recv_from(g, prev, KIND_BC, (uint32_t)k, bytes, 0, &msg, &x);
            if (rc) return rc;
            memcpy(buf + lo * es, x, bytes);
            zmq_msg_close(&msg);
        }
        if (pos < n - 1) {
            int rc = send_to(g, next, KIND_BC, (uint32_t)k, buf + lo * es, bytes, 0);
            if (rc) return rc;
        }
    }
    return LOOM_OK;
}

/* ---- joining (CPU) -------------------------------------------------------- */

static void *new_socket(loom_collective *g, int type, int ipv6)
{
    void *s = zmq_socket(g->zctx, type);
    if (!s) return NULL;
    int zero = 0, hwm = CHANNEL_HWM, sockbuf = (int)(2 * g->chunk_bytes);
    /* libzmq checks the size on the wire: a CURVE MESSAGE adds its command
       name, nonce and MAC (33 bytes) to the frame */
    int64_t maxmsg = (int64_t)(HDR_LEN + g->chunk_bytes + 64);
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof(zero));
    zmq_setsockopt(s, type == ZMQ_PUSH ? ZMQ_SNDHWM : ZMQ_RCVHWM, &hwm, sizeof(hwm));
    zmq_setsockopt(s, type == ZMQ_PUSH ? ZMQ_SNDBUF : ZMQ_RCVBUF, &sockbuf, sizeof(sockbuf));
    if (type == ZMQ_PULL) zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &maxmsg, sizeof(maxmsg));
    if (ipv6) zmq_setsockopt(s, ZMQ_IPV6, &ipv6, sizeof(ipv6));
    int rc = type == ZMQ_PULL ? loom__curve_server(s, &g->keys) : loom__curve_client(s, g->keys.pub, &g->keys);
    if (rc) {
        zmq_close(s);
        return NULL;
    }
    return s;
}

static int rv_get(loom_collective *g, const loom_rendezvous *rv, const char *key, int64_t deadline,
                  const char *who, void **val, size_t *len);

/* The group's CURVE keys: rank 0 makes and publishes them ("PUB SEC"), the
 * others read them; then the ZAP handler starts, before any PULL binds. */
static int group_keys(loom_collective *g, const loom_rendezvous *rv, int64_t deadline)
{
    char key[MAX_NAME + 64], text[2 * LOOM_CURVE_Z85 + 2];
    key_of(key, sizeof(key), g->name, "curve");
    int rc = LOOM_OK;
    if (g->rank == 0) {
        if (loom__curve_random_pair(&g->keys)) return fail(g, LOOM_EIO, "cannot make the group's CURVE keys");
        loom__snprintf(text, sizeof(text), "%s %s", g->keys.pub, g->keys.sec);
        rc = rv->put(rv->arg, key, text, 2 * LOOM_CURVE_Z85 + 1);
        if (rc) rc = fail(g, rc, "publishing %s: %s", key, loom_strerror(rc));
    } else {
        void *val = NULL;
        size_t len = 0;
        rc = rv_get(g, rv, key, deadline, "rank 0", &val, &len);
        if (rc) return rc;
        loom_curve_pair got;
        int ok = len == 2 * LOOM_CURVE_Z85 + 1 && ((char *)val)[LOOM_CURVE_Z85] == ' ';
        if (ok) {
            memcpy(text, (char *)val + LOOM_CURVE_Z85 + 1, LOOM_CURVE_Z85);
            text[LOOM_CURVE_Z85] = 0;
        }
        if (!ok || loom__curve_pair_from_secret(text, &got) || memcmp(got.pub, val, LOOM_CURVE_Z85) != 0)
            rc = fail(g, LOOM_EPROTO, "%s holds no CURVE key pair", key);
        else
            g->keys = got;
        free(val);
    }
    memset(text, 0, sizeof(text));
    loom_curve_allow allow = {g->keys.pub, "group"};
    if (!rc && loom__curve_zap_start(g->zctx, &allow, 1, &g->zap))
        rc = fail(g, LOOM_EIO, "cannot start the group's ZAP handler");
    return rc;
}

/* "tcp://HOST:PORT" ([HOST] for IPv6); port "*" to bind any. */
static void endpoint(char *out, size_t len, const char *host, const char *port)
{
    if (strchr(host, ':')) loom__snprintf(out, len, "tcp://[%s]:%s", host, port);
    else loom__snprintf(out, len, "tcp://%s:%s", host, port);
}

static int valid_host(const char *h)
{
    size_t n = strlen(h);
    return n > 0 && n <= MAX_HOST && strcspn(h, " \t\r\n,/[]") == n;
}

/* Bind one PULL per peer and publish "HOST\nPORT_0,...". */
static int publish_record(loom_collective *g, const loom_rendezvous *rv, const char *host)
{
    int ipv6 = strchr(host, ':') != NULL;
    loom_buf rec = { 0 };
    loom__buf_puts(&rec, host);
    int rc = loom__buf_append(&rec, "\n", 1) ? LOOM_ENOMEM : LOOM_OK;
    char ep[MAX_HOST + 32], key[MAX_NAME + 64];
    endpoint(ep, sizeof(ep), host, "*");
    for (int p = 0; p < g->world && !rc; p++) {
        char port[16] = "0";
        if (p != g->rank) {
            g->pull[p] = new_socket(g, ZMQ_PULL, ipv6);
            if (!g->pull[p] || zmq_bind(g->pull[p], ep) != 0) {
                rc = fail(g, LOOM_EIO, "cannot listen on %s: %s", ep, zmq_strerror(errno));
                break;
            }
            char last[MAX_HOST + 64] = "";
            size_t last_len = sizeof(last);
            zmq_getsockopt(g->pull[p], ZMQ_LAST_ENDPOINT, last, &last_len);
            const char *colon = strrchr(last, ':');
            int port_n = colon ? atoi(colon + 1) : 0;
            if (port_n <= 0 || port_n > 65535) {
                rc = fail(g, LOOM_EIO, "cannot tell the port of %s", last);
                break;
            }
            loom__snprintf(port, sizeof(port), "%d", port_n);
        }
        loom__buf_puts(&rec, port);
        if (p + 1 < g->world) loom__buf_append(&rec, ",", 1);
        if (rec.oom) rc = LOOM_ENOMEM;
    }
    if (!rc) {
        char rank[16];
        loom__snprintf(rank, sizeof(rank), "%d", g->rank);
        key_of(key, sizeof(key), g->name, rank);
        rc = rv->put(rv->arg, key, rec.p, rec.len);
        if (rc) fail(g, rc, "publishing this member's address under %s: %s", key, loom_strerror(rc));
    }
    if (rc == LOOM_ENOMEM) fail(g, rc, "no memory for the address record");
    loom__buf_free(&rec);
    return rc;
}

/* Parse peer's record (NUL-terminated) and connect a PUSH to the port it
 * listens on for this member. */
static int connect_peer(loom_collective *g, int peer, char *rec, size_t len)
{
    char *nl = memchr(rec, '\n', len);
    if (!nl || strlen(rec) != len) goto bad;
    *nl = 0;
    if (!valid_host(rec)) goto bad;
    long port = -1;
    char *p = nl + 1;
    for (int i = 0; i < g->world; i++) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v > 65535) goto bad;
        if (i == g->rank) port = v;
        if (i + 1 < g->world ? *end != ',' : *end != 0) goto bad;
        p = end + 1;
    }
    if (port <= 0) goto bad;
    char portstr[16], ep[MAX_HOST + 32];
    loom__snprintf(portstr, sizeof(portstr), "%ld", port);
    endpoint(ep, sizeof(ep), rec, portstr);
    g->push[peer] = new_socket(g, ZMQ_PUSH, strchr(rec, ':') != NULL);
    if (!g->push[peer] || zmq_connect(g->push[peer], ep) != 0)
        return fail(g, LOOM_EIO, "cannot connect to rank %d at %s: %s", peer, ep,
                    zmq_strerror(errno));
    return LOOM_OK;
bad:
    return fail(g, LOOM_EPROTO, "rank %d's address record in the rendezvous is malformed", peer);
}

/* A rendezvous get up to deadline; a key that never appears means the member
 * publishing it did not join. */
static int rv_get(loom_collective *g, const loom_rendezvous *rv, const char *key, int64_t deadline,
                  const char *who, void **val, size_t *len)
{
    int64_t left = deadline - loom__now_ms();
    int rc = rv->get(rv->arg, key, left > 0 ? left : 0, val, len);
    if (rc == LOOM_ETIMEOUT || rc == LOOM_ENOTFOUND)
        return fail(g, LOOM_ETIMEOUT, "%s did not join group %s within %lld ms (no %s)", who,
                    g->name, (long long)g->timeout_ms, key);
    if (rc) return fail(g, rc, "reading %s from the rendezvous: %s", key, loom_strerror(rc));
    return LOOM_OK;
}

static int cpu_join(loom_collective *g, const loom_rendezvous *rv, const char *host,
                    int64_t deadline)
{
    int n = g->world;
    if (n == 1) return LOOM_OK;
    size_t chunk = INFLIGHT_BYTES / (size_t)(n - 1);
    chunk = chunk > CHUNK_MAX ? CHUNK_MAX : chunk < CHUNK_MIN ? CHUNK_MIN : chunk;
    g->chunk_bytes = chunk & ~(size_t)7;
    g->pull = calloc((size_t)n, sizeof(void *));
    g->push = calloc((size_t)n, sizeof(void *));
    g->save = malloc(g->chunk_bytes);
    g->zctx = zmq_ctx_new();
    if (!g->pull || !g->push || !g->save || !g->zctx)
        return fail(g, LOOM_ENOMEM, "no memory for a group of %d", n);
    zmq_ctx_set(g->zctx, ZMQ_MAX_SOCKETS, 2 * n + 16);
    int rc = group_keys(g, rv, deadline);
    if (!rc) rc = publish_record(g, rv, host);
    for (int p = 0; p < n && !rc; p++) {
        if (p == g->rank) continue;
        char key[MAX_NAME + 64], leaf[16], who[32];
        loom__snprintf(leaf, sizeof(leaf), "%d", p);
        loom__snprintf(who, sizeof(who), "rank %d", p);
        key_of(key, sizeof(key), g->name, leaf);
        void *val = NULL;
        size_t len = 0;
        rc = rv_get(g, rv, key, deadline, who, &val, &len);
        if (!rc) {
            /* NUL-terminate: rendezvous values are bytes */
            char *rec = realloc(val, len + 1);
            if (!rec) {
                free(val);
                return fail(g, LOOM_ENOMEM, "no memory for rank %d's record", p);
            }
            rec[len] = 0;
            rc = connect_peer(g, p, rec, len);
            free(rec);
        }
    }
    /* Hello to and from everyone: every channel works, and all agree on the world. */
    uint32_t hello[2] = { (uint32_t)n, 0 };
    for (int p = 0; p < n && !rc; p++) {
        if (p == g->rank) continue;
        hello[1] = (uint32_t)p;
        rc = send_to(g, p, KIND_HELLO, 0, hello, sizeof(hello), deadline);
    }
    for (int p = 0; p < n && !rc; p++) {
        if (p == g->rank) continue;
        zmq_msg_t msg;
        const uint8_t *x;
        rc = recv_from(g, p, KIND_HELLO, 0, sizeof(hello), deadline, &msg, &x);
        if (rc) break;
        uint32_t got[2];
        memcpy(got, x, sizeof(got));
        zmq_msg_close(&msg);
        if (got[0] != (uint32_t)n || got[1] != (uint32_t)g->rank)
            rc = fail(g, LOOM_EPROTO, "rank %d joined group %s with world %u (this member: %d)",
                      p, g->name, got[0], n);
    }
    return rc;
}

/* ---- groups --------------------------------------------------------------- */

/* Rank 0 settles the backend (AUTO: NCCL when it is usable here) and publishes
 * it; the others follow, and an explicit choice must agree. */
static int choose_backend(loom_collective *g, const loom_rendezvous *rv, int want,
                          int64_t deadline)
{
    char key[MAX_NAME + 64], why[256] = "";
    key_of(key, sizeof(key), g->name, "backend");
    if (want == LOOM_COLL_NCCL && !loom__coll_nccl_usable(why, sizeof(why)))
        return fail(g, LOOM_ENOTFOUND, "NCCL backend unavailable: %s", why);
    if (g->rank == 0) {
        g->backend = want;
        if (want == LOOM_COLL_AUTO)
            g->backend = loom__coll_nccl_usable(why, sizeof(why)) ? LOOM_COLL_NCCL : LOOM_COLL_CPU;
        const char *v = g->backend == LOOM_COLL_NCCL ? "nccl" : "cpu";
        int rc = rv->put(rv->arg, key, v, strlen(v));
        if (rc) return fail(g, rc, "publishing %s: %s", key, loom_strerror(rc));
        return LOOM_OK;
    }
    void *val = NULL;
    size_t len = 0;
    int rc = rv_get(g, rv, key, deadline, "rank 0", &val, &len);
    if (rc) return rc;
    if (len == 4 && memcmp(val, "nccl", 4) == 0) g->backend = LOOM_COLL_NCCL;
    else if (len == 3 && memcmp(val, "cpu", 3) == 0) g->backend = LOOM_COLL_CPU;
    else rc = fail(g, LOOM_EPROTO, "%s holds no backend name", key);
    free(val);
    if (!rc && want != LOOM_COLL_AUTO && want != g->backend)
        rc = fail(g, LOOM_EINVAL, "rank 0 chose the %s backend, this member asked for %s",
                  g->backend == LOOM_COLL_NCCL ? "nccl" : "cpu",
                  want == LOOM_COLL_NCCL ? "nccl" : "cpu");
    if (!rc && g->backend == LOOM_COLL_NCCL && !loom__coll_nccl_usable(why, sizeof(why)))
        rc = fail(g, LOOM_ENOTFOUND, "rank 0 chose NCCL, unavailable here: %s", why);
    return rc;
}

int loom_collective_init(const loom_rendezvous *rv, const char *name, int world, int rank,
                         const loom_collective_opts *opts, loom_collective **out)
{
    init_err[0] = 0;
    if (out) *out = NULL;
    int want = opts ? opts->backend : LOOM_COLL_AUTO;
    const char *env = getenv("LOOM_NODE_HOST");
    const char *host = opts && opts->host && *opts->host ? opts->host
                     : env && *env ? env : "127.0.0.1";
    if (!out || !rv || !rv->put || !rv->get || !name || !*name || strlen(name) > MAX_NAME ||
        world < 1 || world > MAX_WORLD || rank < 0 || rank >= world ||
        want < LOOM_COLL_AUTO || want > LOOM_COLL_NCCL || !valid_host(host)) {
        loom__snprintf(init_err, sizeof(init_err), "loom_collective_init: invalid argument");
        return LOOM_EINVAL;
    }
    loom_collective *g = calloc(1, sizeof(*g));
    if (!g) return LOOM_ENOMEM;
    g->world = world;
    g->rank = rank;
    g->timeout_ms = opts && opts->timeout_ms > 0 ? opts->timeout_ms : DEFAULT_TIMEOUT_MS;
    loom__snprintf(g->name, sizeof(g->name), "%s", name);
    g->name_hash = fnv1a(name);
    g->opname = "join";
    int64_t deadline = loom__now_ms() + g->timeout_ms;
    int rc = choose_backend(g, rv, want, deadline);
    if (!rc && g->backend == LOOM_COLL_NCCL) {
        int64_t left = deadline - loom__now_ms();
        rc = loom__coll_nccl_new(rv, name, world, rank, left > 0 ? left : 1, &g->nccl, g->err,
                                 sizeof(g->err));
    } else if (!rc) {
        rc = cpu_join(g, rv, host, deadline);
    }
    if (rc) {
        loom__snprintf(init_err, sizeof(init_err), "%s", g->err);
        g->broken = 1;        /* peers may be half connected: do not linger */
        loom_collective_destroy(&g);
        return rc;
    }
    *out = g;
    return LOOM_OK;
}

void loom_collective_destroy(loom_collective **gp)
{
    if (!gp || !*gp) return;
    loom_collective *g = *gp;
    /* A healthy group lets its last messages (a broadcast's root returns
     * before the others have them) reach the peers, up to the timeout. */
    int linger = g->broken ? 0 : g->timeout_ms > INT_MAX ? INT_MAX : (int)g->timeout_ms;
    for (int p = 0; p < g->world; p++) {
        if (g->pull && g->pull[p]) zmq_close(g->pull[p]);
        if (g->push && g->push[p]) {
            zmq_setsockopt(g->push[p], ZMQ_LINGER, &linger, sizeof(linger));
            zmq_close(g->push[p]);
        }
    }
    loom__curve_zap_stop(&g->zap);
    memset(&g->keys, 0, sizeof(g->keys));
    if (g->zctx) {
        while (zmq_ctx_term(g->zctx) != 0 && errno == EINTR) {
        }
    }
    loom__coll_nccl_destroy(&g->nccl);
    free(g->pull);
    free(g->push);
    free(g->save);
    free(g);
    *gp = NULL;
}

int loom_collective_rank(const loom_collective *g)
{
    return g ? g->rank : LOOM_EINVAL;
}

int loom_collective_world(const loom_collective *g)
{
    return g ? g->world : LOOM_EINVAL;
}

int loom_collective_backend(const loom_collective *g)
{
    return g ? g->backend : LOOM_EINVAL;
}

const char *loom_collective_error(const loom_collective *g)
{
    return g ? g->err : init_err;
}

/* ---- operations ----------------------------------------------------------- */

/* Checks shared by every operation; on success the operation is numbered. */
static int op_begin(loom_collective *g, const char *opname, int dtype, int op)
{
    if (!g) return LOOM_EINVAL;
    g->opname = opname;
    if (g->broken)
        return fail(g, LOOM_ESTATE, "%s: the group is unusable after an earlier failure (%s)",
                    opname, g->broke);
    if (!loom_dtype_size(dtype)) return fail(g, LOOM_EINVAL, "%s: unknown dtype %d", opname, dtype);
    if (op < LOOM_OP_SUM || op > LOOM_OP_MAX)
        return fail(g, LOOM_EINVAL, "%s: unknown reduction %d", opname, op);
    return LOOM_OK;
}

/* A failure once messages may have moved leaves the members out of step. */
static int op_end(loom_collective *g, int rc)
{
    if (rc) {
        g->broken = 1;
        memcpy(g->broke, g->err, sizeof(g->broke) - 1);
    }
    return rc;
}

static int bad_buffer(loom_collective *g, const void *p, size_t count, size_t per_rank_mult,
                      int dtype)
{
    size_t es = loom_dtype_size(dtype);
    if (count > SIZE_MAX / es / per_rank_mult)
        return fail(g, LOOM_EINVAL, "%s: %zu elements is too many", g->opname, count);
    if (count && !p) return fail(g, LOOM_EINVAL, "%s: NULL buffer", g->opname);
    return LOOM_OK;
}

int loom_allreduce(loom_collective *g, void *buf, size_t count, int dtype, int op)
{
    int rc = op_begin(g, "allreduce", dtype, op);
    if (!rc) rc = bad_buffer(g, buf, count, 1, dtype);
    if (rc) return rc;
    g->seq++;
    if (g->nccl) rc = loom__coll_nccl_allreduce(g->nccl, buf, count, dtype, op, g->err, sizeof(g->err));
    else rc = cpu_allreduce(g, buf, count, dtype, op);
    return op_end(g, rc);
}

int loom_broadcast(loom_collective *g, void *buf, size_t count, int dtype, int root)
{
    int rc = op_begin(g, "broadcast", dtype, LOOM_OP_SUM);
    if (!rc) rc = bad_buffer(g, buf, count, 1, dtype);
    if (!rc && (root < 0 || root >= g->world))
        rc = fail(g, LOOM_EINVAL, "broadcast: root %d outside 0..%d", root, g->world - 1);
    if (rc) return rc;
    g->seq++;
    if (g->nccl) rc = loom__coll_nccl_broadcast(g->nccl, buf, count, dtype, root, g->err, sizeof(g->err));
    else rc = cpu_broadcast(g, buf, count, dtype, root);
    return op_end(g, rc);
}

int loom_allgather(loom_collective *g, const void *send, size_t count, int dtype, void *recv)
{
    int rc = op_begin(g, "allgather", dtype, LOOM_OP_SUM);
    if (!rc) rc = bad_buffer(g, send, count, (size_t)g->world, dtype);
    if (!rc) rc = bad_buffer(g, recv, count, (size_t)g->world, dtype);
    if (rc) return rc;
    g->seq++;
    if (g->nccl)
        return op_end(g, loom__coll_nccl_allgather(g->nccl, send, count, dtype, recv, g->err,
                                                   sizeof(g->err)));
    size_t es = loom_dtype_size(dtype);
    uint8_t *own = (uint8_t *)recv + (size_t)g->rank * count * es;
    if (count && own != send) memmove(own, send, count * es);
    if (g->world == 1 || count == 0) return LOOM_OK;
    blocks b = { count, 0 };
    return op_end(g, ag_phase(g, recv, b, dtype));
}

int loom_reduce_scatter(loom_collective *g, const void *send, size_t count, int dtype, int op,
                        void *recv)
{
    int rc = op_begin(g, "reduce_scatter", dtype, op);
    if (!rc) rc = bad_buffer(g, send, count, (size_t)g->world, dtype);
    if (!rc) rc = bad_buffer(g, recv, count, (size_t)g->world, dtype);
    if (rc) return rc;
    g->seq++;
    if (g->nccl)
        return op_end(g, loom__coll_nccl_reduce_scatter(g->nccl, send, count, dtype, op, recv,
                                                        g->err, sizeof(g->err)));
    if (count == 0) return LOOM_OK;
    if (g->world == 1) {
        if (recv != send) memmove(recv, send, count * loom_dtype_size(dtype));
        return LOOM_OK;
    }
    blocks b = { count, 0 };
    return op_end(g, rs_phase(g, send, recv, b, dtype, op));
}

int loom_barrier(loom_collective *g)
{
    int rc = op_begin(g, "barrier", LOOM_DT_U8, LOOM_OP_MAX);
    if (rc) return rc;
    g->seq++;
    uint8_t one = 1;
    if (g->nccl)
        rc = loom__coll_nccl_allreduce(g->nccl, &one, 1, LOOM_DT_U8, LOOM_OP_MAX, g->err,
                                       sizeof(g->err));
    else rc = cpu_allreduce(g, &one, 1, LOOM_DT_U8, LOOM_OP_MAX);
    return op_end(g, rc);
}

/* ---- directory rendezvous ------------------------------------------------- */

/* DIR/KEY with every '/' of KEY made '_'. */
static int dir_path(const char *dir, const char *key, char *out, size_t len)
{
    if (!key || !*key || strcmp(key, ".") == 0 || strcmp(key, "..") == 0) return LOOM_EINVAL;
    int n = snprintf(out, len, "%s/%s", dir, key);
    if (n < 0 || (size_t)n >= len) return LOOM_EINVAL;
    for (char *p = out + strlen(dir) + 1; *p; p++)
        if (*p == '/') *p = '_';
    return LOOM_OK;
}

static int dir_put(void *arg, const char *key, const void *val, size_t len)
{
    char path[4096];
    int rc = dir_path(arg, key, path, sizeof(path));
    if (rc) return rc;
    rc = loom__write_file(path, val, len, 0600);
    if (rc == LOOM_EIO && loom__mkdir_p(arg) == LOOM_OK) rc = loom__write_file(path, val, len, 0600);
    return rc;
}

static int dir_get(void *arg, const char *key, int64_t timeout_ms, void **val, size_t *len)
{
    char path[4096];
    int rc = dir_path(arg, key, path, sizeof(path));
    if (rc) return rc;
    int64_t deadline = loom__now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    long pause_us = 500;
    for (;;) {
        char *data = NULL;
        size_t n = 0;
        rc = loom__read_file(path, (size_t)64 << 20, &data, &n);
        if (rc == LOOM_OK) {
            *val = data;
            *len = n;
            return LOOM_OK;
        }
        if (rc != LOOM_ENOTFOUND) return rc;
        int64_t left = deadline - loom__now_ms();
        if (left <= 0) return LOOM_ETIMEOUT;
        long us = left * 1000 < pause_us ? (long)(left * 1000) : pause_us;
        struct timespec ts = { us / 1000000, (us % 1000000) * 1000 };
        nanosleep(&ts, NULL);
        if (pause_us < 20000) pause_us *= 2;
    }
}

void loom_rendezvous_dir(loom_rendezvous *rv, const char *dir)
{
    rv->arg = (void *)dir;
    rv->put = dir_put;
    rv->get = dir_get;
}
