/* api/client_obj.c — objects on the driver side (loom/loom.h): put (inline,
 * into the co-located store, or pushed in chunks to a node's data port), get
 * (zero-copy from the local store, inline, or fetched from a node holding it),
 * wait, cancel and release, and loom_value views; plus loading a task
 * library.  The client's state is in client_internal.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>
#include "api/client_internal.h"
#include "objectstore/store.h"
#include "runtime/hmap.h"
#include "runtime/ids.h"
#include "runtime/util.h"
#include "runtime/wire.h"
#include "runtime/zloop.h"
#include "loom/value.h"

#define PUSH_WINDOW 4

/* ---- data port (remote put and get) ------------------------------------- */

static int data_connect(loom_client *c, const char *addr)
{
    if (c->data_sock && !strcmp(c->data_sock_addr, addr)) return LOOM_OK;
    if (c->data_sock) zmq_close(c->data_sock);
    c->data_sock = zmq_socket(c->zctx, ZMQ_DEALER);
    loom__zsock_setup(c->data_sock, ZMQ_DEALER);
    char ep[400];
    loom__snprintf(ep, sizeof(ep), "tcp://%s", addr);
    if (loom__curve_client(c->data_sock, c->curve.server_pub, &c->curve.self) ||
        zmq_connect(c->data_sock, ep) != 0) {
        zmq_close(c->data_sock);
        c->data_sock = NULL;
        return loom__client_set_error(c, LOOM_ECONN, "cannot connect to the node at %s", addr);
    }
    loom__snprintf(c->data_sock_addr, sizeof(c->data_sock_addr), "%s", addr);
    loom_msg m;
    loom__msg_init(&m, LOOM_MSG_HELLO, 0);
    m.role = LOOM_ROLE_DRIVER;
    m.secret = ""; /* CURVE is the proof */
    m.hostname = c->hostname;
    loom__wire_encode(&m, c->out);
    zmq_send(c->data_sock, loom_pack_data(c->out), loom_pack_size(c->out), 0);
    return LOOM_OK;
}

/* Wait for a data-port reply with request number req (others are dropped). */
static int data_await(loom_client *c, uint64_t req, zmq_msg_t *f, loom_msg *m)
{
    int64_t deadline = loom__now_ms() + REQUEST_TIMEOUT_MS;
    for (;;) {
        int64_t left = deadline - loom__now_ms();
        zmq_pollitem_t pi = {c->data_sock, 0, ZMQ_POLLIN, 0};
        if (left <= 0 || zmq_poll(&pi, 1, (long)left) <= 0)
            return loom__client_set_error(c, LOOM_ECONN, "the node at %s did not answer", c->data_sock_addr);
        zmq_msg_init(f);
        if (zmq_msg_recv(f, c->data_sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(f);
            continue;
        }
        if (loom__wire_decode(zmq_msg_data(f), zmq_msg_size(f), m, NULL, 0)) {
            zmq_msg_close(f);
            continue;
        }
        if (m->type == LOOM_MSG_ERROR && (m->req == req || m->code == LOOM_EAUTH)) {
            int rc = loom__client_set_error(c, m->code < 0 ? m->code : LOOM_EPROTO, "node %s: %s", c->data_sock_addr,
                                            m->text);
            loom__msg_free(m);
            zmq_msg_close(f);
            return rc;
        }
        if (m->req == req) return LOOM_OK;
        loom__msg_free(m);
        zmq_msg_close(f);
    }
}

static int remote_push(loom_client *c, const loom_ref *ref, const void *data, size_t len)
{
    int rc = data_connect(c, c->home_addr);
    if (rc) return rc;
    size_t off = 0;
    do {
        size_t n = len - off < LOOM_CHUNK_SIZE ? len - off : LOOM_CHUNK_SIZE;
        loom_msg m;
        loom__msg_init(&m, LOOM_MSG_PUSH, ++c->next_req);
        m.ref = *ref;
        m.offset = off;
        m.total = len;
        m.data.p = (const uint8_t *)data + off;
        m.data.n = n;
        loom__wire_encode(&m, c->out);
        if (zmq_send(c->data_sock, loom_pack_data(c->out), loom_pack_size(c->out), 0) < 0)
            return loom__client_set_error(c, LOOM_ECONN, "cannot send to %s", c->data_sock_addr);
        zmq_msg_t f;
        loom_msg r;
        rc = data_await(c, m.req, &f, &r);
        if (rc) return rc;
        loom__msg_free(&r);
        zmq_msg_close(&f);
        off += n;
    } while (off < len);
    return LOOM_OK;
}

static int remote_fetch(loom_client *c, const ready_info *r, const loom_ref *ref, uint8_t **out)
{
    int rc = LOOM_ENOTFOUND;
    for (uint32_t k = 0; k < r->nlocs; k++) {
        rc = data_connect(c, r->locs[k].addr);
        if (rc) continue;
        uint8_t *buf = malloc(r->size ? r->size : 1);
        if (!buf)
            return loom__client_set_error(c, LOOM_ENOMEM, "out of memory for %llu bytes", (unsigned long long)r->size);
        uint64_t off = 0;
        rc = LOOM_OK;
        while (!rc && (off < r->size || off == 0)) {
            loom_msg m;
            loom__msg_init(&m, LOOM_MSG_FETCH, ++c->next_req);
            m.ref = *ref;
            m.offset = off;
            m.length = LOOM_CHUNK_SIZE;
            loom__wire_encode(&m, c->out);
            zmq_send(c->data_sock, loom_pack_data(c->out), loom_pack_size(c->out), 0);
            zmq_msg_t f;
            loom_msg ch;
            rc = data_await(c, m.req, &f, &ch);
            if (rc) break;
            if (ch.type != LOOM_MSG_CHUNK || ch.total != r->size || ch.offset != off) rc = LOOM_EPROTO;
            else memcpy(buf + off, ch.data.p, ch.data.n);
            off += ch.data.n;
            int empty = ch.data.n == 0;
            loom__msg_free(&ch);
            zmq_msg_close(&f);
            if (empty) break;
        }
        if (!rc && off == r->size) {
            *out = buf;
            return LOOM_OK;
        }
        free(buf);
    }
    return loom__client_set_error(c, rc ? rc : LOOM_EIO, "cannot fetch the object from any node holding it");
}

/* ---- objects ------------------------------------------------------------ */

static void new_put_ref(loom_ref *ref)
{
    uint8_t tid[LOOM_TASK_ID_LEN];
    loom__random_bytes(tid, sizeof(tid));
    loom__ref_make(tid, 0, ref);
}

/* Where a put's bytes went. */
enum { PUT_INLINE, PUT_LOCAL_STORE, PUT_REMOTE_NODE };

/* The client's own put is ready at once for its own gets and waits, as
 * an owner's object is in Ray: an inline one from a copy kept here, one in
 * this machine's store from the store; no round trip to the head.  (Puts
 * pushed to a node elsewhere ask the head as before.)  Best effort: without
 * memory for the copy, a get asks the head. */
static void note_own_put(loom_client *c, const loom_ref *ref, int where, const void *data, size_t len)
{
    if (where == PUT_REMOTE_NODE) return;
    ready_info *r = loom__client_ready_get(c, ref, 1);
    if (!r || r->done) return;
    if (where == PUT_INLINE) {
        r->value = malloc(len ? len : 1);
        if (!r->value) return;
        if (len) memcpy(r->value, data, len);
    }
    r->text = strdup("");
    r->size = len;
    r->own_put = 1;
    loom__client_mark_done(c, r);
}

static int store_error(loom_client *c, int rc, size_t len)
{
    return loom__client_set_error(c, rc, "cannot put %zu bytes in the node's store: %s%s", len, loom_strerror(rc),
                                  rc == LOOM_ESTOREFULL && loom__store_could_hold(c->store, len)
                                      ? " (no room freed up in time)" : "");
}

/* Tell the head that ref (len bytes) is stored on node, or give it the
 * bytes (PUT_INLINE: data, len <= LOOM_INLINE_MAX).  A driver's put does not
 * wait for the head: the bytes are in a store (or in the message), and the
 * head reads this before anything that uses the ref; a refusal becomes the
 * ref's error.  A kept put (a task library) waits, as its callers check it
 * at once. */
static int announce_put(loom_client *c, const loom_ref *ref, int where, const void *data, size_t len,
                        uint32_t node, int keep)
{
    loom_msg m;
    loom__msg_init(&m, LOOM_MSG_PUT_DONE, 0);
    m.ref = *ref;
    m.size = len;
    m.keep = keep ? 1 : 0;
    m.node = node;
    if (where == PUT_INLINE) {
        m.data.p = data;
        m.data.n = len;
    }
    if (keep) return loom__client_request(c, &m, LOOM_MSG_OK, NULL, NULL);
    int rc = loom__client_send_unacked(c, &m, ref);
    if (!rc) note_own_put(c, ref, where, data, len);
    return rc;
}

int loom__client_put_with_ref(loom_client *c, const loom_ref *ref, const void *data, size_t len, int keep)
{
    int rc = LOOM_OK;
    /* a client that connected before any node joined (a gateway starting
       with its head) learns the nodes now: a second hello lists them */
    if (len > LOOM_INLINE_MAX && !c->store && !c->home_addr[0] && (rc = loom__client_say_hello(c)) != LOOM_OK)
        return rc;
    if (len <= LOOM_INLINE_MAX) return announce_put(c, ref, PUT_INLINE, data, len, 0, keep);
    if (c->store) {
        rc = loom__store_put_wait(c->store, ref->id, data, len, LOOM_STORE_PRIMARY, c->store_wait_ms);
        if (rc) return store_error(c, rc, len);
        return announce_put(c, ref, PUT_LOCAL_STORE, NULL, len, c->store_node, keep);
    }
    if (c->home_addr[0]) {
        int64_t deadline = loom__now_ms() + c->store_wait_ms;
        while ((rc = remote_push(c, ref, data, len)) == LOOM_ESTOREFULL && loom__now_ms() < deadline)
            usleep(100000); /* the node's store is under pressure: wait for room */
        if (rc) return rc;
        return announce_put(c, ref, PUT_REMOTE_NODE, NULL, len, c->home_node, keep);
    }
    return loom__client_set_error(c, LOOM_ESTATE, "the cluster has no node to hold the object");
}

int loom_put(loom_client *c, const void *data, size_t len, loom_ref *out)
{
    if (!c || !out || (len && !data)) return LOOM_EINVAL;
    new_put_ref(out);
    return loom__client_put_with_ref(c, out, data, len, 0);
}

/* The parts, one after another, into the reservation's buffer. */
static void copy_parts(uint8_t *to, const loom_part *parts, int n)
{
    for (int i = 0; i < n; i++) {
        if (parts[i].len) memcpy(to, parts[i].data, parts[i].len);
        to += parts[i].len;
    }
}

/* A gathered put straight into this machine's store: reserve the whole
 * size (waiting for room as a put does), copy each part in, commit; then the
 * head hears of it as of any put. */
static int put_parts_in_store(loom_client *c, const loom_ref *ref, const loom_part *parts, int n, size_t total)
{
    loom_store_reservation r;
    int rc = loom__store_reserve_wait(c->store, ref->id, total, LOOM_STORE_PRIMARY, c->store_wait_ms, &r);
    if (rc) return store_error(c, rc, total);
    copy_parts(r.data, parts, n);
    if ((rc = loom__store_commit(c->store, &r))) return store_error(c, rc, total);
    return announce_put(c, ref, PUT_LOCAL_STORE, NULL, total, c->store_node, 0);
}

int loom_put_parts(loom_client *c, const loom_part *parts, int n, loom_ref *out)
{
    if (!c || !out || n < 0 || (n && !parts)) return LOOM_EINVAL;
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        if ((parts[i].len && !parts[i].data) || parts[i].len > SIZE_MAX - total) return LOOM_EINVAL;
        total += parts[i].len;
    }
    new_put_ref(out);
    if (total > LOOM_INLINE_MAX && c->store) return put_parts_in_store(c, out, parts, n, total);
    /* inline, or pushed to a node on another machine: one buffer */
    uint8_t *buf = malloc(total ? total : 1);
    if (!buf) return loom__client_set_error(c, LOOM_ENOMEM, "out of memory for %zu bytes", total);
    copy_parts(buf, parts, n);
    int rc = loom__client_put_with_ref(c, out, buf, total, 0);
    free(buf);
    return rc;
}

int loom_library_load(loom_client *c, const char *path, loom_ref *lib)
{
    if (!c || !path || !lib) return LOOM_EINVAL;
    char *data;
    size_t len;
    int rc = loom__read_file(path, (size_t)1 << 30, &data, &len);
    if (rc) return loom__client_set_error(c, rc, "cannot read task library %s: %s", path, strerror(errno));
    /* content-addressed: the ref is the SHA-256 of the file */
    uint8_t digest[32];
    loom__sha256(data, len, digest);
    loom__ref_make(digest, 0, lib);
    /* put every time, even when this client saw it ready: its nodes may
       have died since, and the head makes a lost library live again from
       this copy (a store that has it already keeps the one it has) */
    rc = loom__client_put_with_ref(c, lib, data, len, 1);
    free(data);
    return rc;
}

/* Every 2 s of waiting (counted per client, not per call: a driver may wait
 * in many short calls), ask again for one unfinished ref of refs.  A head
 * that restarted lost the subscriptions and cannot tell this client; its
 * answer ("say hello") is how the client learns it, and loom__client_rejoin() then sends
 * every subscription again.  One ref, not all: a wait on a million refs
 * must not make the head look them all up every 2 s. */
static void resubscribe_due(loom_client *c, const loom_ref *refs, int n)
{
    int64_t now = loom__now_ms();
    if (c->last_resub_ms == 0) c->last_resub_ms = now;
    if (now - c->last_resub_ms < 2000) return;
    c->last_resub_ms = now;
    for (int i = 0; i < n; i++) {
        ready_info *r = loom__client_ready_get(c, &refs[i], 0);
        /* only a subscription unanswered for 2 s: asking again while the
           first answer is on its way would bring a second answer, which,
           after a release and a new get of the same ref, would be taken
           for the new one's (an object already freed read as ready) */
        if (r && !r->done && now - r->sub_ms >= 2000) {
            r->subscribed = 0;
            loom__client_subscribe(c, &refs[i], 1);
            return;
        }
    }
}

static int await_ready(loom_client *c, const loom_ref *ref, int64_t timeout_ms, ready_info **out)
{
    int rc = loom__client_subscribe(c, ref, 1);
    if (rc) return rc;
    int64_t deadline = timeout_ms < 0 ? -1 : loom__now_ms() + timeout_ms;
    ready_info *r;
    while (!(r = loom__client_ready_get(c, ref, 0)) || !r->done) {
        /* a head that restarted forgot the subscription: ask again now and
           then (it answers a known object at once, and "say hello" if it
           does not know this client) */
        if (c->need_hello) loom__client_rejoin(c);
        resubscribe_due(c, ref, 1);
        if (deadline >= 0 && loom__now_ms() >= deadline) {
            char hex[41];
            loom_ref_to_hex(ref, hex);
            return loom__client_set_error(c, LOOM_ETIMEOUT, "object %s not ready after %lld ms", hex,
                                          (long long)timeout_ms);
        }
        /* wake at least every 2 s to ask again (see above) */
        int64_t wake = loom__now_ms() + 2000;
        rc = loom__client_pump(c, deadline >= 0 && deadline < wake ? deadline : wake);
        if (rc && rc != LOOM_ETIMEOUT) return loom__client_set_error(c, rc, "lost the connection to the head");
    }
    *out = r;
    return LOOM_OK;
}

int loom_get(loom_client *c, loom_ref ref, int64_t timeout_ms, loom_value **out)
{
    if (!c || !out) return LOOM_EINVAL;
    *out = NULL;
    int64_t deadline = timeout_ms < 0 ? -1 : loom__now_ms() + timeout_ms;
    /* a copy may vanish with its node after the head said where it was: ask
       again (the head rebuilds what lineage allows), a few times */
    ready_info *seen = loom__client_ready_get(c, &ref, 0);
    if (seen && seen->done && seen->code == LOOM_ENODE && !seen->views)
        /* seen lost before: it may have been put again since, ask anew */
        loom__client_ready_drop(loom__hmap_del(&c->ready, ref.id, LOOM_ID_LEN));
    for (int attempt = 0;; attempt++) {
        ready_info *r = NULL;
        int64_t left = deadline < 0 ? -1 : deadline - loom__now_ms();
        int rc = await_ready(c, &ref, left < 0 && deadline >= 0 ? 0 : left, &r);
        if (rc) return rc;
        if (r->code)
            return loom__client_set_error(c, r->code, "%s", r->text && r->text[0] ? r->text : loom_strerror(r->code));
        loom_value *v = calloc(1, sizeof(*v));
        if (!v) return loom__client_set_error(c, LOOM_ENOMEM, "out of memory");
        v->c = c;
        if (r->value) {
            v->data = r->value;
            v->len = r->size;
            v->pin = r;
            r->views++;
        } else if (c->store && loom__store_get(c->store, ref.id, &v->view) == 0) {
            v->data = v->view.data;
            v->len = v->view.len;
        } else {
            rc = remote_fetch(c, r, &ref, (uint8_t **)&v->owned);
            if (rc) {
                free(v);
                /* until the head notices the dead node (its heartbeat timeout) */
                if (attempt >= 150 || rc == LOOM_ENOMEM || (deadline >= 0 && loom__now_ms() >= deadline)) return rc;
                loom__client_ready_drop(loom__hmap_del(&c->ready, ref.id, LOOM_ID_LEN));
                usleep(200000);
                continue;
            }
            v->data = v->owned;
            v->len = r->size;
        }
        *out = v;
        return LOOM_OK;
    }
}

const void *loom_value_data(const loom_value *v)
{
    return v ? v->data : NULL;
}

size_t loom_value_size(const loom_value *v)
{
    return v ? v->len : 0;
}

void loom_value_release(loom_value **pv)
{
    if (!pv || !*pv) return;
    loom_value *v = *pv;
    if (v->view.txn_ && v->c && v->c->store) loom__store_view_release(v->c->store, &v->view);
    if (v->pin && --v->pin->views == 0 && v->pin->dropped) loom__client_ready_free(v->pin);
    free(v->owned);
    free(v);
    *pv = NULL;
}

/* The end of a loom_wait: the refs are not watched any more; which are done
 * (to ready[], if given) and how many. */
static int wait_end(loom_client *c, const loom_ref *refs, int n, int *ready)
{
    int done = 0;
    for (int i = 0; i < n; i++) {
        ready_info *r = loom__client_ready_get(c, &refs[i], 0);
        int d = r && r->done;
        if (r) r->waited = 0;
        if (ready) ready[i] = d;
        done += d;
    }
    return done;
}

int loom_wait(loom_client *c, const loom_ref *refs, int n, int num_ready, int64_t timeout_ms, int *ready)
{
    if (!c || n < 0 || (n && !refs) || num_ready < 0) return LOOM_EINVAL;
    if (num_ready > n) num_ready = n;
    int rc = loom__client_subscribe(c, refs, n);
    if (rc) return rc;
    int64_t deadline = timeout_ms < 0 ? -1 : loom__now_ms() + timeout_ms;
    /* count what is done once, then let mark_done count what becomes ready
       (a rescan of all n refs per burst of notifications was O(n^2)) */
    long done0 = 0;
    c->wait_done = 0;
    for (int i = 0; i < n; i++) {
        ready_info *r = loom__client_ready_get(c, &refs[i], 1);
        if (!r) return loom__client_set_error(c, LOOM_ENOMEM, "out of memory");
        if (r->done) done0++;
        else r->waited++;
    }
    for (;;) {
        if (done0 + c->wait_done >= num_ready || (deadline >= 0 && loom__now_ms() >= deadline))
            return wait_end(c, refs, n, ready);
        /* every 2 s, ask again for what is not done (a restarted head forgot) */
        if (c->need_hello) loom__client_rejoin(c);
        resubscribe_due(c, refs, n);
        int64_t wake = loom__now_ms() + 2000;
        rc = loom__client_pump(c, deadline >= 0 && deadline < wake ? deadline : wake);
        if (rc && rc != LOOM_ETIMEOUT) {
            wait_end(c, refs, n, NULL);
            return loom__client_set_error(c, rc, "lost the connection to the head");
        }
    }
}

int loom_cancel(loom_client *c, loom_ref ref)
{
    if (!c) return LOOM_EINVAL;
    loom_msg m;
    loom__msg_init(&m, LOOM_MSG_CANCEL, 0);
    m.ref = ref;
    return loom__client_request(c, &m, LOOM_MSG_OK, NULL, NULL);
}

int loom_release_many(loom_client *c, const loom_ref *refs, int n)
{
    if (!c || n < 0 || (n && !refs)) return LOOM_EINVAL;
    for (int i = 0; i < n; i++) loom__client_ready_drop(loom__hmap_del(&c->ready, refs[i].id, LOOM_ID_LEN));
    for (int base = 0; base < n; base += 10000) {
        loom_msg m;
        loom__msg_init(&m, LOOM_MSG_RELEASE, 0);
        m.refs = (loom_ref *)&refs[base];
        m.nrefs = (uint32_t)(n - base < 10000 ? n - base : 10000);
        int rc = loom__client_send_msg(c, &m);
        if (rc) return rc;
    }
    return LOOM_OK;
}

int loom_release(loom_client *c, loom_ref ref)
{
    return loom_release_many(c, &ref, 1);
}
