/* gateway/http.c — the HTTP/1.1 server (see http.h): listening, connections,
 * timeouts, limits and answers on a libuv loop of its own; parsing is in
 * http_parse.c.
 *
 * A connection is a small state machine, one request at a time:
 *   READING  -> bytes are parsed until a request is complete (or fails)
 *   ADMIT    -> (admission on) the headers of a request with a body are with
 *               the admit callback; nothing more is read until its verdict
 *   HANDLER  -> the handler has the request; input is buffered, not parsed
 *   WRITING  -> the answer is being written
 *   LINGER   -> the last answer is written; the write side is shut and input
 *               is drained for a moment, so that unread bytes (a refused
 *               body) do not turn our answer into a reset
 *   CLOSING  -> handles are closing; freed in their close callbacks
 * Pipelined requests wait in the input buffer until the answer before them
 * is written, so answers go out in order.  One timer per connection serves
 * the deadline of the current state.
 *
 * Answers come from any thread.  A reply owns its request, so a connection
 * may close (client gone, 504 sent) while a handler still works on it: the
 * connection and its reply are linked only on the loop thread, and unlinking
 * them makes the late answer a no-op.  Sent replies travel to the loop
 * through a hub (mutex, queue, uv_async).  The hub is reference-counted by the
 * server and by every reply not yet sent, so a reply sent after
 * loom_http_stop finds the hub closed and just frees itself.
 *
 * TLS (tls_cert/tls_key; the OpenSSL half is tls.c): each connection has a
 * session between memory BIOs, touched on the loop thread only.  Bytes read
 * are fed to it and everything it decrypts goes to the input buffer, so the
 * state machine above runs on plaintext unchanged; the handshake is driven
 * by those same reads while the connection is READING with no request
 * begun (request_timeout_ms bounds it).  Everything written (answers,
 * 100 Continue, handshake records, close_notify at LINGER) is encrypted into
 * the session and its ciphertext written in the order made.  Without TLS,
 * none of this runs. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>
#include "loom/loom.h"
#include "runtime/util.h"
#include "gateway/http_internal.h"
#include "gateway/http_tls.h"

#define DEF_MAX_HEADER_BYTES ((size_t)16 << 10)
#define DEF_MAX_BODY_BYTES ((size_t)64 << 20)
#define DEF_MAX_BODY_TOTAL ((size_t)1 << 30)
#define DEF_REQUEST_TIMEOUT_MS 30000
#define DEF_HANDLER_TIMEOUT_MS 60000
#define DEF_IDLE_TIMEOUT_MS 60000
#define DEF_MAX_CONNECTIONS 1024
#define DEF_MAX_CONNS_PER_CLIENT 128
#define DEF_MAX_INFLIGHT 256
#define READ_CHUNK 65536
#define INPUT_HIGH_WATER ((size_t)64 << 10)   /* stop reading while a request is served */
#define LINGER_MS 2000
#define MAX_TURNS 4
#define LISTEN_BACKLOG 511

static const char CONTINUE_100[] = "HTTP/1.1 100 Continue\r\n\r\n";
static const double latency_buckets[] = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60
};

typedef struct hub hub;
typedef struct conn conn;
typedef struct loom_http_server server;

struct hub {
    atomic_size_t body_bytes;    /* admitted bodies' reservations (max_body_total) */
    pthread_mutex_t mu;
    int refs;                    /* the server + each reply not yet sent */
    int closed;                  /* the server stopped: sent replies are freed */
    loom_http_reply *head, *tail;   /* sent, waiting for the loop */
    uv_async_t *async;           /* valid while !closed */
};

struct loom_http_reply {
    hub *hub;
    conn *conn;                  /* loop thread only; NULL once unlinked */
    loom_http_reply *next;       /* in the hub's queue */
    loom_http_msg msg;           /* the request (empty for the server's own answers) */
    int64_t start_us;            /* when the request began */
    int admit;                   /* an admission ticket, not an answer */
    size_t reserved;             /* of hub->body_bytes, for this request's body */
    size_t max_body;             /* the ticket's verdict: body limit (0: default) */
    int close;                   /* close the connection after this answer */
    int http10;                  /* an HTTP/1.0 request: keep-alive must be said */
    int status;
    char *head;                  /* response head, without Connection and CRLF */
    size_t head_len;
    char *body;
    size_t body_len;
};

enum { C_READING, C_ADMIT, C_HANDLER, C_WRITING, C_LINGER, C_CLOSING };

struct conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_write_t wreq;             /* the answer being written */
    uv_write_t creq;             /* a 100 Continue being written */
    uv_shutdown_t sreq;
    server *srv;
    conn *prev, *next;           /* the server's list */
    int state;
    int reading;                 /* uv_read_start is on */
    int peer_eof;                /* the client shut its write side */
    int overflow;                /* accepted beyond max_connections */
    int closing_handles;
    loom_http_parse parse;
    char *in;                    /* bytes read, not yet parsed */
    size_t in_off, in_len, in_cap;
    int64_t req_start_us;        /* first byte of the current request */
    loom_http_reply *cur;        /* with the handler */
    loom_http_reply *ticket;     /* with the admit callback */
    size_t reserved;             /* of hub->body_bytes, for the body being read */
    int64_t last_active_us;      /* last request begun or answered (idle eviction) */
    loom_http_reply *writing;    /* being written */
    char remote[64];
    char ip[INET6_ADDRSTRLEN];   /* the peer's address, for max_conns_per_client */
    loom_tls_session *tls;       /* TLS on: this connection's session */
};

/* Ciphertext on its way to the socket (TLS), one uv_write each; freed when
 * written (or cancelled by the close). */
typedef struct tls_out {
    uv_write_t req;
    conn *c;
    int answer;                  /* its completion completes the answer */
    char data[];
} tls_out;

struct loom_http_server {
    loom_http_opts o;
    uv_loop_t loop;
    uv_tcp_t listener;
    uv_async_t async;
    uv_thread_t thread;
    hub *hub;
    atomic_int stop;
    int port;
    int nconns, noverflow, inflight;
    conn *conns;
    loom_tls *tls;               /* TLS on: the certificate and settings */
    char readbuf[READ_CHUNK];
};

static void conn_process(conn *c);
static void conn_close(conn *c);
static void conn_write(conn *c, loom_http_reply *rep);
static void answer_written(conn *c, int status);

/* ---- hub and replies ---- */

static hub *hub_new(void)
{
    hub *h = calloc(1, sizeof(*h));
    if (!h) return NULL;
    if (pthread_mutex_init(&h->mu, NULL) != 0) { free(h); return NULL; }
    h->refs = 1;
    return h;
}

static void hub_unref(hub *h)
{
    pthread_mutex_lock(&h->mu);
    int last = --h->refs == 0;
    pthread_mutex_unlock(&h->mu);
    if (!last) return;
    pthread_mutex_destroy(&h->mu);
    free(h);
}

static loom_http_reply *reply_new(hub *h)
{
    loom_http_reply *r = calloc(1, sizeof(*r));
    if (!r) return NULL;
    pthread_mutex_lock(&h->mu);
    h->refs++;
    pthread_mutex_unlock(&h->mu);
    r->hub = h;
    return r;
}

static void reply_free(loom_http_reply *r)
{
    if (!r) return;
    hub *h = r->hub;
    if (r->reserved) atomic_fetch_sub(&h->body_bytes, r->reserved);
    loom_http_msg_free(&r->msg);
    free(r->head);
    free(r->body);
    free(r);
    hub_unref(h);
}

/* Fill in the answer (any thread).  On a bad argument or no memory it
 * becomes a bare 500 and the error is returned. */
static int reply_fill(loom_http_reply *r, int status, const char *ctype, const void *body,
                      size_t len, const char *extra)
{
    int rc = status < 200 || status > 599 || len > UINT32_MAX ? LOOM_EINVAL : LOOM_OK;
    if (rc == 0 && !r->msg.head && loom_http_status_has_body(status) && len > 0) {
        r->body = malloc(len);
        if (r->body) memcpy(r->body, body, len);
        r->body_len = r->body ? len : 0;
        rc = r->body ? LOOM_OK : LOOM_ENOMEM;
    }
    if (rc == 0) rc = loom_http_head(&r->head, &r->head_len, status, ctype, len, extra);
    if (rc == 0) { r->status = status; return LOOM_OK; }
    free(r->body);
    r->body = NULL;
    r->body_len = 0;
    r->status = 500;
    /* an allocation-free fallback would need a static head; this one is small */
    if (loom_http_head(&r->head, &r->head_len, 500, NULL, 0, NULL) != 0) {
        r->head = NULL;
        r->head_len = 0;
    }
    return rc;
}

/* Hand a sent reply to the loop, or free it if the server is gone. */
static void reply_post(loom_http_reply *r)
{
    hub *h = r->hub;
    pthread_mutex_lock(&h->mu);
    if (h->closed) {
        pthread_mutex_unlock(&h->mu);
        reply_free(r);
        return;
    }
    r->next = NULL;
    if (h->tail) h->tail->next = r;
    else h->head = r;
    h->tail = r;
    uv_async_send(h->async);
    pthread_mutex_unlock(&h->mu);
}

int loom_http_reply_send(loom_http_reply *rep, int status, const char *content_type,
                         const void *body, size_t len, const char *extra_headers)
{
    if (!rep) return LOOM_EINVAL;
    if (!body) len = 0;
    int rc = reply_fill(rep, status, content_type, body, len, extra_headers);
    reply_post(rep);
    return rc;
}

int loom_http_reply_error(loom_http_reply *rep, int status, const char *msg,
                          const char *extra_headers)
{
    if (!rep) return LOOM_EINVAL;
    /* JSON string escaping of msg: quotes, backslashes, control characters */
    const char *m = msg ? msg : "";
    size_t cap = strlen(m) * 6 + 16;
    char *b = malloc(cap);
    if (!b) return loom_http_reply_send(rep, 500, NULL, NULL, 0, NULL), LOOM_ENOMEM;
    size_t n = (size_t)snprintf(b, cap, "{\"error\":\"");
    for (const unsigned char *p = (const unsigned char *)m; *p; p++) {
        if (*p == '"' || *p == '\\') n += (size_t)snprintf(b + n, cap - n, "\\%c", *p);
        else if (*p < 0x20) n += (size_t)snprintf(b + n, cap - n, "\\u%04x", *p);
        else b[n++] = (char)*p;
    }
    n += (size_t)snprintf(b + n, cap - n, "\"}");
    int rc = loom_http_reply_send(rep, status, "application/json", b, n, extra_headers);
    free(b);
    return rc;
}

/* ---- metrics ---- */

static void metrics_gauges(server *s)
{
    if (!s->o.metrics) return;
    loom_metrics_gauge_set(s->o.metrics, "loom_http_connections", "Open HTTP connections.",
                           NULL, s->nconns);
    loom_metrics_gauge_set(s->o.metrics, "loom_http_inflight",
                           "HTTP requests with the handler, not yet answered.", NULL, s->inflight);
}

static void metrics_answer(server *s, const loom_http_reply *r)
{
    if (!s->o.metrics) return;
    char labels[32];
    snprintf(labels, sizeof labels, "code=\"%d\"", r->status);
    loom_metrics_counter_add(s->o.metrics, "loom_http_requests_total",
                             "HTTP requests answered, by status code.", labels, 1);
    if (r->start_us > 0)
        loom_metrics_histogram_observe(
            s->o.metrics, "loom_http_request_seconds",
            "Time from the first byte of a request to its answer being written out.", NULL,
            latency_buckets, (int)(sizeof(latency_buckets) / sizeof(latency_buckets[0])),
            (double)(loom__now_us() - r->start_us) / 1e6);
}

static void metrics_tls_failure(server *s, const char *reason)
{
    if (!s->o.metrics) return;
    char labels[48];
    snprintf(labels, sizeof labels, "reason=\"%s\"", reason);
    loom_metrics_counter_add(s->o.metrics, "loom_http_tls_handshake_failures_total",
                             "TLS handshakes that failed (error) or did not complete in time (timeout).",
                             labels, 1);
}

/* ---- connections ---- */

static void arm_timer(conn *c, int ms, uv_timer_cb cb)
{
    uv_timer_start(&c->timer, cb, ms > 0 ? (uint64_t)ms : 1, 0);
}

static void read_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    conn *c = h->data;
    (void)suggested;
    *buf = uv_buf_init(c->srv->readbuf, sizeof c->srv->readbuf);
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf);

static void reading_on(conn *c)
{
    if (c->reading || c->peer_eof || c->state == C_CLOSING) return;
    if (uv_read_start((uv_stream_t *)&c->tcp, read_alloc, on_read) == 0) c->reading = 1;
}

static void reading_off(conn *c)
{
    if (!c->reading) return;
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = 0;
}

static void on_conn_closed(uv_handle_t *h)
{
    conn *c = h->data;
    if (--c->closing_handles > 0) return;
    loom_http_parse_free(&c->parse);
    loom_tls_session_free(&c->tls);
    free(c->in);
    free(c);
}

/* ---- TLS: ciphertext out ---- */

static void on_tls_written(uv_write_t *req, int status)
{
    tls_out *o = req->data;
    conn *c = o->c;
    int answer = o->answer;
    free(o);
    if (answer) answer_written(c, status);
}

/* Write out the ciphertext the session has made, in the order made.  For an
 * answer (answer=1) the write completes in answer_written; other records
 * (handshake, tickets, alerts, 100 Continue, close_notify) go straight to
 * the socket when nothing is queued before them, so that an alert still
 * leaves before a close.  0 or LOOM_E*. */
static int tls_flush(conn *c, int answer)
{
    size_t n = loom_tls_pending(c->tls);
    if (n == 0 && !answer) return LOOM_OK;
    if (n == 0 || n > UINT32_MAX) return LOOM_EIO;
    tls_out *o = malloc(sizeof(*o) + n);
    if (!o) return LOOM_ENOMEM;
    n = loom_tls_take(c->tls, o->data, n);
    size_t off = 0;
    if (!answer) {
        uv_buf_t now = uv_buf_init(o->data, (unsigned)n);
        int k = uv_try_write((uv_stream_t *)&c->tcp, &now, 1);
        off = k > 0 ? (size_t)k : 0;
        if (off == n) { free(o); return LOOM_OK; }
    }
    o->c = c;
    o->answer = answer;
    o->req.data = o;
    uv_buf_t rest = uv_buf_init(o->data + off, (unsigned)(n - off));
    if (uv_write(&o->req, (uv_stream_t *)&c->tcp, &rest, 1, on_tls_written) != 0) {
        free(o);
        return LOOM_EIO;
    }
    return LOOM_OK;
}

/* Encrypt an answer's buffers and write them; done in answer_written. */
static int tls_send_answer(conn *c, const uv_buf_t *bufs, unsigned nb)
{
    for (unsigned i = 0; i < nb; i++)
        if (loom_tls_write(c->tls, bufs[i].base, bufs[i].len) != 0) return LOOM_EIO;
    return tls_flush(c, 1);
}

/* Unlink from the handler's reply: a late answer then finds no connection. */
static void detach_handler(conn *c)
{
    if (!c->cur) return;
    c->cur->conn = NULL;
    c->cur = NULL;
    c->srv->inflight--;
    metrics_gauges(c->srv);
}

static void conn_close(conn *c)
{
    if (c->state == C_CLOSING) return;
    server *s = c->srv;
    c->state = C_CLOSING;
    detach_handler(c);
    if (c->ticket) {
        c->ticket->conn = NULL;      /* its late verdict finds no connection */
        c->ticket = NULL;
    }
    if (c->reserved) atomic_fetch_sub(&s->hub->body_bytes, c->reserved);
    c->reserved = 0;
    if (c->prev) c->prev->next = c->next;
    else s->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    c->prev = c->next = NULL;
    if (c->overflow) s->noverflow--;
    else s->nconns--;
    metrics_gauges(s);
    uv_timer_stop(&c->timer);
    c->closing_handles = 2;
    uv_close((uv_handle_t *)&c->timer, on_conn_closed);
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

static void on_linger_timeout(uv_timer_t *t)
{
    conn_close(t->data);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    (void)req;
    (void)status;
}

/* The last answer is out: shut our side, drain theirs for a moment. */
static void conn_linger(conn *c)
{
    c->state = C_LINGER;
    c->in_off = c->in_len = 0;
    /* TLS: close_notify first; the shutdown waits for it to be written */
    if (c->tls && (loom_tls_close_notify(c->tls) != 0 || tls_flush(c, 0) != 0)) {
        conn_close(c);
        return;
    }
    if (c->peer_eof || uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
        conn_close(c);
        return;
    }
    int ms = c->srv->o.request_timeout_ms < LINGER_MS ? c->srv->o.request_timeout_ms : LINGER_MS;
    arm_timer(c, ms, on_linger_timeout);
    reading_on(c);
}

/* An answer of the server's own (an error, a 503, a 504). */
static void conn_answer(conn *c, int status, const char *msg, const char *extra, int close,
                        const loom_http_msg *req)
{
    loom_http_reply *r = reply_new(c->srv->hub);
    if (!r) { conn_close(c); return; }
    r->start_us = c->req_start_us;
    r->msg.head = req ? req->head : 0;
    r->http10 = req ? req->req.http_minor == 0 : 0;
    r->close = close || !req || !req->keep_alive;
    char body[256];
    int n = snprintf(body, sizeof body, "{\"error\":\"%s\"}", msg);
    reply_fill(r, status, "application/json", body, (size_t)n, extra);
    conn_write(c, r);
}

static void on_idle_or_request_timeout(uv_timer_t *t)
{
    conn *c = t->data;
    if (c->state == C_ADMIT) {
        c->ticket->conn = NULL;
        c->ticket = NULL;
        c->state = C_READING;
    }
    if (c->state != C_READING) return;
    if (c->tls && !loom_tls_established(c->tls)) {
        metrics_tls_failure(c->srv, "timeout");
        conn_close(c);
        return;
    }
    if (loom_http_parse_started(&c->parse))
        conn_answer(c, 408, "request timeout", NULL, 1, NULL);
    else
        conn_close(c);
}

static void on_handler_timeout(uv_timer_t *t)
{
    conn *c = t->data;
    if (c->state != C_HANDLER || !c->cur) return;
    /* the late reply lives on until its handler sends it; only its request's
       flags (never written after dispatch) are read here */
    loom_http_reply *late = c->cur;
    detach_handler(c);
    conn_answer(c, 504, "the handler did not answer in time", NULL, 0, &late->msg);
}

static void on_write_timeout(uv_timer_t *t)
{
    conn_close(t->data);             /* the client does not read its answer */
}

/* The answer being written is out (status 0) or failed. */
static void answer_written(conn *c, int status)
{
    loom_http_reply *r = c->writing;
    c->writing = NULL;
    int close = r ? r->close : 1;
    if (r && status == 0) metrics_answer(c->srv, r);
    reply_free(r);
    if (c->state == C_CLOSING) return;
    if (status < 0) { conn_close(c); return; }
    if (close) { conn_linger(c); return; }
    c->state = C_READING;
    c->req_start_us = 0;
    c->last_active_us = loom__now_us();
    arm_timer(c, c->srv->o.idle_timeout_ms, on_idle_or_request_timeout);
    reading_on(c);
    conn_process(c);
}

static void on_written(uv_write_t *req, int status)
{
    answer_written(req->data, status);
}

static void conn_write(conn *c, loom_http_reply *r)
{
    static const char tail_close[] = "Connection: close\r\n\r\n";
    static const char tail_keep[] = "Connection: keep-alive\r\n\r\n";
    if (atomic_load(&c->srv->stop) || (c->peer_eof && c->in_off == c->in_len)) r->close = 1;
    /* HTTP/1.0 clients need keep-alive said; 1.1 clients assume it */
    const char *tail = r->close ? tail_close : r->http10 ? tail_keep : "\r\n";
    uv_buf_t bufs[3];
    unsigned nb = 0;
    if (r->head) bufs[nb++] = uv_buf_init(r->head, (unsigned)r->head_len);
    bufs[nb++] = uv_buf_init((char *)tail, (unsigned)strlen(tail));
    if (r->body_len) bufs[nb++] = uv_buf_init(r->body, (unsigned)r->body_len);
    if (!r->head) r->close = 1;      /* no head: no answer to give; just close */
    c->state = C_WRITING;
    c->writing = r;
    c->wreq.data = c;
    reading_off(c);
    arm_timer(c, c->srv->o.idle_timeout_ms, on_write_timeout);
    int rc = !r->head ? LOOM_EINVAL
             : c->tls ? tls_send_answer(c, bufs, nb)
                      : uv_write(&c->wreq, (uv_stream_t *)&c->tcp, bufs, nb, on_written);
    if (rc != 0) {
        c->writing = NULL;
        reply_free(r);
        conn_close(c);
    }
}

/* A complete request goes to the handler, or is refused with 503. */
static void conn_dispatch(conn *c)
{
    server *s = c->srv;
    loom_http_reply *r = reply_new(s->hub);
    if (!r) { conn_close(c); return; }
    loom_http_parse_take(&c->parse, c->remote, &r->msg);
    r->reserved = c->reserved;       /* the body's reservation goes with it */
    c->reserved = 0;
    r->start_us = c->req_start_us;
    r->close = !r->msg.keep_alive;
    r->http10 = r->msg.req.http_minor == 0;
    const loom_http_request *req = &r->msg.req;
    int priority = s->o.is_priority && s->o.is_priority(req);
    if (!priority && s->inflight >= s->o.max_inflight) {
        conn_answer(c, 503, "too many requests in progress", "Retry-After: 1\r\n", 0, &r->msg);
        reply_free(r);
        return;
    }
    c->state = C_HANDLER;
    c->cur = r;
    r->conn = c;
    s->inflight++;
    metrics_gauges(s);
    arm_timer(c, s->o.handler_timeout_ms, on_handler_timeout);
    if (c->in_len - c->in_off >= INPUT_HIGH_WATER) reading_off(c);
    s->o.handler(s->o.ud, req, r);
}

static void on_continue_written(uv_write_t *req, int status)
{
    (void)req;
    (void)status;
}

/* 100 Continue.  A failed write shows in the answer's write after it. */
static void send_continue(conn *c)
{
    if (c->tls) {
        if (loom_tls_write(c->tls, CONTINUE_100, sizeof CONTINUE_100 - 1) == 0) tls_flush(c, 0);
        return;
    }
    uv_buf_t b = uv_buf_init((char *)CONTINUE_100, sizeof CONTINUE_100 - 1);
    c->creq.data = c;
    uv_write(&c->creq, (uv_stream_t *)&c->tcp, &b, 1, on_continue_written);
}

static void compact_input(conn *c)
{
    if (c->in_off == 0) return;
    memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
    c->in_len -= c->in_off;
    c->in_off = 0;
}

/* The headers of a request with a body go to the admit callback; nothing
 * more is parsed until its verdict (deliver_verdict). */
static void conn_admit(conn *c)
{
    server *s = c->srv;
    loom_http_reply *t = reply_new(s->hub);
    if (!t) { conn_close(c); return; }
    t->admit = 1;
    t->conn = c;
    t->start_us = c->req_start_us;
    t->http10 = c->parse.hp.http_minor == 0;
    c->ticket = t;
    c->state = C_ADMIT;
    reading_off(c);
    loom_http_request head;
    loom_http_parse_head(&c->parse, c->remote, &head);
    s->o.admit(s->o.ud, &head, t);
}

int loom_http_admit(loom_http_reply *t, int status, size_t max_body, const char *msg, const char *extra)
{
    if (!t) return LOOM_EINVAL;
    if (status) {
        t->close = 1;
        if (loom_http_reply_error(t, status, msg, extra) != LOOM_OK) return LOOM_EINVAL;
        return LOOM_OK;              /* reply_error posted it */
    }
    t->max_body = max_body;
    reply_post(t);
    return LOOM_OK;
}

/* The admit callback's verdict reached the loop. */
static void deliver_verdict(loom_http_reply *t)
{
    conn *c = t->conn;
    if (!c || c->ticket != t || c->state != C_ADMIT) { reply_free(t); return; }
    c->ticket = NULL;
    t->conn = NULL;
    if (t->status) {                 /* refused: answer it and close, body unread */
        conn_write(c, t);
        return;
    }
    size_t max_body = t->max_body;
    reply_free(t);
    /* reserve the body's bytes (its Content-Length, or the limit when
       chunked) from the server's budget, so that admitted requests cannot
       make it hold more than max_body_total at once */
    server *s = c->srv;
    size_t limit = max_body && max_body < s->o.max_body_bytes ? max_body : s->o.max_body_bytes;
    size_t want = (c->parse.hp.flags & F_CONTENTLENGTH) && c->parse.hp.content_length < limit
                      ? (size_t)c->parse.hp.content_length : limit;
    if (atomic_fetch_add(&s->hub->body_bytes, want) + want > s->o.max_body_total) {
        atomic_fetch_sub(&s->hub->body_bytes, want);
        conn_answer(c, 503, "the server is receiving too many request bodies; retry later",
                    "Retry-After: 1\r\n", 1, NULL);
        return;
    }
    c->reserved = want;
    c->state = C_READING;
    /* a Content-Length over the limit makes the parse fail: 413 below */
    loom_http_parse_admitted(&c->parse, max_body);
    reading_on(c);
    conn_process(c);
}

/* Parse what is buffered while the connection is READING.  Each turn either
 * leaves READING (a request dispatched or refused) or consumes every byte,
 * so the bound is only a guard. */
static void conn_process(conn *c)
{
    for (int turn = 0; turn < MAX_TURNS && c->state == C_READING; turn++) {
        size_t used = 0;
        int started = loom_http_parse_started(&c->parse);
        int ev = loom_http_parse_feed(&c->parse, c->in + c->in_off, c->in_len - c->in_off, &used);
        c->in_off += used;
        if (!started && loom_http_parse_started(&c->parse)) {
            c->req_start_us = loom__now_us();
            arm_timer(c, c->srv->o.request_timeout_ms, on_idle_or_request_timeout);
        }
        if (loom_http_parse_continue_due(&c->parse)) send_continue(c);
        if (ev == LOOM_HTTP_GOT_REQUEST) {
            conn_dispatch(c);
        } else if (ev == LOOM_HTTP_GOT_HEAD) {
            conn_admit(c);
        } else if (ev == LOOM_HTTP_FAILED) {
            int st = loom_http_parse_status(&c->parse);
            conn_answer(c, st, st == 431 ? "request header fields too large"
                             : st == 413 ? "request body too large"
                             : st == 417 ? "expectation failed"
                             : st == 501 ? "this server does not support the method"
                             : st == 505 ? "HTTP version not supported"
                             : st == 500 ? "out of memory" : "bad request", NULL, 1, NULL);
        } else {
            break;                   /* everything parsed; wait for more */
        }
    }
    if (c->state == C_CLOSING) return;
    compact_input(c);
    if (c->state == C_READING && c->peer_eof) conn_close(c);   /* no more will come */
}

/* Room for n more bytes in the input buffer. */
static int input_reserve(conn *c, size_t n)
{
    if (c->in_len + n > c->in_cap) {
        size_t ncap = c->in_cap ? c->in_cap * 2 : READ_CHUNK;
        if (ncap < c->in_len + n) ncap = c->in_len + n;
        char *p = realloc(c->in, ncap);
        if (!p) return LOOM_ENOMEM;
        c->in = p;
        c->in_cap = ncap;
    }
    return LOOM_OK;
}

static int input_append(conn *c, const char *data, size_t n)
{
    if (input_reserve(c, n) != 0) return LOOM_ENOMEM;
    memcpy(c->in + c->in_len, data, n);
    c->in_len += n;
    return LOOM_OK;
}

/* ---- TLS: ciphertext in ---- */

#define TLS_READ_ROOM 16384      /* a record's plaintext at most */

/* Decrypt everything the session can give into the input buffer, so that
 * nothing waits inside it while reading is off.  A LOOM_TLS_* result other
 * than LOOM_TLS_DATA; LOOM_TLS_FAILED for no memory too. */
static int tls_decrypt(conn *c)
{
    for (int guard = 0; guard < 1 << 16; guard++) {
        if (input_reserve(c, TLS_READ_ROOM) != 0) return LOOM_TLS_FAILED;
        size_t got = 0;
        int ev = loom_tls_read(c->tls, c->in + c->in_len, c->in_cap - c->in_len, &got);
        if (ev != LOOM_TLS_DATA) return ev;
        c->in_len += got;
    }
    return LOOM_TLS_FAILED;
}

/* Ciphertext read from a TLS connection: the handshake, then requests. */
static void tls_on_read(conn *c, const char *data, size_t n)
{
    int was_established = loom_tls_established(c->tls);
    if (loom_tls_feed(c->tls, data, n) != 0) { conn_close(c); return; }
    int ev = tls_decrypt(c);
    int flushed = tls_flush(c, 0);   /* handshake records, tickets, alerts */
    if (ev == LOOM_TLS_FAILED || flushed != 0) {
        if (ev == LOOM_TLS_FAILED && !was_established) metrics_tls_failure(c->srv, "error");
        conn_close(c);
        return;
    }
    if (!was_established && loom_tls_established(c->tls) && c->state == C_READING)
        arm_timer(c, c->srv->o.request_timeout_ms, on_idle_or_request_timeout);   /* now the request's */
    if (c->state == C_READING) conn_process(c);
    else if (c->in_len - c->in_off >= INPUT_HIGH_WATER) reading_off(c);
    if (ev != LOOM_TLS_CLOSED || c->state == C_CLOSING) return;
    /* close_notify: like the end of the stream */
    if (c->state == C_READING || c->state == C_LINGER) { conn_close(c); return; }
    c->peer_eof = 1;
    reading_off(c);
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    conn *c = st->data;
    if (c->state == C_CLOSING || n == 0) return;
    if (n < 0) {
        if (n != UV_EOF || c->state == C_READING || c->state == C_LINGER) { conn_close(c); return; }
        c->peer_eof = 1;             /* answer what is in progress, then close */
        reading_off(c);
        return;
    }
    if (c->state == C_LINGER) return;        /* drained and dropped */
    if (c->tls) { tls_on_read(c, buf->base, (size_t)n); return; }
    if (input_append(c, buf->base, (size_t)n) != 0) { conn_close(c); return; }
    if (c->state == C_READING) conn_process(c);
    else if (c->in_len - c->in_off >= INPUT_HIGH_WATER) reading_off(c);
}

/* The connection waiting longest for a request to begin (keep-alive idle,
 * no byte of a request yet), or NULL. */
static conn *longest_idle(server *s, const char *ip)
{
    conn *best = NULL;
    for (conn *c = s->conns; c; c = c->next)
        if (!c->overflow && c->state == C_READING && !loom_http_parse_started(&c->parse) && c->ip[0] &&
            (!ip || !strcmp(c->ip, ip)) &&
            c->in_len == c->in_off && (!best || c->last_active_us < best->last_active_us))
            best = c;
    return best;
}

static int conns_from(server *s, const char *ip)
{
    int n = 0;
    for (conn *c = s->conns; c; c = c->next)
        if (!c->overflow && c->state != C_CLOSING && !strcmp(c->ip, ip)) n++;
    return n;
}

static void peer_name(conn *c)
{
    struct sockaddr_storage sa;
    int len = sizeof sa;
    int port = 0;
    snprintf(c->ip, sizeof c->ip, "?");
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&sa, &len) == 0) {
        if (sa.ss_family == AF_INET6) {
            uv_ip6_name((struct sockaddr_in6 *)&sa, c->ip, sizeof c->ip);
            port = ntohs(((struct sockaddr_in6 *)&sa)->sin6_port);
        } else {
            uv_ip4_name((struct sockaddr_in *)&sa, c->ip, sizeof c->ip);
            port = ntohs(((struct sockaddr_in *)&sa)->sin_port);
        }
    }
    snprintf(c->remote, sizeof c->remote, "%s:%d", c->ip, port);
}

/* A new connection: at max_connections the one idle longest makes room (a
 * crowd of idle connections cannot lock out health checks and real
 * clients); one address may hold max_conns_per_client (its own idle
 * connection that waited longest makes room first). */
static void on_connection(uv_stream_t *ls, int status)
{
    server *s = ls->data;
    if (status < 0 || atomic_load(&s->stop)) return;
    conn *c = calloc(1, sizeof(*c));
    if (!c) return;
    c->srv = s;
    uv_tcp_init(&s->loop, &c->tcp);
    uv_timer_init(&s->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    if (s->nconns >= s->o.max_connections) {
        conn *idle = longest_idle(s, NULL);
        if (idle) conn_close(idle);
    }
    c->overflow = s->nconns >= s->o.max_connections;
    if (c->overflow) s->noverflow++;
    else s->nconns++;
    c->next = s->conns;
    if (s->conns) s->conns->prev = c;
    s->conns = c;
    c->state = C_READING;
    c->last_active_us = loom__now_us();
    loom_http_parse_init(&c->parse, s->o.max_header_bytes, s->o.max_body_bytes);
    if (s->o.admit) loom_http_parse_want_admission(&c->parse);
    if (uv_accept(ls, (uv_stream_t *)&c->tcp) != 0) { conn_close(c); return; }
    metrics_gauges(s);
    peer_name(c);
    uv_tcp_nodelay(&c->tcp, 1);
    if (c->overflow) {
        /* beyond twice the limit, not even an answer: the cost must stay
           bounded; with TLS, an answer would cost a handshake */
        if (s->noverflow > s->o.max_connections || s->tls) { conn_close(c); return; }
        conn_answer(c, 503, "too many connections", "Retry-After: 1\r\n", 1, NULL);
        return;
    }
    if (conns_from(s, c->ip) > s->o.max_conns_per_client) {   /* the address's idle one makes room */
        conn *idle = longest_idle(s, c->ip);
        if (idle && idle != c) conn_close(idle);
    }
    if (conns_from(s, c->ip) > s->o.max_conns_per_client) {
        if (s->tls) { conn_close(c); return; }
        conn_answer(c, 429, "too many connections from your address", "Retry-After: 1\r\n", 1, NULL);
        return;
    }
    if (s->tls && !(c->tls = loom_tls_session_new(s->tls))) { conn_close(c); return; }
    arm_timer(c, s->o.request_timeout_ms, on_idle_or_request_timeout);
    reading_on(c);
}

/* ---- the loop thread ---- */

/* A sent reply reaches its connection, unless that is gone. */
static void deliver(server *s, loom_http_reply *r)
{
    if (r->admit) { deliver_verdict(r); return; }
    conn *c = r->conn;
    if (!c) { reply_free(r); return; }
    r->conn = NULL;
    c->cur = NULL;
    s->inflight--;
    metrics_gauges(s);
    conn_write(c, r);
}

static void on_listener_closed(uv_handle_t *h)
{
    (void)h;
}

static void server_shutdown(server *s)
{
    uv_close((uv_handle_t *)&s->listener, on_listener_closed);
    for (int guard = 0; s->conns && guard < 1 << 30; guard++) conn_close(s->conns);
    /* every connection is unlinked from its reply; now the hub can close */
    hub *h = s->hub;
    pthread_mutex_lock(&h->mu);
    h->closed = 1;
    h->async = NULL;
    loom_http_reply *q = h->head;
    h->head = h->tail = NULL;
    pthread_mutex_unlock(&h->mu);
    while (q) {
        loom_http_reply *next = q->next;
        reply_free(q);
        q = next;
    }
    uv_close((uv_handle_t *)&s->async, NULL);
}

static void on_async(uv_async_t *a)
{
    server *s = a->data;
    if (atomic_load(&s->stop)) {
        if (!uv_is_closing((uv_handle_t *)&s->async)) server_shutdown(s);
        return;
    }
    hub *h = s->hub;
    pthread_mutex_lock(&h->mu);
    loom_http_reply *q = h->head;
    h->head = h->tail = NULL;
    pthread_mutex_unlock(&h->mu);
    while (q) {
        loom_http_reply *next = q->next;
        deliver(s, q);
        q = next;
    }
}

static void loop_main(void *arg)
{
    server *s = arg;
    uv_run(&s->loop, UV_RUN_DEFAULT);
}

/* ---- start and stop ---- */

static void apply_defaults(loom_http_opts *o)
{
    if (!o->host || !*o->host) o->host = "127.0.0.1";
    if (!o->max_header_bytes) o->max_header_bytes = DEF_MAX_HEADER_BYTES;
    if (!o->max_body_bytes) o->max_body_bytes = DEF_MAX_BODY_BYTES;
    if (!o->max_body_total) o->max_body_total = DEF_MAX_BODY_TOTAL;
    if (o->max_body_total < o->max_body_bytes) o->max_body_total = o->max_body_bytes;
    if (o->request_timeout_ms <= 0) o->request_timeout_ms = DEF_REQUEST_TIMEOUT_MS;
    if (o->handler_timeout_ms <= 0) o->handler_timeout_ms = DEF_HANDLER_TIMEOUT_MS;
    if (o->idle_timeout_ms <= 0) o->idle_timeout_ms = DEF_IDLE_TIMEOUT_MS;
    if (o->max_connections <= 0) o->max_connections = DEF_MAX_CONNECTIONS;
    if (o->max_conns_per_client <= 0) o->max_conns_per_client = DEF_MAX_CONNS_PER_CLIENT;
    if (o->max_inflight <= 0) o->max_inflight = DEF_MAX_INFLIGHT;
}

static int listen_on(server *s)
{
    struct sockaddr_storage sa;
    if (uv_ip4_addr(s->o.host, s->o.port, (struct sockaddr_in *)&sa) != 0 &&
        uv_ip6_addr(s->o.host, s->o.port, (struct sockaddr_in6 *)&sa) != 0)
        return LOOM_EINVAL;
    if (uv_tcp_init(&s->loop, &s->listener) != 0) return LOOM_ESYS;
    s->listener.data = s;
    if (uv_tcp_bind(&s->listener, (struct sockaddr *)&sa, 0) != 0 ||
        uv_listen((uv_stream_t *)&s->listener, LISTEN_BACKLOG, on_connection) != 0)
        return LOOM_EIO;
    int len = sizeof sa;
    if (uv_tcp_getsockname(&s->listener, (struct sockaddr *)&sa, &len) != 0) return LOOM_ESYS;
    s->port = ntohs(sa.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&sa)->sin6_port
                                             : ((struct sockaddr_in *)&sa)->sin_port);
    return LOOM_OK;
}

static void close_handle(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h)) uv_close(h, NULL);
}

/* Undo a start that failed after the loop was made. */
static void abandon_loop(server *s)
{
    uv_walk(&s->loop, close_handle, NULL);
    uv_run(&s->loop, UV_RUN_DEFAULT);
    uv_loop_close(&s->loop);
}

/* The reason a start failed, into o->error when the caller gave one. */
static int start_error(const loom_http_opts *o, int rc, const char *why)
{
    if (o && o->error && o->error_cap && !o->error[0])
        loom__snprintf(o->error, o->error_cap, "%s", why ? why : loom_strerror(rc));
    return rc;
}

/* TLS on: the context from the certificate and key, before anything listens. */
static int tls_setup(server *s, const loom_http_opts *o)
{
    if (!o->tls_cert && !o->tls_key) return LOOM_OK;
    char err[512];
    int rc = loom_tls_new(o->tls_cert, o->tls_key, &s->tls, err, sizeof err);
    if (rc) return start_error(o, rc, err[0] ? err : NULL);
    /* the files are read; the server keeps no pointer into the caller's strings */
    s->o.tls_cert = s->o.tls_key = NULL;
    return LOOM_OK;
}

/* Free a server whose loop never ran (or has ended). */
static void server_free(server *s)
{
    hub_unref(s->hub);
    loom_tls_free(&s->tls);
    free(s);
}

int loom_http_start(const loom_http_opts *o, loom_http_server **out)
{
    if (o && o->error && o->error_cap) o->error[0] = 0;
    if (!o || !o->handler || !out || o->port < 0 || o->port > 65535)
        return start_error(o, LOOM_EINVAL, "no handler, or a port outside 0..65535");
    server *s = calloc(1, sizeof(*s));
    if (!s) return LOOM_ENOMEM;
    s->o = *o;
    s->o.error = NULL;
    apply_defaults(&s->o);
    s->hub = hub_new();
    if (!s->hub) { free(s); return LOOM_ENOMEM; }
    int trc = tls_setup(s, o);
    if (trc) { server_free(s); return trc; }
    if (uv_loop_init(&s->loop) != 0) { server_free(s); return start_error(o, LOOM_ESYS, NULL); }
    uv_async_init(&s->loop, &s->async, on_async);
    s->async.data = s;
    s->hub->async = &s->async;
    int rc = listen_on(s);
    /* the gauges exist from the start; after the thread starts, only it
     * touches the connection counts */
    if (rc == 0) metrics_gauges(s);
    if (rc == 0 && uv_thread_create(&s->thread, loop_main, s) != 0) rc = LOOM_ESYS;
    if (rc) {
        abandon_loop(s);
        server_free(s);
        return start_error(o, rc, rc == LOOM_EIO ? "cannot listen on that address and port (in use?)"
                                  : rc == LOOM_EINVAL ? "not an IPv4 or IPv6 address" : NULL);
    }
    *out = s;
    return LOOM_OK;
}

int loom_http_port(const loom_http_server *hs)
{
    return hs ? hs->port : 0;
}

void loom_http_stop(loom_http_server **ps)
{
    if (!ps || !*ps) return;
    server *s = *ps;
    *ps = NULL;
    /* under the hub's lock: the loop closes the async handle only after
       marking the hub closed under that lock */
    pthread_mutex_lock(&s->hub->mu);
    atomic_store(&s->stop, 1);
    if (!s->hub->closed) uv_async_send(&s->async);
    pthread_mutex_unlock(&s->hub->mu);
    uv_thread_join(&s->thread);
    uv_loop_close(&s->loop);
    server_free(s);
}
