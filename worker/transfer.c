/* worker/transfer.c — node-to-node object transfer for the node daemon: the
 * data port it serves (CURVE, HELLO, then FETCH answered
 * with CHUNKs and PUSH of a driver's remote put, in chunks), and the pulls of
 * a task's missing arguments from the nodes holding them (one DEALER per
 * peer, FETCH_WINDOW chunk requests in flight, another copy tried when one
 * fails or stalls).  The daemon's state is in daemon_internal.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>
#include "objectstore/store.h"
#include "runtime/hmap.h"
#include "runtime/ids.h"
#include "runtime/log.h"
#include "runtime/util.h"
#include "runtime/wire.h"
#include "runtime/zloop.h"
#include "worker/daemon_internal.h"

#define FETCH_WINDOW 4       /* chunk requests in flight per transfer */
#define TRANSFER_STALL_MS 10000 /* a transfer with no chunk for this long tries another copy */

/* A pull of one object from another node. */
typedef struct transfer {
    loom_ref ref;
    uint64_t total, received, next_offset;
    int started;
    uint8_t *buf;
    int loc_index;
    loom_wire_loc *locs;      /* copies (owned) of where to fetch from */
    uint32_t nlocs;
    dtask **waiters;
    int nwait, cap_wait;
    int64_t last_activity;
    uint64_t serial;          /* echoed by the peer in replies (req) */
} transfer;

typedef struct peer {
    char addr[256];
    void *sock;
    loom_zwatch *watch;
    daemon_s *d;
} peer;

/* ---- transfers (pulling objects from other nodes) ---------------------- */

static void on_peer_frames(void *arg, zmq_msg_t *frames, int n);

static peer *peer_get(daemon_s *d, const char *addr)
{
    peer *p = loom__hmap_get(&d->peers, addr, strlen(addr));
    if (p) return p;
    if (strlen(addr) >= sizeof(p->addr) || strlen(addr) > LOOM_HMAP_KEY_MAX) return NULL;
    p = calloc(1, sizeof(*p));
    if (!p) return NULL;
    loom__snprintf(p->addr, sizeof(p->addr), "%s", addr);
    p->d = d;
    p->sock = zmq_socket(d->zctx, ZMQ_DEALER);
    loom__zsock_setup(p->sock, ZMQ_DEALER);
    char ep[300];
    loom__snprintf(ep, sizeof(ep), "tcp://%s", addr);
    if (loom__curve_client(p->sock, d->keys.server.pub, &d->keys.node) || zmq_connect(p->sock, ep) != 0 || loom__zwatch_start(d->loop, p->sock, on_peer_frames, p, &p->watch)) {
        zmq_close(p->sock);
        free(p);
        return NULL;
    }
    loom_msg hello;
    loom__msg_init(&hello, LOOM_MSG_HELLO, 0);
    hello.role = LOOM_ROLE_NODE;
    hello.secret = ""; /* CURVE is the proof */
    hello.hostname = d->hostname;
    loom__zsend_msg(p->sock, NULL, 0, &hello, d->out);
    loom__hmap_put(&d->peers, p->addr, strlen(p->addr), p);
    return p;
}

static void transfer_request(daemon_s *d, transfer *x, uint64_t offset)
{
    peer *p = x->loc_index < (int)x->nlocs ? peer_get(d, x->locs[x->loc_index].addr) : NULL;
    if (!p) return;
    loom_msg m;
    loom__msg_init(&m, LOOM_MSG_FETCH, x->serial);
    m.ref = x->ref;
    m.offset = offset;
    m.length = LOOM_CHUNK_SIZE;
    loom__zsend_msg(p->sock, NULL, 0, &m, d->out);
    x->last_activity = loom__now_ms();
}

static void transfer_free(transfer *x)
{
    for (uint32_t i = 0; i < x->nlocs; i++) free(x->locs[i].addr);
    free(x->waiters);
    free(x->locs);
    free(x->buf);
    free(x);
}

static void transfer_finish(daemon_s *d, transfer *x, int rc, const char *why)
{
    loom__hmap_del(&d->transfers, x->ref.id, LOOM_ID_LEN);
    if (!rc) {
        rc = loom__store_put(d->store, x->ref.id, x->buf, x->total, 0);
        if (rc) why = loom_strerror(rc);
        else {
            loom_msg m;
            loom__msg_init(&m, LOOM_MSG_OBJ_ADDED, 0);
            m.ref = x->ref;
            m.size = x->total;
            loom__daemon_send_head(d, &m);
        }
    }
    for (int i = 0; i < x->nwait; i++) {
        dtask *t = x->waiters[i];
        if (rc == 0) {
            if (loom__store_pin(d->store, x->ref.id) == 0) t->pinned[t->pinned_n++] = x->ref;
        } else if (!t->failed) {
            char hex[41];
            loom_ref_to_hex(&x->ref, hex);
            t->failed = 1;
            loom__snprintf(t->error, sizeof(t->error), "cannot fetch argument %s: %s", hex, why);
        }
        loom__daemon_arg_ready(d, t);
    }
    transfer_free(x);
}

static void transfer_retry_or_fail(daemon_s *d, transfer *x, const char *why)
{
    if (x->loc_index + 1 < (int)x->nlocs) {
        LOG_WARN("fetch from %s failed (%s); trying the next copy", x->locs[x->loc_index].addr, why);
        x->loc_index++;
        x->received = x->next_offset = 0;
        x->started = 0;
        free(x->buf);
        x->buf = NULL;
        transfer_request(d, x, 0);
        return;
    }
    transfer_finish(d, x, LOOM_ENODE, why);
}

static transfer *transfer_by_serial(daemon_s *d, uint64_t serial)
{
    size_t it = 0;
    void *v;
    while (loom__hmap_next(&d->transfers, &it, &v))
        if (((transfer *)v)->serial == serial) return v;
    return NULL;
}

static void on_chunk(daemon_s *d, loom_msg *m)
{
    transfer *x = transfer_by_serial(d, m->req);
    if (!x || (m->type == LOOM_MSG_CHUNK && memcmp(x->ref.id, m->ref.id, LOOM_ID_LEN))) return;
    if (m->type == LOOM_MSG_ERROR) {
        transfer_retry_or_fail(d, x, m->text);
        return;
    }
    if (!x->started) {
        x->started = 1;
        x->total = m->total;
        x->buf = malloc(x->total ? x->total : 1);
        if (!x->buf) {
            transfer_finish(d, x, LOOM_ENOMEM, "out of memory");
            return;
        }
        x->next_offset = m->data.n;
        /* open the window */
        for (int i = 1; i < FETCH_WINDOW && x->next_offset < x->total; i++) {
            transfer_request(d, x, x->next_offset);
            x->next_offset += LOOM_CHUNK_SIZE;
        }
    } else if (m->total != x->total) {
        transfer_retry_or_fail(d, x, "object size changed during the transfer");
        return;
    }
    if (m->offset + m->data.n > x->total) return;
    memcpy(x->buf + m->offset, m->data.p, m->data.n);
    x->received += m->data.n;
    x->last_activity = loom__now_ms();
    if (x->received >= x->total) {
        transfer_finish(d, x, 0, NULL);
        return;
    }
    if (x->next_offset < x->total) {
        transfer_request(d, x, x->next_offset);
        x->next_offset += LOOM_CHUNK_SIZE;
    }
}

static void on_peer_frames(void *arg, zmq_msg_t *frames, int n)
{
    peer *p = arg;
    if (n != 1) return;
    loom_msg m;
    if (loom__wire_decode(zmq_msg_data(&frames[0]), zmq_msg_size(&frames[0]), &m, NULL, 0)) return;
    if (m.type == LOOM_MSG_CHUNK || (m.type == LOOM_MSG_ERROR && m.req)) on_chunk(p->d, &m);
    else if (m.type == LOOM_MSG_ERROR) LOG_WARN("peer %s: %s", p->addr, m.text);
    loom__msg_free(&m);
}

/* Make sure arg is in the local store for t: pin it, or start/join a fetch. */
void loom__daemon_need_arg(daemon_s *d, dtask *t, const loom_wire_arg *a)
{
    if (a->kind != LOOM_WARG_REF) return;
    if (loom__store_pin(d->store, a->ref.id) == 0) {
        t->pinned[t->pinned_n++] = a->ref;
        return;
    }
    t->missing++;
    transfer *x = loom__hmap_get(&d->transfers, a->ref.id, LOOM_ID_LEN);
    if (!x) {
        x = calloc(1, sizeof(*x));
        if (!x) goto fail;
        x->ref = a->ref;
        x->serial = ++d->next_serial;
        x->nlocs = a->nlocs;
        x->locs = calloc(a->nlocs ? a->nlocs : 1, sizeof(loom_wire_loc));
        if (!x->locs) { free(x); goto fail; }
        for (uint32_t i = 0; i < a->nlocs; i++) {
            x->locs[i].node = a->locs[i].node;
            x->locs[i].addr = strdup(a->locs[i].addr);
        }
        loom__hmap_put(&d->transfers, x->ref.id, LOOM_ID_LEN, x);
        if (x->nlocs == 0) {
            x->nwait = 0;
            if (!t->failed) {
                t->failed = 1;
                loom__snprintf(t->error, sizeof(t->error), "an argument has no copy on any live node");
            }
            loom__hmap_del(&d->transfers, x->ref.id, LOOM_ID_LEN);
            free(x->locs);
            free(x);
            t->missing--;
            return;
        }
        transfer_request(d, x, 0);
    }
    if (x->nwait == x->cap_wait) {
        int cap = x->cap_wait ? x->cap_wait * 2 : 4;
        void *w = realloc(x->waiters, (size_t)cap * sizeof(dtask *));
        if (!w) goto fail;
        x->waiters = w;
        x->cap_wait = cap;
    }
    x->waiters[x->nwait++] = t;
    return;
fail:
    t->missing--;
    t->failed = 1;
    loom__snprintf(t->error, sizeof(t->error), "out of memory fetching an argument");
}

void loom__daemon_retry_stalled_transfers(daemon_s *d)
{
    /* transfers that stopped moving: try another copy */
    size_t it = 0;
    void *v;
    transfer *stale[32];
    int ns = 0;
    int64_t now = loom__now_ms();
    while (loom__hmap_next(&d->transfers, &it, &v) && ns < 32)
        if (now - ((transfer *)v)->last_activity > TRANSFER_STALL_MS) stale[ns++] = v;
    for (int i = 0; i < ns; i++) transfer_retry_or_fail(d, stale[i], "no answer for 10 s (its node is gone?)");
}

void loom__daemon_transfers_cleanup(daemon_s *d)
{
    size_t it = 0;
    void *v;
    while (loom__hmap_next(&d->peers, &it, &v)) {
        peer *p = v;
        loom__zwatch_stop(&p->watch);
        zmq_close(p->sock);
        free(p);
    }
    loom__hmap_free(&d->peers);
    it = 0;
    while (loom__hmap_next(&d->transfers, &it, &v)) {
        transfer_free(v);
    }
    loom__hmap_free(&d->transfers);
    it = 0;
    while (loom__hmap_next(&d->pushes, &it, &v)) {
        loom__buf_free(v);
        free(v);
    }
    loom__hmap_free(&d->pushes);
    loom__hmap_free(&d->data_peers);
}

/* ---- the data port (serving this node's objects) ------------------------ */

/* An error on the data port, answering request req (0: not a request). */
static void data_reply_error(daemon_s *d, const uint8_t *ident, size_t n, uint64_t req, int code, const char *text)
{
    loom_msg r;
    loom__msg_init(&r, LOOM_MSG_ERROR, req);
    r.code = code;
    r.text = (char *)text;
    loom__zsend_msg(d->data, ident, n, &r, d->out);
}

static void on_fetch(daemon_s *d, const uint8_t *ident, size_t n, loom_msg *m)
{
    loom_store_view v;
    int rc = loom__store_get(d->store, m->ref.id, &v);
    if (rc) {
        loom_msg r;
        loom__msg_init(&r, LOOM_MSG_ERROR, m->req);
        r.code = rc;
        r.text = "object not on this node";
        loom__zsend_msg(d->data, ident, n, &r, d->out);
        return;
    }
    uint64_t off = m->offset < v.len ? m->offset : v.len;
    uint64_t len = m->length < LOOM_CHUNK_SIZE ? m->length : LOOM_CHUNK_SIZE;
    if (len > v.len - off) len = v.len - off;
    loom_msg r;
    loom__msg_init(&r, LOOM_MSG_CHUNK, m->req);
    r.ref = m->ref;
    r.offset = off;
    r.total = v.len;
    r.data.p = (const uint8_t *)v.data + off;
    r.data.n = len;
    loom__zsend_msg(d->data, ident, n, &r, d->out);
    loom__store_view_release(d->store, &v);
}

static void on_push(daemon_s *d, const uint8_t *ident, size_t n, loom_msg *m)
{
    uint8_t key[MAX_PEER_IDENT + LOOM_ID_LEN];
    memcpy(key, ident, n);
    memcpy(key + n, m->ref.id, LOOM_ID_LEN);
    size_t klen = n + LOOM_ID_LEN > LOOM_HMAP_KEY_MAX ? LOOM_HMAP_KEY_MAX : n + LOOM_ID_LEN;
    loom_buf *b = loom__hmap_get(&d->pushes, key + (n + LOOM_ID_LEN - klen), klen);
    if (m->total > (uint64_t)LOOM_MAX_FRAME * 64) {
        data_reply_error(d, ident, n, m->req, LOOM_ETOOBIG, "object too large");
        return;
    }
    if (!b) {
        if (m->offset != 0) {
            data_reply_error(d, ident, n, m->req, LOOM_EPROTO, "push must start at offset 0");
            return;
        }
        b = calloc(1, sizeof(*b));
        if (!b) return;
        loom__hmap_put(&d->pushes, key + (n + LOOM_ID_LEN - klen), klen, b);
    }
    if (m->offset != b->len) {
        loom__hmap_del(&d->pushes, key + (n + LOOM_ID_LEN - klen), klen);
        loom__buf_free(b);
        free(b);
        data_reply_error(d, ident, n, m->req, LOOM_EPROTO, "push chunks out of order");
        return;
    }
    int rc = loom__buf_append(b, m->data.p, m->data.n) ? LOOM_ENOMEM : LOOM_OK;
    if (!rc && b->len < m->total) {
        loom_msg r;
        loom__msg_init(&r, LOOM_MSG_OK, m->req);
        loom__zsend_msg(d->data, ident, n, &r, d->out);
        return;
    }
    loom__hmap_del(&d->pushes, key + (n + LOOM_ID_LEN - klen), klen);
    if (!rc) rc = loom__store_put(d->store, m->ref.id, b->p, b->len, LOOM_STORE_PRIMARY);
    loom__buf_free(b);
    free(b);
    if (rc) {
        data_reply_error(d, ident, n, m->req, rc, loom_strerror(rc));
        return;
    }
    loom_msg r;
    loom__msg_init(&r, LOOM_MSG_OK, m->req);
    loom__zsend_msg(d->data, ident, n, &r, d->out);
}

void loom__daemon_on_data_frames(void *arg, zmq_msg_t *frames, int n)
{
    daemon_s *d = arg;
    if (n != 2) return;
    const uint8_t *ident = zmq_msg_data(&frames[0]);
    size_t identlen = zmq_msg_size(&frames[0]);
    if (identlen == 0 || identlen > MAX_PEER_IDENT) return;
    loom_msg m;
    char err[256];
    if (loom__wire_decode(zmq_msg_data(&frames[1]), zmq_msg_size(&frames[1]), &m, err, sizeof(err))) {
        LOG_WARN("data port: rejected a malformed message: %s", err);
        data_reply_error(d, ident, identlen, 0, LOOM_EPROTO, err);
        return;
    }
    int authed = loom__hmap_get(&d->data_peers, ident, identlen) != NULL;
    if (m.type == LOOM_MSG_HELLO) {
        /* the peer is here through CURVE with a key the ZAP handler let in
           (a node's or a task's client key): HELLO names it, proves nothing */
        loom__hmap_put(&d->data_peers, ident, identlen, (void *)1);
        loom_msg r;
        loom__msg_init(&r, LOOM_MSG_OK, m.req);
        loom__zsend_msg(d->data, ident, identlen, &r, d->out);
    } else if (!authed) {
        data_reply_error(d, ident, identlen, 0, LOOM_EAUTH, "say hello first");
    } else if (m.type == LOOM_MSG_FETCH) {
        on_fetch(d, ident, identlen, &m);
    } else if (m.type == LOOM_MSG_PUSH) {
        on_push(d, ident, identlen, &m);
    } else {
        data_reply_error(d, ident, identlen, m.req, LOOM_EPROTO, "unexpected message on the data port");
    }
    loom__msg_free(&m);
}
