/* api/client.c — the driver side of loom (loom/loom.h): connecting (or
 * starting a local cluster), the messages to and from the head, submitting
 * tasks and graphs, inspection.  Objects (put/get/wait, the data port) are in
 * client_obj.c; actors, placement groups, nodes and the key-value table in
 * client_actor.c; what they share in client_internal.h.
 *
 * One DEALER socket to the head.  Requests carry a request number that the
 * reply echoes; OBJ_READY notifications (req 0) may arrive between them and
 * are recorded in `ready`, a table of what the client knows about objects it
 * subscribed to.  Values live in the node's LMDB store: when the client runs
 * on a node's machine it maps them zero-copy; otherwise it pulls them from a
 * node's data port.  Small values (<= LOOM_INLINE_MAX) travel inline. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>
#include "api/client_internal.h"
#include "api/graph_internal.h"
#include "api/local.h"
#include "objectstore/store.h"
#include "runtime/hmap.h"
#include "runtime/ids.h"
#include "runtime/secret.h"
#include "runtime/util.h"
#include "runtime/wire.h"
#include "runtime/zloop.h"
#include "loom/value.h"

/* await_reply's answer when the connection closed while a request was out: a
 * head killed then may never have read it, so it is sent again (positive: no
 * loom error code is) */
#define RESEND 1
/* how many times a request is sent again (a head restarted, a connection closed) */
#define MAX_RESENDS 5

int loom__client_set_error(loom_client *c, int rc, const char *fmt, ...)
{
    if (!c) return rc;
    va_list ap;
    va_start(ap, fmt);
    loom__verrf(c->last_error, sizeof(c->last_error), rc, fmt, ap);
    va_end(ap);
    return rc;
}

const char *loom_last_error(const loom_client *c)
{
    return c ? c->last_error : "no client";
}

/* ---- messaging ---------------------------------------------------------- */

void loom__client_ready_free(ready_info *r)
{
    if (!r) return;
    free(r->text);
    free(r->value);
    for (uint32_t i = 0; i < r->nlocs; i++) free(r->locs[i].addr);
    free(r->locs);
    free(r);
}

/* Forget r (released, or to be asked again): freed now, or by the last
 * loom_value still reading its inline copy. */
void loom__client_ready_drop(ready_info *r)
{
    if (r && r->views > 0) r->dropped = 1;
    else loom__client_ready_free(r);
}

static int grow_ua(loom_client *c)
{
    if (c->nua < c->cap_ua) return 0;
    int cap = c->cap_ua ? c->cap_ua * 2 : 64;
    unacked *n = realloc(c->ua, (size_t)cap * sizeof(*n));
    if (!n) return LOOM_ENOMEM;
    c->ua = n;
    c->cap_ua = cap;
    return 0;
}

ready_info *loom__client_ready_get(loom_client *c, const loom_ref *ref, int create)
{
    ready_info *r = loom__hmap_get(&c->ready, ref->id, LOOM_ID_LEN);
    if (r || !create) return r;
    r = calloc(1, sizeof(*r));
    if (r && loom__hmap_put(&c->ready, ref->id, LOOM_ID_LEN, r)) {
        free(r);
        return NULL;
    }
    return r;
}

/* r is ready (or failed); a running loom_wait counts it without a rescan */
void loom__client_mark_done(loom_client *c, ready_info *r)
{
    r->done = 1;
    if (r->waited) {
        c->wait_done += r->waited;
        r->waited = 0;
    }
}

static void record_ready(loom_client *c, const loom_msg *m)
{
    ready_info *r = loom__client_ready_get(c, &m->ref, 1);
    if (!r || r->done) return;
    loom__client_mark_done(c, r);
    r->code = m->code;
    r->text = strdup(m->text ? m->text : "");
    r->size = m->size;
    if (!m->code && m->data.n == m->size && (m->data.n || m->nlocs == 0)) {
        r->value = malloc(m->data.n ? m->data.n : 1);
        if (r->value && m->data.n) memcpy(r->value, m->data.p, m->data.n);
    }
    if (m->nlocs) {
        r->locs = calloc(m->nlocs, sizeof(loom_wire_loc));
        for (uint32_t i = 0; r->locs && i < m->nlocs; i++) {
            r->locs[i].node = m->locs[i].node;
            r->locs[i].addr = strdup(m->locs[i].addr);
            r->nlocs++;
        }
    }
}

int loom__client_send_msg(loom_client *c, loom_msg *m)
{
    int rc = loom__wire_encode(m, c->out);
    if (rc) return loom__client_set_error(c, rc, "cannot encode %s", loom__msg_type_name(m->type));
    if (zmq_send(c->sock, loom_pack_data(c->out), loom_pack_size(c->out), 0) < 0)
        return loom__client_set_error(c, LOOM_ECONN, "cannot send to the head: %s", zmq_strerror(errno));
    return LOOM_OK;
}

/* Read the monitor's events (two frames each: event and address) and count
 * the closed connections and the CURVE handshakes that failed in a row. */
static void count_disconnects(loom_client *c)
{
    for (int i = 0; i < 64; i++) {
        zmq_msg_t ev;
        zmq_msg_init(&ev);
        if (zmq_msg_recv(&ev, c->mon, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&ev);
            return;
        }
        uint16_t event = 0;
        if (zmq_msg_size(&ev) >= 2) memcpy(&event, zmq_msg_data(&ev), sizeof(event));
        int more = zmq_msg_more(&ev);
        zmq_msg_close(&ev);
        while (more) {
            zmq_msg_init(&ev);
            if (zmq_msg_recv(&ev, c->mon, ZMQ_DONTWAIT) < 0) more = 0;
            else more = zmq_msg_more(&ev);
            zmq_msg_close(&ev);
        }
        if (event == ZMQ_EVENT_DISCONNECTED) c->disconnects++;
        int hs = loom__curve_handshake_event(event);
        if (hs > 0) c->hs_failures = 0;
        if (hs < 0) c->hs_failures++;
    }
}

/* Watch the head connection for closes (a killed head loses the requests it
 * had not answered).  Without a monitor a lost request waits for its timeout. */
static void watch_connection(loom_client *c)
{
    char ep[64];
    loom__snprintf(ep, sizeof(ep), "inproc://loom-client-%p", (void *)c);
    if (zmq_socket_monitor(c->sock, ep, ZMQ_EVENT_DISCONNECTED | LOOM_CURVE_HS_EVENTS) != 0) return;
    c->mon = zmq_socket(c->zctx, ZMQ_PAIR);
    if (c->mon && zmq_connect(c->mon, ep) != 0) {
        zmq_close(c->mon);
        c->mon = NULL;
    }
}

/* Receive one message within timeout_ms; frame kept in *f (caller closes). */
static int recv_msg(loom_client *c, int64_t timeout_ms, zmq_msg_t *f, loom_msg *m)
{
    int64_t deadline = timeout_ms < 0 ? -1 : loom__now_ms() + timeout_ms;
    for (;;) {
        zmq_pollitem_t pi[2] = {{c->sock, 0, ZMQ_POLLIN, 0}, {c->mon, 0, ZMQ_POLLIN, 0}};
        int64_t left = deadline < 0 ? -1 : deadline - loom__now_ms();
        if (deadline >= 0 && left < 0) left = 0;
        int rc = zmq_poll(pi, c->mon ? 2 : 1, (long)left);
        if (rc < 0) return errno == EINTR ? LOOM_ETIMEOUT : LOOM_ECONN;
        if (rc == 0) return LOOM_ETIMEOUT;
        unsigned closes = c->disconnects;
        if (c->mon && (pi[1].revents & ZMQ_POLLIN)) count_disconnects(c);
        if (pi[0].revents & ZMQ_POLLIN) break;
        if (c->hs_failures >= LOOM_CURVE_REFUSALS) return LOOM_EAUTH;
        if (c->disconnects != closes) return LOOM_ETIMEOUT; /* callers look at the closes */
        if (deadline >= 0 && loom__now_ms() >= deadline) return LOOM_ETIMEOUT;
    }
    zmq_msg_init(f);
    if (zmq_msg_recv(f, c->sock, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(f);
        return LOOM_ETIMEOUT;
    }
    char err[256];
    if (loom__wire_decode(zmq_msg_data(f), zmq_msg_size(f), m, err, sizeof(err))) {
        zmq_msg_close(f);
        loom__client_set_error(c, LOOM_EPROTO, "bad message from the head: %s", err);
        return LOOM_EPROTO;
    }
    return LOOM_OK;
}

/* The head's answer to a peer it does not know (a restarted head). */
static int t_says_hello(const char *text)
{
    return text && strstr(text, "say hello") != NULL;
}

/* The head's answer to a submission or put sent without waiting: SUBMITTED
 * or OK drops it; a refusal becomes the result's error (loom_get returns it).  A
 * "say hello" keeps it: it is sent again after the hello.  1 if m was such
 * an answer. */
static int note_unacked(loom_client *c, const loom_msg *m)
{
    if (m->req == 0 || c->ua_live == 0 ||
        (m->type != LOOM_MSG_SUBMITTED && m->type != LOOM_MSG_OK && m->type != LOOM_MSG_ERROR))
        return 0;
    int i;
    for (i = c->ua_first; i < c->nua && c->ua[i].req != m->req; i++) {}
    if (i == c->nua) return 0;
    if (m->type == LOOM_MSG_ERROR && m->code == LOOM_ESTATE && t_says_hello(m->text)) return 1;
    unacked *u = &c->ua[i];
    if (m->type == LOOM_MSG_ERROR) {
        ready_info *r = loom__client_ready_get(c, &u->out, 1);
        if (r && (!r->done || r->own_put)) {
            if (!r->done) loom__client_mark_done(c, r);
            r->own_put = 0;
            r->code = m->code < 0 ? m->code : LOOM_EPROTO;
            free(r->text);
            r->text = strdup(m->text ? m->text : "the head refused the request");
        }
    }
    free(u->data);
    u->data = NULL;
    u->req = 0;
    c->ua_live--;
    while (c->ua_first < c->nua && c->ua[c->ua_first].req == 0) c->ua_first++;
    if (c->ua_first == c->nua) c->ua_first = c->nua = 0;
    return 1;
}

/* Send every unanswered submission and put again (a restarted head, a closed
 * connection); the head takes a repeated one as the first. */
static void resend_unacked(loom_client *c)
{
    c->ua_closes = c->disconnects;
    for (int i = c->ua_first; i < c->nua; i++)
        if (c->ua[i].req) zmq_send(c->sock, c->ua[i].data, c->ua[i].len, 0);
}

/* After a closed connection, the submissions in flight go again (once). */
static void resend_after_close(loom_client *c)
{
    if (c->ua_live && c->disconnects != c->ua_closes) resend_unacked(c);
}

/* Process messages until a reply to req arrives (returned in *reply, with
 * its frame in *f) or the deadline passes.  Notifications are recorded. */
static int await_reply(loom_client *c, uint64_t req, int64_t timeout_ms, zmq_msg_t *f, loom_msg *reply)
{
    int64_t deadline = loom__now_ms() + timeout_ms;
    unsigned closes = c->disconnects;
    for (;;) {
        int64_t left = deadline - loom__now_ms();
        if (left < 0 || c->disconnects != closes) left = 0; /* after a close: only what is here */
        int rc = recv_msg(c, left, f, reply);
        if (rc == LOOM_ETIMEOUT && c->disconnects != closes) return RESEND;
        if (rc == LOOM_EPROTO) continue;
        if (rc == LOOM_EAUTH)
            return loom__client_set_error(c, LOOM_EAUTH, "the head at %s refused this client's CURVE handshake "
                                          "%d times: wrong cluster secret", c->address, c->hs_failures);
        if (rc == LOOM_ETIMEOUT)
            return loom__client_set_error(c, LOOM_ECONN, "the head at %s did not answer within %lld ms", c->address,
                                          (long long)timeout_ms);
        if (rc) return loom__client_set_error(c, rc, "connection to the head failed");
        if (reply->type == LOOM_MSG_ERROR && reply->code == LOOM_ESTATE && t_says_hello(reply->text))
            c->need_hello = 1;
        if (reply->type == LOOM_MSG_OBJ_READY && reply->req == 0) {
            record_ready(c, reply);
        } else if (reply->req != req && note_unacked(c, reply)) {
            /* an answer to an earlier submission */
        } else if (reply->req == req) {
            if (reply->type == LOOM_MSG_ERROR) {
                rc = loom__client_set_error(c, reply->code < 0 ? reply->code : LOOM_EPROTO, "%s", reply->text);
                loom__msg_free(reply);
                zmq_msg_close(f);
                return rc;
            }
            return LOOM_OK;
        }
        loom__msg_free(reply);
        zmq_msg_close(f);
    }
}

/* Send m and wait for its reply; OK replies are consumed here when want_type
 * is LOOM_MSG_OK.  Otherwise the caller frees *reply and closes *f. */
int loom__client_request_within(loom_client *c, loom_msg *m, int want_type, int64_t timeout_ms, zmq_msg_t *f,
                                loom_msg *reply)
{
    zmq_msg_t lf;
    loom_msg lr;
    if (!f) f = &lf;
    if (!reply) reply = &lr;
    int rc;
    for (int attempt = 0;; attempt++) {
        resend_after_close(c);
        m->req = ++c->next_req;
        rc = loom__client_send_msg(c, m);
        if (rc) return rc;
        rc = await_reply(c, m->req, timeout_ms, f, reply);
        /* the connection closed while the request was out (the head may have
           died before reading it): send it again; the head takes a repeated
           request as the first (submissions are known by their task ids) */
        if (rc == RESEND && attempt < MAX_RESENDS) continue;
        /* a head that restarted does not know this client: say hello again
           and send the request once more */
        if (rc == LOOM_ESTATE && c->need_hello && attempt < MAX_RESENDS && m->type != LOOM_MSG_HELLO &&
            loom__client_rejoin(c) == 0)
            continue;
        break;
    }
    if (rc == RESEND)
        return loom__client_set_error(c, LOOM_ECONN,
                                      "the connection to the head at %s closed %d times during a request",
                                      c->address, MAX_RESENDS + 1);
    if (rc) return rc;
    if (reply->type != want_type) {
        rc = loom__client_set_error(c, LOOM_EPROTO, "the head answered %s, expected %s",
                                    loom__msg_type_name(reply->type), loom__msg_type_name(want_type));
        loom__msg_free(reply);
        zmq_msg_close(f);
        return rc;
    }
    if (f == &lf) {
        loom__msg_free(reply);
        zmq_msg_close(f);
    }
    return LOOM_OK;
}

int loom__client_request(loom_client *c, loom_msg *m, int want_type, zmq_msg_t *f, loom_msg *reply)
{
    return loom__client_request_within(c, m, want_type, REQUEST_TIMEOUT_MS, f, reply);
}

/* Wait for notifications until pred is satisfied or the deadline. */
int loom__client_pump(loom_client *c, int64_t deadline)
{
    zmq_msg_t f;
    loom_msg m;
    resend_after_close(c);
    int64_t left = deadline < 0 ? -1 : deadline - loom__now_ms();
    if (deadline >= 0 && left < 0) left = 0;
    int rc = recv_msg(c, left, &f, &m);
    if (rc == LOOM_EPROTO) return LOOM_OK;
    if (rc) return rc;
    /* then everything already waiting, so callers rescan once per burst, not
       once per message */
    for (int i = 0; i < 65536 && rc != LOOM_ETIMEOUT && rc != LOOM_ECONN; i++) {
        if (rc == LOOM_OK) {
            if (m.type == LOOM_MSG_ERROR && m.code == LOOM_ESTATE && t_says_hello(m.text)) c->need_hello = 1;
            if (m.type == LOOM_MSG_OBJ_READY) record_ready(c, &m);
            else note_unacked(c, &m);
            loom__msg_free(&m);
            zmq_msg_close(&f);
        }
        rc = recv_msg(c, 0, &f, &m);
    }
    return LOOM_OK;
}

int loom__client_subscribe(loom_client *c, const loom_ref *refs, int n)
{
    loom_ref *list = malloc((size_t)(n ? n : 1) * sizeof(loom_ref));
    if (!list) return loom__client_set_error(c, LOOM_ENOMEM, "out of memory");
    uint32_t k = 0;
    int64_t now = loom__now_ms();
    for (int i = 0; i < n; i++) {
        ready_info *r = loom__client_ready_get(c, &refs[i], 1);
        if (!r) { free(list); return loom__client_set_error(c, LOOM_ENOMEM, "out of memory"); }
        if (r->done || r->subscribed) continue;
        r->subscribed = 1;
        r->sub_ms = now;
        list[k++] = refs[i];
    }
    int rc = LOOM_OK;
    if (k) {
        loom_msg m;
        loom__msg_init(&m, LOOM_MSG_SUBSCRIBE, 0);
        m.refs = list;
        m.nrefs = k;
        rc = loom__client_send_msg(c, &m);
    }
    free(list);
    return rc;
}

/* ---- connecting --------------------------------------------------------- */

static int find_home(loom_client *c, const loom_msg *w)
{
    /* inside a task: the node running it (its daemon says which store is its own) */
    const char *own = getenv("LOOM_NODE_STORE");
    for (uint32_t i = 0; own && !c->store && i < w->nnodes; i++) {
        const loom_wire_node *n = &w->nodes[i];
        if (strcmp(n->store_dir, own) || strcmp(n->hostname, c->hostname)) continue;
        loom_store_opts so = {.mem_dir = n->store_dir, .spill_dir = n->spill_dir, .create = 0};
        if (loom__store_open_shared(&so, &c->store) == 0) {
            c->store_node = n->id;
            loom__snprintf(c->home_addr, sizeof(c->home_addr), "%s", n->data_addr);
            c->home_node = n->id;
        }
    }
    for (uint32_t i = 0; i < w->nnodes; i++) {
        const loom_wire_node *n = &w->nodes[i];
        if (!c->home_addr[0]) {
            loom__snprintf(c->home_addr, sizeof(c->home_addr), "%s", n->data_addr);
            c->home_node = n->id;
        }
        struct stat st;
        if (c->store || strcmp(n->hostname, c->hostname) || stat(n->store_dir, &st) != 0) continue;
        loom_store_opts so = {.mem_dir = n->store_dir, .spill_dir = n->spill_dir, .create = 0};
        if (loom__store_open_shared(&so, &c->store) == 0) {
            c->store_node = n->id;
            loom__snprintf(c->home_addr, sizeof(c->home_addr), "%s", n->data_addr);
            c->home_node = n->id;
        }
    }
    return LOOM_OK;
}

int loom__client_say_hello(loom_client *c)
{
    loom_msg m;
    loom__msg_init(&m, LOOM_MSG_HELLO, 0);
    m.role = LOOM_ROLE_DRIVER;
    m.secret = ""; /* CURVE is the proof; the secret never travels */
    m.hostname = c->hostname;
    m.pid = (uint32_t)getpid();
    zmq_msg_t f;
    loom_msg w;
    int rc = loom__client_request_within(c, &m, LOOM_MSG_WELCOME, 10000, &f, &w);
    if (rc) return rc;
    c->id = w.assigned_id;
    find_home(c, &w);
    loom__msg_free(&w);
    zmq_msg_close(&f);
    return LOOM_OK;
}

/* Say hello again to a head that restarted, and subscribe again to every
 * object the client is still waiting for. */
int loom__client_rejoin(loom_client *c)
{
    c->need_hello = 0;
    int rc = loom__client_say_hello(c);
    if (rc) return rc;
    resend_unacked(c);
    size_t it = 0;
    void *v;
    loom_hmap_slot *s;
    for (it = 0; it < c->ready.cap; it++) {
        s = &c->ready.slots[it];
        if (!s->hash) continue;
        ready_info *r = s->val;
        if (r->done || !r->subscribed) continue;
        r->subscribed = 0;
        loom_ref ref;
        memcpy(ref.id, s->key, LOOM_ID_LEN);
        loom__client_subscribe(c, &ref, 1);
    }
    (void)v;
    return LOOM_OK;
}

/* Refresh the node list (after a local cluster's daemons join). */
static int refresh_nodes(loom_client *c, int want, int64_t timeout_ms)
{
    int64_t deadline = loom__now_ms() + timeout_ms;
    for (;;) {
        char *json = NULL;
        loom_msg m;
        loom__msg_init(&m, LOOM_MSG_STATUS, 0);
        zmq_msg_t f;
        loom_msg r;
        int rc = loom__client_request(c, &m, LOOM_MSG_INFO, &f, &r);
        if (rc) return rc;
        /* count live nodes from the status map */
        int live = 0;
        if (loom_msgpack_to_json(r.data.p, r.data.n, &json) == 0) {
            for (const char *p = json; (p = strstr(p, "\"alive\"")); p++) live++;
            free(json);
        }
        loom__msg_free(&r);
        zmq_msg_close(&f);
        if (live >= want) break;
        if (loom__now_ms() > deadline)
            return loom__client_set_error(c, LOOM_ECONN, "only %d of %d node daemons joined within %lld ms", live, want,
                                          (long long)timeout_ms);
        usleep(20000);
    }
    /* a second hello gets the node list with the new nodes */
    return loom__client_say_hello(c);
}

static int resolve_address(loom_client *c, const char *address, const loom_connect_opts *o,
                           char *state_dir, size_t sdlen)
{
    const char *sd = o && o->state_dir ? o->state_dir : NULL;
    char defdir[4096];
    if (!sd) sd = loom__default_state_dir(defdir, sizeof(defdir));
    loom__snprintf(state_dir, sdlen, "%s", sd);
    if (address && *address) {
        loom__snprintf(c->address, sizeof(c->address), "%s", address);
        return LOOM_OK;
    }
    const char *env = getenv("LOOM_ADDRESS");
    if (env && *env) {
        loom__snprintf(c->address, sizeof(c->address), "%s", env);
        return LOOM_OK;
    }
    char path[4200], *buf, why[512];
    size_t n;
    loom__snprintf(path, sizeof(path), "%s/address", sd);
    if (access(path, F_OK) == 0 && loom__state_dir_trusted(sd, why, sizeof(why)))
        return loom__client_set_error(c, LOOM_EAUTH, "%s", why);
    if (loom__read_file(path, 512, &buf, &n) == 0) {
        while (n && (buf[n - 1] == '\n' || buf[n - 1] == ' ')) buf[--n] = 0;
        loom__snprintf(c->address, sizeof(c->address), "%s", buf);
        free(buf);
        return LOOM_OK;
    }
    loom__snprintf(c->address, sizeof(c->address), "local");
    return LOOM_OK;
}

/* The cluster secret from the options, $LOOM_SECRET, the secret file or the
 * state dir, into secret. */
static int load_secret(loom_client *c, const loom_connect_opts *o, const char *state_dir,
                       char secret[LOOM_SECRET_HEX + 1])
{
    if (o && o->secret) {
        if (strlen(o->secret) != LOOM_SECRET_HEX)
            return loom__client_set_error(c, LOOM_EAUTH, "the cluster secret must be %d hex characters",
                                          LOOM_SECRET_HEX);
        memcpy(secret, o->secret, LOOM_SECRET_HEX + 1);
        return LOOM_OK;
    }
    const char *env = getenv("LOOM_SECRET");
    if (env && strlen(env) == LOOM_SECRET_HEX) {
        memcpy(secret, env, LOOM_SECRET_HEX + 1);
        return LOOM_OK;
    }
    char path[4200];
    const char *file = o && o->secret_file ? o->secret_file : getenv("LOOM_SECRET_FILE");
    if (!file) {
        char why[512];
        if (loom__state_dir_trusted(state_dir, why, sizeof(why)))
            return loom__client_set_error(c, LOOM_EAUTH, "%s", why);
        loom__snprintf(path, sizeof(path), "%s/secret", state_dir);
        file = path;
    }
    int rc = loom__secret_load(file, secret);
    if (rc == LOOM_ENOTFOUND)
        return loom__client_set_error(c, LOOM_EAUTH, "no cluster secret: %s does not exist (set LOOM_SECRET_FILE)",
                                      file);
    if (rc)
        return loom__client_set_error(c, LOOM_EAUTH, "cannot use the cluster secret in %s (it must be 0600 and "
                                      "hold %d hex characters)", file, LOOM_SECRET_HEX);
    return LOOM_OK;
}

/* The client's CURVE keys: keys when given (an executor's task key), else
 * the node key derived from the cluster secret, which is not kept. */
static int client_keys(loom_client *c, const loom_connect_opts *opts, const loom_curve_client *keys,
                       const char *state_dir)
{
    if (keys) {
        c->curve = *keys;
        return LOOM_OK;
    }
    char secret[LOOM_SECRET_HEX + 1] = "";
    int rc;
    if (!strcmp(c->address, "local"))
        rc = loom__local_start(opts, &c->local, c->address, sizeof(c->address), secret, c->last_error,
                               sizeof(c->last_error));
    else
        rc = load_secret(c, opts, state_dir, secret);
    if (!rc && loom__curve_node_client(secret, &c->curve))
        rc = loom__client_set_error(c, LOOM_EAUTH, "the cluster secret must be %d hex characters", LOOM_SECRET_HEX);
    memset(secret, 0, sizeof(secret));
    return rc;
}

static int connect_with(const char *address, const loom_connect_opts *opts, const loom_curve_client *keys,
                        loom_client **out)
{
    if (!out) return LOOM_EINVAL;
    *out = NULL;
    loom_client *c = calloc(1, sizeof(*c));
    if (!c) return LOOM_ENOMEM;
    c->out = loom_pack_new();
    c->store_wait_ms = opts && opts->store_wait_ms ? opts->store_wait_ms : 10000;
    if (c->store_wait_ms < 0) c->store_wait_ms = 0;
    if (gethostname(c->hostname, sizeof(c->hostname)) != 0)
        loom__snprintf(c->hostname, sizeof(c->hostname), "localhost");
    char state_dir[4096];
    int rc = resolve_address(c, address, opts, state_dir, sizeof(state_dir));
    if (rc) goto fail;
    rc = client_keys(c, opts, keys, state_dir);
    if (rc) goto fail;
    c->zctx = zmq_ctx_new();
    c->sock = zmq_socket(c->zctx, ZMQ_DEALER);
    loom__zsock_setup(c->sock, ZMQ_DEALER);
    char ep[600];
    loom__snprintf(ep, sizeof(ep), "tcp://%s", c->address);
    if (loom__curve_client(c->sock, c->curve.server_pub, &c->curve.self)) {
        rc = loom__client_set_error(c, LOOM_EIO, "cannot set up CURVE on the head's connection");
        goto fail;
    }
    if (zmq_connect(c->sock, ep) != 0) {
        rc = loom__client_set_error(c, LOOM_EINVAL, "bad cluster address '%s' (want HOST:PORT or \"local\")",
                                    c->address);
        goto fail;
    }
    watch_connection(c);
    rc = loom__client_say_hello(c);
    if (!rc && c->local) rc = refresh_nodes(c, loom__local_num_nodes(c->local), 30000);
    if (rc) goto fail;
    *out = c;
    return LOOM_OK;
fail:
    if (c->last_error[0]) fprintf(stderr, "loom: %s\n", c->last_error);
    loom_disconnect(&c);
    return rc;
}

int loom_connect(const char *address, const loom_connect_opts *opts, loom_client **out)
{
    return connect_with(address, opts, NULL, out);
}

int loom__connect_with_keys(const char *address, const loom_curve_client *keys, loom_client **out)
{
    if (!keys) return LOOM_EINVAL;
    return connect_with(address, NULL, keys, out);
}

void loom_disconnect(loom_client **pc)
{
    if (!pc || !*pc) return;
    loom_client *c = *pc;
    *pc = NULL;
    if (c->sock && c->id) {
        loom_msg m;
        loom__msg_init(&m, LOOM_MSG_BYE, 0);
        loom__client_send_msg(c, &m);
        int linger = 1000;
        zmq_setsockopt(c->sock, ZMQ_LINGER, &linger, sizeof(linger));
    }
    if (c->mon) zmq_close(c->mon);
    if (c->sock) zmq_close(c->sock);
    if (c->data_sock) zmq_close(c->data_sock);
    if (c->zctx) zmq_ctx_term(c->zctx);
    memset(&c->curve, 0, sizeof(c->curve));
    size_t it = 0;
    void *v;
    while (loom__hmap_next(&c->ready, &it, &v)) loom__client_ready_free(v);
    loom__hmap_free(&c->ready);
    for (int i = c->ua_first; i < c->nua; i++) free(c->ua[i].data);
    free(c->ua);
    loom__store_close_shared(&c->store);
    loom__local_stop(&c->local);
    loom_pack_destroy(&c->out);
    free(c);
}

/* ---- tasks and graphs --------------------------------------------------- */

static int node_to_wire(loom_client *c, loom_arena *a, const loom_graph_node *n, loom_wire_task *t,
                        loom_ref *temp_refs, int *ntemp)
{
    memcpy(t->task_id, n->task_id, 16);
    t->kind = n->kind == LOOM_GNODE_FUNCTION ? LOOM_TASK_FUNCTION : LOOM_TASK_COMMAND;
    t->name = n->name;
    t->function = n->function ? n->function : "";
    if (n->kind == LOOM_GNODE_FUNCTION) {
        t->lib.kind = LOOM_WARG_REF;
        t->lib.ref = n->lib;
    }
    t->argv = n->argv;
    t->argc = (uint32_t)n->argc;
    t->env = n->env;
    t->nenv = (uint32_t)n->nenv;
    t->cwd = n->cwd ? n->cwd : "";
    t->outputs = n->outputs;
    t->noutputs = (uint32_t)n->noutputs;
    t->nocheck = n->nocheck;
    t->num_cpus = n->num_cpus;
    t->memory = n->memory;
    t->bundle = -1;
    t->max_retries = LOOM_DEFAULT_RETRIES;
    const loom_graph_extra *e = n->extra;
    if (e) {
        t->max_retries = e->max_retries;
        t->retry_on_error = e->retry_on_error;
        t->max_restarts = e->max_restarts;
        t->max_task_retries = e->max_task_retries;
        t->num_gpus = e->num_gpus;
        t->gpu_memory = e->gpu_memory;
        t->nres = (uint32_t)e->nres;
        t->res = e->nres ? loom__arena_alloc(a, (size_t)e->nres * sizeof(loom_wire_res)) : NULL;
        t->nlabels = (uint32_t)e->nlabels;
        t->labels = e->nlabels ? loom__arena_alloc(a, (size_t)e->nlabels * sizeof(loom_wire_label)) : NULL;
        if ((e->nres && !t->res) || (e->nlabels && !t->labels)) return LOOM_ENOMEM;
        for (int i = 0; i < e->nres; i++) {
            t->res[i].name = e->res_name[i];
            t->res[i].amount = e->res_amount[i];
        }
        for (int i = 0; i < e->nlabels; i++) {
            t->labels[i].key = e->label_key[i];
            t->labels[i].value = e->label_value[i];
        }
        t->strategy = (uint32_t)e->strategy;
        t->affinity_node = e->node;
        t->soft = e->soft;
        t->has_pg = e->has_pg;
        memcpy(t->pg, e->pg, 16);
        t->bundle = e->bundle;
        t->actor_op = (uint32_t)e->actor_op;
        memcpy(t->actor, e->actor, 16);
        t->max_concurrency = e->max_concurrency;
        t->detached = e->detached;
        t->actor_name = e->actor_name;
        if (e->actor_op == LOOM_ACTOR_CALL) {
            t->lib.kind = LOOM_WARG_VALUE; /* the actor has its library */
            memset(&t->lib.ref, 0, sizeof(t->lib.ref));
        }
    }
    t->nargs = (uint32_t)n->nargs;
    t->args = n->nargs ? loom__arena_alloc(a, (size_t)n->nargs * sizeof(loom_wire_arg)) : NULL;
    if (n->nargs && !t->args) return LOOM_ENOMEM;
    for (int i = 0; i < n->nargs; i++) {
        const loom_graph_arg *g = &n->args[i];
        loom_wire_arg *w = &t->args[i];
        if (g->kind == LOOM_GARG_VALUE && g->len <= LOOM_INLINE_MAX) {
            w->kind = LOOM_WARG_VALUE;
            w->value.p = g->data;
            w->value.n = g->len;
        } else if (g->kind == LOOM_GARG_VALUE) {
            /* large values go to the store first; the task holds them from then on */
            w->kind = LOOM_WARG_REF;
            int rc = loom_put(c, g->data, g->len, &w->ref);
            if (rc) return rc;
            temp_refs[(*ntemp)++] = w->ref;
        } else {
            w->kind = LOOM_WARG_REF;
            w->ref = g->ref;
        }
    }
    return LOOM_OK;
}

/* Send a SUBMIT or PUT_DONE without waiting for its answer; kept until the
 * answer comes (note_unacked).  Past MAX_UNACKED in flight, wait for answers. */
int loom__client_send_unacked(loom_client *c, loom_msg *m, const loom_ref *out)
{
    int64_t deadline = loom__now_ms() + REQUEST_TIMEOUT_MS;
    while (c->ua_live >= MAX_UNACKED) {
        int rc = loom__client_pump(c, deadline);
        if (rc && rc != LOOM_ETIMEOUT) return loom__client_set_error(c, rc, "lost the connection to the head");
        if (loom__now_ms() >= deadline && c->ua_live >= MAX_UNACKED)
            return loom__client_set_error(c, LOOM_ECONN, "the head did not take %d submissions within %d ms",
                                          MAX_UNACKED, REQUEST_TIMEOUT_MS);
    }
    resend_after_close(c);
    if (c->nua == c->cap_ua && c->ua_first > 0) { /* move the live ones to the front */
        memmove(c->ua, c->ua + c->ua_first, (size_t)(c->nua - c->ua_first) * sizeof(*c->ua));
        c->nua -= c->ua_first;
        c->ua_first = 0;
    }
    if (grow_ua(c)) return loom__client_set_error(c, LOOM_ENOMEM, "out of memory");
    m->req = ++c->next_req;
    int rc = loom__wire_encode(m, c->out);
    if (rc) return loom__client_set_error(c, rc, "cannot encode the submission");
    unacked *u = &c->ua[c->nua];
    u->len = loom_pack_size(c->out);
    u->data = malloc(u->len);
    if (!u->data) return loom__client_set_error(c, LOOM_ENOMEM, "out of memory");
    memcpy(u->data, loom_pack_data(c->out), u->len);
    u->req = m->req;
    u->out = *out;
    if (zmq_send(c->sock, u->data, u->len, 0) < 0) {
        free(u->data);
        return loom__client_set_error(c, LOOM_ECONN, "cannot send to the head: %s", zmq_strerror(errno));
    }
    c->nua++;
    c->ua_live++;
    return LOOM_OK;
}

/* Encode and send a graph: wait for the head's answer (the job id), or, with
 * out set (one task, loom_submit), send it without waiting (the answer is
 * handled as it comes; a refusal becomes out's result). */
static int graph_send(loom_client *c, loom_graph *g, const loom_submit_opts *opts, char job_id[LOOM_JOB_ID_LEN],
                      const loom_ref *out)
{
    if (!c || !g) return LOOM_EINVAL;
    if (g->nnodes == 0) return loom__client_set_error(c, LOOM_EINVAL, "the graph has no tasks");
    loom_arena a = {0};
    int total_args = 0;
    for (int i = 0; i < g->nnodes; i++) total_args += g->nodes[i].nargs;
    loom_wire_task *tasks = loom__arena_alloc(&a, (size_t)g->nnodes * sizeof(loom_wire_task));
    loom_ref *temp = loom__arena_alloc(&a, (size_t)(total_args + 1) * sizeof(loom_ref));
    int ntemp = 0, rc = tasks && temp ? LOOM_OK : LOOM_ENOMEM;
    for (int i = 0; !rc && i < g->nnodes; i++) rc = node_to_wire(c, &a, &g->nodes[i], &tasks[i], temp, &ntemp);
    if (!rc) {
        loom_msg m;
        loom__msg_init(&m, LOOM_MSG_SUBMIT, 0);
        m.job_name = (char *)(opts && opts->job_name ? opts->job_name : "graph");
        m.detached = opts && opts->detached ? 1 : 0;
        m.label = (char *)(opts && opts->label ? opts->label : "");
        m.tasks = tasks;
        m.ntasks = (uint32_t)g->nnodes;
        zmq_msg_t f;
        loom_msg r;
        rc = out ? loom__client_send_unacked(c, &m, out) : loom__client_request(c, &m, LOOM_MSG_SUBMITTED, &f, &r);
        if (!rc && !out) {
            if (job_id) loom__snprintf(job_id, LOOM_JOB_ID_LEN, "%s", r.job);
            loom__msg_free(&r);
            zmq_msg_close(&f);
        }
    }
    for (int i = 0; i < ntemp; i++) loom_release(c, temp[i]);
    loom__arena_free(&a);
    return rc;
}

int loom_graph_submit(loom_client *c, loom_graph *g, const loom_submit_opts *opts, char job_id[LOOM_JOB_ID_LEN])
{
    return graph_send(c, g, opts, job_id, NULL);
}

int loom__client_graph_send_unacked(loom_client *c, loom_graph *g, const loom_submit_opts *opts, const loom_ref *out)
{
    return graph_send(c, g, opts, NULL, out);
}

int loom_submit(loom_client *c, loom_ref lib, const char *function, const loom_arg *args, int nargs,
                const loom_task_opts *opts, loom_ref *out)
{
    if (!c || !function || !out || nargs < 0 || (nargs && !args)) return LOOM_EINVAL;
    c->last_error[0] = 0;
    loom_graph *g;
    int rc = loom_graph_new(&g);
    if (rc) return rc;
    int node = loom_graph_task(g, lib, function, opts);
    rc = node < 0 ? node : LOOM_OK;
    if (rc == LOOM_EINVAL)
        loom__client_set_error(c, rc, "invalid task '%s' or options: num_cpus 0..1024, num_gpus a fraction below 1 "
                               "or a whole number up to 16 (gpu_memory only with GPUs), resources with names of "
                               "1..63 characters and amounts > 0, labels, strategy, bundle", function);
    for (int i = 0; !rc && i < nargs; i++)
        rc = args[i].kind == LOOM_ARG_REF ? loom_graph_arg_ref(g, node, args[i].ref)
                                          : loom_graph_arg_value(g, node, args[i].data, args[i].len);
    /* sent without waiting for the head: a refusal (an unknown ref, say)
       is what loom_get of the result returns */
    if (!rc) rc = loom_graph_ref(g, node, 0, out);
    if (!rc) rc = graph_send(c, g, NULL, NULL, out);
    if (rc && !c->last_error[0]) loom__client_set_error(c, rc, "%s", loom_strerror(rc));
    loom_graph_destroy(&g);
    return rc;
}

/* ---- inspection --------------------------------------------------------- */

int loom_logs(loom_client *c, loom_ref ref, char **out, size_t *len)
{
    if (!c || !out) return LOOM_EINVAL;
    loom_ref log;
    loom__ref_make(ref.id, 0xFFFFFFFFu, &log);
    loom_value *v;
    int rc = loom_get(c, log, REQUEST_TIMEOUT_MS, &v);
    if (rc) return rc;
    size_t n = loom_value_size(v);
    char *s = malloc(n + 1);
    if (!s) {
        loom_value_release(&v);
        return LOOM_ENOMEM;
    }
    if (n) memcpy(s, loom_value_data(v), n);
    s[n] = 0;
    loom_value_release(&v);
    loom__client_ready_drop(loom__hmap_del(&c->ready, log.id, LOOM_ID_LEN));
    *out = s;
    if (len) *len = n;
    return LOOM_OK;
}

int loom__client_info_json(loom_client *c, loom_msg *m, char **json)
{
    zmq_msg_t f;
    loom_msg r;
    int rc = loom__client_request(c, m, LOOM_MSG_INFO, &f, &r);
    if (rc) return rc;
    rc = loom_msgpack_to_json(r.data.p, r.data.n, json);
    loom__msg_free(&r);
    zmq_msg_close(&f);
    return rc;
}

int loom_status_json(loom_client *c, char **json)
{
    if (!c || !json) return LOOM_EINVAL;
    loom_msg m;
    loom__msg_init(&m, LOOM_MSG_STATUS, 0);
    return loom__client_info_json(c, &m, json);
}

int loom_job_json(loom_client *c, const char *job_id, char **json)
{
    if (!c || !job_id || !json) return LOOM_EINVAL;
    loom_msg m;
    loom__msg_init(&m, LOOM_MSG_JOB_INFO, 0);
    m.job = (char *)job_id;
    return loom__client_info_json(c, &m, json);
}

int loom_jobs_json(loom_client *c, const char *label, uint64_t offset, uint64_t limit, char **json)
{
    if (!c || !json) return LOOM_EINVAL;
    loom_msg m;
    loom__msg_init(&m, LOOM_MSG_JOBS, 0);
    m.label = (char *)(label ? label : "");
    m.offset = offset;
    m.limit = limit;
    return loom__client_info_json(c, &m, json);
}

int loom_job_ref(loom_client *c, const char *job_id, const char *task, int output, loom_ref *out)
{
    if (!c || !job_id || !task || !out || output < -1) return LOOM_EINVAL;
    loom_msg m;
    loom__msg_init(&m, LOOM_MSG_JOB_REF, 0);
    m.job = (char *)job_id;
    m.task_name = (char *)task;
    m.output = output < 0 ? 0xFFFFFFFFu : (uint64_t)output;
    zmq_msg_t f;
    loom_msg r;
    int rc = loom__client_request(c, &m, LOOM_MSG_REF, &f, &r);
    if (rc) return rc;
    *out = r.ref;
    loom__msg_free(&r);
    zmq_msg_close(&f);
    return LOOM_OK;
}

int loom_job_delete(loom_client *c, const char *job_id)
{
    if (!c || !job_id) return LOOM_EINVAL;
    loom_msg m;
    loom__msg_init(&m, LOOM_MSG_JOB_DELETE, 0);
    m.job = (char *)job_id;
    return loom__client_request(c, &m, LOOM_MSG_OK, NULL, NULL);
}
