/* runtime/zloop.c — edge-triggered ZMQ_FD handled correctly under libuv (see
 * zloop.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "loom/loom.h"
#include "runtime/wire.h"
#include "runtime/zloop.h"

#define DRAIN_BATCH 512

struct loom_zwatch {
    uv_poll_t poll;
    uv_prepare_t prepare;
    uv_idle_t idle;
    void *sock;
    loom_zmsg_cb cb;
    void *arg;
    void (*after)(void *arg);    /* after each batch (loom__zwatch_after_batch) */
    int closing, handles_open, idle_on;
};

static int has_input(void *sock)
{
    int ev = 0;
    size_t sz = sizeof(ev);
    if (zmq_getsockopt(sock, ZMQ_EVENTS, &ev, &sz) != 0) return 0;
    return (ev & ZMQ_POLLIN) != 0;
}

/* Receive one whole message (extra frames beyond LOOM_ZMAX_FRAMES are dropped).
 * Returns the frame count, 0 when nothing is waiting. */
static int recv_message(void *sock, zmq_msg_t *frames)
{
    int n = 0, more = 1;
    while (more) {
        zmq_msg_t tmp;
        zmq_msg_t *f = n < LOOM_ZMAX_FRAMES ? &frames[n] : &tmp;
        zmq_msg_init(f);
        if (zmq_msg_recv(f, sock, n == 0 ? ZMQ_DONTWAIT : 0) < 0) {
            zmq_msg_close(f);
            if (n == 0) return 0;
            break;
        }
        more = zmq_msg_more(f);
        if (f == &tmp) zmq_msg_close(&tmp);
        else n++;
    }
    return n;
}

static void drain(loom_zwatch *w)
{
    int got = 0;
    for (int i = 0; i < DRAIN_BATCH && !w->closing; i++) {
        zmq_msg_t frames[LOOM_ZMAX_FRAMES];
        int n = recv_message(w->sock, frames);
        if (n == 0) break;
        w->cb(w->arg, frames, n);
        for (int k = 0; k < n; k++) zmq_msg_close(&frames[k]);
        got++;
    }
    if (got && w->after && !w->closing) w->after(w->arg);
}

void loom__zwatch_after_batch(loom_zwatch *w, void (*fn)(void *arg))
{
    if (w) w->after = fn;
}

static void on_idle(uv_idle_t *h)
{
    loom_zwatch *w = h->data;
    drain(w);
    if (w->closing || !has_input(w->sock)) {
        uv_idle_stop(&w->idle);
        w->idle_on = 0;
    }
}

static void ensure_idle(loom_zwatch *w)
{
    if (!w->closing && !w->idle_on && has_input(w->sock)) {
        uv_idle_start(&w->idle, on_idle);
        w->idle_on = 1;
    }
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    loom_zwatch *w = h->data;
    (void)status; (void)events;
    drain(w);
    ensure_idle(w);
}

static void on_prepare(uv_prepare_t *h)
{
    loom_zwatch *w = h->data;
    if (w->closing) return;
    if (has_input(w->sock)) {
        drain(w);
        ensure_idle(w);
    }
}

int loom__zwatch_start(uv_loop_t *loop, void *zsock, loom_zmsg_cb cb, void *arg,
                       loom_zwatch **out)
{
    int fd;
    size_t sz = sizeof(fd);
    if (zmq_getsockopt(zsock, ZMQ_FD, &fd, &sz) != 0) return LOOM_ESYS;
    loom_zwatch *w = calloc(1, sizeof(*w));
    if (!w) return LOOM_ENOMEM;
    w->sock = zsock;
    w->cb = cb;
    w->arg = arg;
    if (uv_poll_init(loop, &w->poll, fd) != 0) { free(w); return LOOM_ESYS; }
    uv_prepare_init(loop, &w->prepare);
    uv_idle_init(loop, &w->idle);
    w->poll.data = w->prepare.data = w->idle.data = w;
    w->handles_open = 3;
    uv_poll_start(&w->poll, UV_READABLE, on_poll);
    uv_prepare_start(&w->prepare, on_prepare);
    *out = w;
    return LOOM_OK;
}

static void on_close(uv_handle_t *h)
{
    loom_zwatch *w = h->data;
    if (--w->handles_open == 0) free(w);
}

void loom__zwatch_stop(loom_zwatch **pw)
{
    if (!pw || !*pw) return;
    loom_zwatch *w = *pw;
    *pw = NULL;
    w->closing = 1;
    uv_close((uv_handle_t *)&w->poll, on_close);
    uv_close((uv_handle_t *)&w->prepare, on_close);
    uv_close((uv_handle_t *)&w->idle, on_close);
}

int loom__zsend(void *sock, const void *ident, size_t ident_len, const void *data, size_t len)
{
    if (ident && zmq_send(sock, ident, ident_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
        return LOOM_EIO;
    if (zmq_send(sock, data, len, ident ? ZMQ_DONTWAIT : 0) < 0) return LOOM_EIO;
    return LOOM_OK;
}

void loom__zsock_setup(void *sock, int type)
{
    int zero = 0, hwm = 100000, one = 1;
    int64_t maxmsg = LOOM_MAX_FRAME + 4096;
    zmq_setsockopt(sock, ZMQ_LINGER, &zero, sizeof(zero));
    zmq_setsockopt(sock, ZMQ_SNDHWM, &hwm, sizeof(hwm));
    zmq_setsockopt(sock, ZMQ_RCVHWM, &hwm, sizeof(hwm));
    zmq_setsockopt(sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof(maxmsg));
    if (type == ZMQ_ROUTER) zmq_setsockopt(sock, ZMQ_ROUTER_MANDATORY, &one, sizeof(one));
}

int loom__zsend_msg(void *sock, const void *ident, size_t ident_len, const loom_msg *m,
                    loom_pack *scratch)
{
    int rc = loom__wire_encode(m, scratch);
    if (rc) return rc;
    return loom__zsend(sock, ident, ident_len, loom_pack_data(scratch), loom_pack_size(scratch));
}
